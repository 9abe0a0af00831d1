// The namespace's figures (stats API) and the `$SYS` publisher; the counters are in counters.ts.
import type { ShardStats } from "../shards/node";
import type { Message } from "../session/message";
import type { Session } from "../session/session";
import { deliver, type DeliveryContext } from "../session/delivery";
import { parseSharedFilter } from "../topics/validate";
import type { Router } from "../topics/router";
import type { Counters, EventTotals } from "./counters";
import type { Store } from "../storage/store";
import { DROP_REASONS } from "../session/drops";
import type { RulesStats } from "../rules/engine";

/** `$SYS` and `$SYS/...`: reserved for the broker, clients may not publish there. */
export function isSysTopic(topic: string): boolean {
  return topic.charCodeAt(0) === 0x24 /* $ */ && (topic === "$SYS" || topic.startsWith("$SYS/"));
}

/**
 * Whether a subscription filter (maybe `$share/<group>/...`) can match `$SYS` topics: only one
 * whose first level is `$SYS`, since a leading wildcard never matches a `$` topic [MQTT-4.7.2-1].
 */
export function isSysFilter(filter: string): boolean {
  const shared = parseSharedFilter(filter);
  if (shared === "invalid") return false;
  return isSysTopic(shared ? shared.filter : filter);
}

/** What the figures are read from. */
export interface StatsSource {
  now(): number;
  readonly counters: Counters;
  readonly sessions: { values(): IterableIterator<Session>; readonly size: number };
  readonly router: Router;
  readonly store: Pick<Store, "retainedUsage" | "rowsWritten">;
  /** lifecycle events that reached a subscriber (lifecycle.ts) */
  readonly lifecycle?: { readonly published: number };
  /** the rules engine (RULES), null or absent when there are no rules */
  readonly rules?: { stats(): RulesStats } | null;
  /** this object's part in a namespace of several shards; null or absent at one */
  readonly shards?: { readonly self: number; readonly k: number; figures(): ShardStats } | null;
}


/** What the $SYS publisher needs besides the figures: routing its messages, and the alarm. */
export interface SysContext extends Omit<StatsSource, "store">, DeliveryContext {
  wakeAt(ms: number): void;
  /** K > 1: the namespace's stats, merged from every shard's, so `$SYS` speaks for it (null: one shard) */
  namespaceWide?: (() => Promise<NamespaceStats>) | null;
}

export interface NamespaceStats {
  /** sample time (ms): rates are differences of two samples over their time difference */
  time: number;
  /** seconds since the object started (counters count from then) */
  uptime: number;
  clients: { connected: number; total: number };
  subscriptions: number;
  retained: number;
  messages: { received: number; sent: number };
  bytes: { received: number; sent: number };
  /** billed events, accumulated across wakes since `events.since` (see counters.ts) */
  events: EventTotals;
  /** sessions kept after their connection ends (session expiry > 0), and all of them */
  sessions: { persistent: number; total: number };
  /** payload bytes of the retained messages (`retained` counts them) */
  retainedBytes: number;
  /** by QoS ([QoS 0, QoS 1, QoS 2]): messages received and sent, and their payload bytes */
  messagesByQos: { received: number[]; sent: number[] };
  payloadBytesByQos: { received: number[]; sent: number[] };
  /** dropped messages by reason (session/drops.ts) */
  dropped: Record<(typeof DROP_REASONS)[number], number>;
  /** messages waiting in the sessions' queues (all sessions; the longest queue), and their bytes */
  queued: { messages: number; bytes: number; maxPerSession: number };
  /** QoS 1/2 messages sent and not yet acknowledged, all sessions */
  inflight: number;
  /** CONNECTs refused for credentials or rights */
  authFailures: number;
  /** lifecycle events emitted; present once the lifecycle-events module is wired */
  lifecycleEvents?: number;
  /** the rules' gauges and per-rule counters (docs/rules.md); absent without RULES */
  rules?: RulesStats;
  /** this shard's traffic with the others (docs/scale-out.md); absent at one shard */
  shard?: ShardStats;
}

export function namespaceStats(core: StatsSource): NamespaceStats {
  const now = core.now();
  const c = core.counters;
  let connected = 0;
  let persistent = 0;
  let queued = 0;
  let queuedBytes = 0;
  let maxQueued = 0;
  let inflight = 0;
  for (const s of core.sessions.values()) {
    if (s.conn) connected++;
    if (s.persistent) persistent++;
    queued += s.queuedCount;
    queuedBytes += s.queuedBytes;
    if (s.queuedCount > maxQueued) maxQueued = s.queuedCount;
    inflight += s.inflight.size;
  }
  const retained = core.store.retainedUsage();
  const dropped = {} as NamespaceStats["dropped"];
  DROP_REASONS.forEach((reason, i) => (dropped[reason] = c.drops[i]!));
  const stats: NamespaceStats = {
    time: now,
    uptime: Math.floor((now - c.startedAt) / 1000),
    clients: { connected, total: core.sessions.size },
    subscriptions: core.router.subscriptionCount,
    retained: retained.count,
    messages: { received: c.messagesReceived, sent: c.messagesSent },
    bytes: { received: c.bytesReceived, sent: c.bytesSent },
    events: c.events(core.store.rowsWritten),
    sessions: { persistent, total: core.sessions.size },
    retainedBytes: retained.bytes,
    messagesByQos: { received: [...c.receivedByQos], sent: [...c.sentByQos] },
    payloadBytesByQos: { received: [...c.receivedBytesByQos], sent: [...c.sentBytesByQos] },
    dropped,
    queued: { messages: queued, bytes: queuedBytes, maxPerSession: maxQueued },
    inflight,
    authFailures: c.authFailures,
  };
  if (core.lifecycle) stats.lifecycleEvents = core.lifecycle.published;
  if (core.rules) stats.rules = core.rules.stats();
  if (core.shards) stats.shard = core.shards.figures();
  return stats;
}

/** The `$SYS/broker/...` topics, with Mosquitto's names so existing dashboards understand them. */
export function sysValues(stats: NamespaceStats): [topic: string, value: string][] {
  return [
    ["$SYS/broker/uptime", `${stats.uptime} seconds`],
    ["$SYS/broker/clients/connected", String(stats.clients.connected)],
    ["$SYS/broker/clients/total", String(stats.clients.total)],
    ["$SYS/broker/subscriptions/count", String(stats.subscriptions)],
    ["$SYS/broker/retained messages/count", String(stats.retained)],
    ["$SYS/broker/messages/received", String(stats.messages.received)],
    ["$SYS/broker/messages/sent", String(stats.messages.sent)],
    ["$SYS/broker/bytes/received", String(stats.bytes.received)],
    ["$SYS/broker/bytes/sent", String(stats.bytes.sent)],
  ];
}

/**
 * Publishes the `$SYS` topics every SYS_INTERVAL seconds while a connected client subscribes to
 * them, on the object's alarm (a timer would not survive hibernation). Nobody listening costs
 * nothing: the publisher stops, and only a new `$SYS` subscription or a returning session
 * holding one starts it again.
 */
export class SysPublisher {
  /** next due time (ms); null while stopped */
  private nextAt: number | null = null;
  private readonly encoder = new TextEncoder();

  constructor(private readonly core: SysContext) {}

  get running(): boolean {
    return this.nextAt !== null;
  }

  /** when the next round is due (ms); null while stopped */
  get dueAt(): number | null {
    return this.nextAt;
  }

  /** A subscription was added (SUBSCRIBE, or restored after a wake). */
  filterAdded(filter: string): void {
    if (this.nextAt === null && isSysFilter(filter)) this.start();
  }

  /** A session got a connection: one that kept `$SYS` subscriptions while offline restarts us. */
  sessionConnected(session: Session): void {
    if (this.nextAt !== null) return;
    for (const filter of session.subscriptions.keys()) this.filterAdded(filter);
  }

  /** Publish at once (on the next alarm, so after the SUBACK), then periodically. */
  private start(): void {
    if (this.core.config.SYS_INTERVAL <= 0) return;
    this.nextAt = this.core.now();
    this.core.wakeAt(this.nextAt);
  }

  /** Called on every alarm: publishes when due. Returns when to be woken next, null when stopped. */
  tick(now: number): number | null {
    if (this.nextAt === null || now < this.nextAt) return this.nextAt;
    this.nextAt = this.publish() ? now + this.core.config.SYS_INTERVAL * 1000 : null;
    return this.nextAt;
  }

  /**
   * One round of values, routed like any message (never stored, not counted as received). At
   * K > 1 the values are the namespace's, merged from every shard's stats (one call per peer per
   * round, only while a client here listens), and routed when they arrive. Returns whether a
   * connected client subscribes to them.
   */
  private publish(): boolean {
    const core = this.core;
    const wide = core.namespaceWide;
    if (!wide) return this.route(namespaceStats(core));
    const listened = this.route(null);
    if (listened) {
      void wide().then(
        (stats) => this.route(stats),
        () => this.route(namespaceStats(core)), // a shard did not answer: this shard's own figures, this round
      );
    }
    return listened;
  }

  /** Routes the values of `stats` (null: none, only whether a connected client would get them). */
  private route(stats: NamespaceStats | null): boolean {
    const core = this.core;
    let listened = false;
    const values = stats ? sysValues(stats) : PROBE;
    for (const [topic, value] of values) {
      const msg: Message = { topic, payload: this.encoder.encode(value), qos: 0, retain: false };
      const r = core.router;
      const n = r.match(msg);
      for (let i = 0; i < n; i++) {
        if (r.matched[i]!.conn) listened = true;
        if (stats) deliver(core, r.matched[i]!, msg, r.qos[i]!, r.retain[i]!, r.subIds[i]!, r.group[i]!);
      }
    }
    return listened;
  }
}

/** every `$SYS` topic, to learn whether anyone listens before the values are known */
const PROBE: [string, string][] = sysValues(JSON.parse('{"uptime":0,"clients":{"connected":0,"total":0},"subscriptions":0,"retained":0,"messages":{"received":0,"sent":0},"bytes":{"received":0,"sent":0}}') as NamespaceStats);
