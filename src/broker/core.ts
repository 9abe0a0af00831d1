// The broker of one namespace: sessions, connections, routing and timers. Pure: the runtime is
// reached only through Transport (per socket), Store and Runtime, so it also runs in plain Node.
import type { BrokerConfig } from "../config";
import { Connection, connectionOf, type ConnectionEnd } from "./connection";
import { dispatch, type DispatchContext } from "./dispatcher";
import { ConnectRefused, ProtocolError } from "../protocol/errors";
import { RC, connackCodeV3 } from "../protocol/reason-codes";
import type { Session, Subscription } from "../session/session";
import type { SharedGroup } from "../topics/trie";
import { entryMessage, type Message } from "../session/message";
import { deliver } from "../session/delivery";
import { continueRetained } from "../session/retained";
import { SessionRegistry, type RegistryContext } from "../session/registry";
import { Router } from "../topics/router";
import type { Store } from "../storage/store";
import type { Grant } from "../auth/grant";
import type { TopicAcl } from "../auth/acl";
import { DeferredDeletes } from "../storage/deferred-deletes";
import { nextDeadline } from "../timers/deadlines";
import { SysPublisher, isSysTopic, type NamespaceStats } from "./stats";
import { Counters, eventsFromJson, eventsToJson, savedAtOf } from "./counters";
import type { Authenticator } from "../auth/authenticator";
import { RetainedQuota } from "../limits/retained-quota";
import { quote } from "../log-safe";
import type { RuleEngine, RulesHost } from "../rules/engine";
import { Lifecycle } from "./lifecycle";
import type { ShardHost, ShardNode } from "../shards/node";
import { MoveOp, type MoveEntry, type TunnelEntry } from "../shards/wire";
import { movedDelivery, movedSession } from "../session/transfer";
import { TunnelExits } from "./tunnels";
import { home } from "../shards/layout";
import { pickMember } from "../topics/router";
import type { QoS } from "../protocol/codec";

/** how a connection ended that nobody decided: its socket went away */
const SOCKET_LOST: ConnectionEnd = { code: null, by: "socket" };
const SERVER_RESTART: ConnectionEnd = { code: null, by: "restart" };
import { DROP } from "../session/drops";

/** CONNACK reason codes counted as authentication failures (stats, /metrics) */
const AUTH_FAILURES = new Set<number>([RC.BAD_USERNAME_OR_PASSWORD, RC.NOT_AUTHORIZED, RC.BAD_AUTHENTICATION_METHOD]);

export interface Runtime {
  now(): number;
  /** ask to be woken (alarm) at `ms` or earlier */
  wakeAt(ms: number): void;
  /**
   * Set the alarm to exactly `ms` (null: none), also later than it is: for when the deadline it
   * was armed for went away. Costs a storage operation, so only called when one was armed too early.
   */
  rearm(ms: number | null): void;
  /** run `fn` soon, in a later event (a timer) */
  later(fn: () => void): void;
  log(level: "info" | "warn" | "error", message: string): void;
}

export class BrokerCore implements DispatchContext, RegistryContext, ShardHost {
  private readonly acked: DeferredDeletes;
  readonly sessions: SessionRegistry;
  readonly connections = new Set<Connection>();
  readonly router = new Router();
  /** traffic counters for the stats API and $SYS (in memory, since the object started) */
  readonly counters: Counters;
  readonly sys: SysPublisher;
  /** presence and lifecycle events on `$events/...`, and each client's recent history (lifecycle.ts) */
  readonly lifecycle: Lifecycle;

  private quota: RetainedQuota | null = null;
  /** RULES (src/rules): messages to Queues, Workers, webhooks; null when there are none */
  rules: RuleEngine | null = null;
  /** bytes held for sockets whose CONNECT is not accepted yet (partial packets, held packets) */
  pendingBytes = 0;
  /** this object's part in a namespace of several (src/shards, docs/scale-out.md); null: the namespace is this one object */
  shards: ShardNode | null = null;
  /** K > 1: the namespace's stats merged from every shard (for `$SYS`; set by the object) */
  namespaceWide: (() => Promise<NamespaceStats>) | null = null;
  /** connections whose socket is on another shard and whose session's home is this one (broker/tunnels.ts) */
  tunnels: TunnelExits | null = null;

  constructor(
    readonly store: Store,
    readonly config: BrokerConfig,
    private readonly runtime: Runtime,
    /** who may connect and with which rights (from the namespace's configuration) */
    readonly auth: Authenticator,
  ) {
    this.counters = new Counters(runtime.now());
    const saved = store.loadEvents();
    this.counters.base = eventsFromJson(saved, this.counters.startedAt);
    this.counters.savedAt = savedAtOf(saved);
    this.acked = new DeferredDeletes(store, runtime.later);
    this.sys = new SysPublisher(this);
    this.sessions = new SessionRegistry(this);
    this.lifecycle = new Lifecycle(this, config.EVENTS, config.PRESENCE_RETAINED, (m) => runtime.log("warn", m));
    this.router.onAdd = (filter) => this.sys.filterAdded(filter);
    this.router.onUnreadable = () => this.counters.drops[DROP.NO_SHARED_MEMBER]!++;
  }

  now(): number {
    return this.runtime.now();
  }

  /** dropped messages by reason (session/drops.ts), counted where they are dropped */
  get drops(): Float64Array {
    return this.counters.drops;
  }

  forgetDelivery(seq: number): void {
    this.acked.add(seq);
  }

  /** an acknowledged delivery still in storage, removed with the next batch */
  isForgotten(seq: number): boolean {
    return this.acked.has(seq);
  }

  wakeAt(ms: number): void {
    this.runtime.wakeAt(ms);
  }

  /** What the rules (src/rules) need of the broker: storage, the clock, the alarm, later events, the log. */
  rulesHost(): RulesHost {
    return {
      store: this.store,
      config: this.config,
      now: () => this.now(),
      wakeAt: (ms) => this.wakeAt(ms),
      // the rules no longer need the alarm they asked for: it moves to the next real deadline (or goes)
      rearm: () => this.runtime.rearm(this.nextWake()),
      later: (fn) => this.later(fn),
      log: (level, message) => this.runtime.log(level, message),
    };
  }

  /** runs `fn` in a later event; an error there is logged, never left to the runtime */
  later(fn: () => void): void {
    this.runtime.later(() => {
      try {
        fn();
      } catch (err) {
        this.runtime.log("error", `internal error in deferred work: ${(err as Error)?.stack ?? String(err)}`);
      }
    });
  }

  sharedGroup(share: string | null): SharedGroup<Subscription> | null {
    return share === null ? null : this.router.sharedGroup(share);
  }

  continueRetained(session: Session, conn: Connection): void {
    continueRetained(this, session, conn);
  }

  /**
   * Every entry point of the runtime calls this once its counter is counted: the event's start
   * is the life's latest, and the totals are saved (one row) when the last save is older than
   * EVENTS_SAVE_INTERVAL, so the next life of the object goes on from them (see counters.ts).
   */
  eventSeen(now: number): void {
    const c = this.counters;
    c.lastEventAt = now;
    if (now - c.savedAt < this.config.EVENTS_SAVE_INTERVAL * 1000) return;
    try {
      this.saveEvents(now);
    } catch (err) {
      this.runtime.log("error", `saving the event totals failed: ${(err as Error)?.message ?? String(err)}`);
    }
  }

  /** Saves the event totals (one row); the row this writes is counted in what it saves. */
  saveEvents(now: number): void {
    this.counters.savedAt = now;
    this.store.saveEvents(eventsToJson(this.counters.events(this.store.rowsWritten + 1), now));
  }

  // ——— entry points ———

  /**
   * Rebuilds memory from storage when the object starts or wakes from hibernation, then
   * re-attaches the sockets that are still open. A session marked connected whose socket is
   * gone lost its connection while the broker was down: its will is owed.
   */
  restore(live: Connection[]): void {
    if (this.tunnels) live = live.concat(this.tunnels.restore());
    const connected = this.sessions.restore();
    if (this.shards) {
      // what this shard announced is what its stored subscriptions say (written in the same events)
      for (const session of this.sessions.values()) for (const filter of session.subscriptions.keys()) this.shards.interest.localAdded(filter);
      this.shards.restore(this.sessions.size > 0 || this.store.countRetained() > 0);
    }
    for (const conn of live) {
      if (conn.state === "closed") {
        conn.transport.close(1000, ""); // the broker closed it before it slept (connection.ts): again, for sure
        continue;
      }
      this.connections.add(conn);
      if (conn.state !== "connected") continue;
      if (conn.aliasesStored) conn.inboundAliases = new Map(this.store.loadTopicAliases(conn.clientId));
      // the rights granted at CONNECT come back from the socket's attachment
      const rights = this.auth.rights(conn.grant, conn.clientId);
      conn.publishAcl = rights.publish;
      conn.readAcl = rights.read;
      if (!this.sessions.reattach(conn)) {
        this.fail(conn, new ProtocolError(RC.IMPLEMENTATION_SPECIFIC_ERROR, "session not found after restart"));
        continue;
      }
      conn.session = this.sessions.get(conn.clientId)!;
      connected.delete(conn.clientId);
    }
    this.sessions.judgeAll();
    for (const clientId of connected) {
      this.runtime.log("info", `connection of ${quote(clientId)} was lost while the broker was down`);
      const session = this.sessions.get(clientId)!;
      // the socket's facts went with it: the session's stand in (keep-alive unknown: 0)
      const facts = { clientId, version: session.version, keepalive: 0, grant: session.grant ?? {} };
      this.sessionLost(facts, session, false, SERVER_RESTART);
    }
    this.alarm();
  }

  open(conn: Connection): void {
    this.connections.add(conn);
    this.wakeAt(conn.openedAt + this.config.CONNECT_TIMEOUT * 1000);
  }

  /** This object is shard `node.self` of a namespace of several: links, interest and tunnels. */
  joinShards(node: ShardNode): void {
    this.shards = node;
    this.tunnels = new TunnelExits({
      config: this.config,
      counters: this.counters,
      store: this.store,
      now: () => this.now(),
      open: (conn) => this.open(conn),
      // the frame was counted as a WebSocket message at the entrance; here it came in a link call
      receive: (conn, data) => this.read(conn, data, this.now()),
      socketClosed: (conn) => this.socketClosed(conn),
      out: (entrance, id, n, bytes) => node.tunnelOut(entrance, id, n, bytes),
      end: (entrance, id, code, reason) => node.tunnelEnd(entrance, id, code, reason),
    });
  }

  /**
   * K > 1: the bytes a socket sent before its CONNECT's client id could be read (the object holds
   * them to choose the shard): booked as held bytes are. False: beyond MAX_UNCONNECTED_BYTES, closed.
   */
  holdPeeked(conn: Connection, bytes: number): boolean {
    this.pendingBytes += bytes - conn.pendingBytes;
    conn.pendingBytes = bytes;
    const total = this.config.MAX_UNCONNECTED_BYTES;
    if (total === 0 || this.pendingBytes <= total) return true;
    this.fail(conn, new ProtocolError(RC.SERVER_BUSY, "too many connections being set up"));
    return false;
  }

  /** A socket that became a tunnel to another shard before it connected: no longer this core's. */
  forget(conn: Connection): void {
    if (conn.pendingBytes !== 0) {
      this.pendingBytes -= conn.pendingBytes;
      conn.pendingBytes = 0;
    }
    this.connections.delete(conn);
    conn.state = "closed";
  }

  /** A WebSocket message: a billed event, counted with the one clock reading the frame takes. */
  receive(conn: Connection, data: ArrayBuffer | Uint8Array | string): void {
    const now = this.now();
    this.frameSeen(now);
    this.read(conn, data, now);
  }

  /** Counts a WebSocket message (a billed event), also one the object takes without the core (a tunnel's). */
  frameSeen(now: number): void {
    this.counters.websocketMessages++;
    this.eventSeen(now);
  }

  /** A frame's bytes for a connection: a socket's, or a tunnelled one's (counted where it was received). */
  private read(conn: Connection, data: ArrayBuffer | Uint8Array | string, now: number): void {
    if (conn.state === "closed") return;
    if (typeof data === "string") {
      this.fail(conn, new ProtocolError(RC.MALFORMED_PACKET, "text frame")); // [MQTT-6.0.0-1]
      return;
    }
    conn.touch(now);
    this.counters.bytesReceived += data.byteLength;
    const unconnected = conn.state === "awaiting-connect";
    conn.cork(); // the answers to a frame of packets leave as one frame
    const links = this.shards?.links; // K > 1: the copies a frame's packets owe other shards go as one chunk per shard
    links?.batchBegin();
    try {
      conn.reader.read(data instanceof Uint8Array ? data : new Uint8Array(data), (conn.onPacket ??= (packet, size) => dispatch(this, conn, packet, size)));
      if (unconnected) this.holdPending(conn);
    } catch (err) {
      this.fail(conn, err);
    } finally {
      links?.batchEnd();
      conn.uncork();
    }
  }

  /** The socket closed or failed under us. */
  socketClosed(conn: Connection): void {
    conn.state = "closed";
    this.connectionEnded(conn);
  }

  /** Due work: keep-alive and connect timeouts, delayed wills, session expiry; then re-arm. */
  alarm(): void {
    const now = this.now();
    if (this.shards?.paused) {
      // the namespace's shards are changing (shards/grow.ts): links only; wills and expiry wait (they would publish)
      this.shards.links.due(now);
      const next = this.nextWake();
      if (next !== null) this.wakeAt(Math.max(next, now + 1000));
      return;
    }
    for (const conn of this.connections) {
      if (conn.state === "awaiting-connect") {
        if (conn.openedAt + this.config.CONNECT_TIMEOUT * 1000 <= now) this.closeConnection(conn, 1000, "no CONNECT in time");
        continue;
      }
      const expiry = conn.tokenDeadline;
      // an expired token ends the connection like any failure: its will goes out
      if (expiry !== null && expiry <= now) this.fail(conn, new ProtocolError(RC.MAXIMUM_CONNECT_TIME, "token expired"));
      const deadline = conn.deadline;
      if (deadline !== null && deadline <= now) this.fail(conn, new ProtocolError(RC.KEEP_ALIVE_TIMEOUT, "keep-alive timeout"));
    }
    this.sessions.due(now);
    this.rules?.due(now);
    this.shards?.links.due(now);
    this.sys.tick(now);
    const next = this.nextWake();
    if (next !== null) this.wakeAt(next);
  }

  /** The earliest deadline the alarm serves (connections, sessions, $SYS, rules' retries); null: none. */
  private nextWake(): number | null {
    let next = earliest(nextDeadline(this.connections, this.sessions.values(), this.config.CONNECT_TIMEOUT * 1000), this.sys.dueAt);
    if (this.rules) next = earliest(next, this.rules.nextWake());
    return this.shards ? earliest(next, this.shards.links.nextWake()) : next;
  }

  // ——— used by handlers ———

  /** Retained messages per namespace: ask before storing one (see limits.ts). */
  get retainedQuota(): RetainedQuota {
    return (this.quota ??= new RetainedQuota(this.store, this.config, () => this.now()));
  }

  admitRetained(topic: string, bytes: number): boolean {
    return this.retainedQuota.admit(topic, bytes);
  }

  readAcl(grant: Grant, clientId: string): TopicAcl | null {
    return this.auth.rights(grant, clientId).read;
  }

  connectedCount(): number {
    let n = 0;
    for (const c of this.connections) if (c.state === "connected") n++;
    return n;
  }

  sessionConnected(session: Session): void {
    this.sys.sessionConnected(session);
    // The CONNECT timeout armed when the socket opened is void now: an alarm left for it would
    // wake the object for nothing (a billed request) when the next real deadline is later.
    if (!this.awaitingConnect()) this.runtime.rearm(this.nextWake());
  }

  /** whether a socket still owes its CONNECT (its timeout keeps the alarm) */
  private awaitingConnect(): boolean {
    for (const c of this.connections) if (c.state === "awaiting-connect") return true;
    return false;
  }

  /** The registry ended a session whose expiry passed. */
  sessionExpired(session: Session): void {
    this.lifecycle.expired(session);
  }

  /** Routes a message to every matching session; stores or clears it when retained. Returns the match count. */
  publish(msg: Message): number {
    const c = this.counters;
    c.messagesReceived++;
    c.receivedByQos[msg.qos]!++;
    c.receivedBytesByQos[msg.qos]! += msg.payload.byteLength;
    if (isSysTopic(msg.topic)) {
      c.drops[DROP.NOT_AUTHORIZED]!++;
      return 0; // $SYS belongs to the broker: dropped
    }
    const shards = this.shards;
    const version = shards && msg.retain ? shards.retainedVersion(this.now(), this.store.retainedVersion(msg.topic)) : 0;
    if (msg.retain) {
      if (msg.payload.byteLength === 0) this.store.deleteRetained(msg.topic, shards ? version : undefined); // [MQTT-3.3.1-10]
      else this.store.setRetained(msg, shards ? version : undefined);
    }
    const r = this.router;
    let n = r.match(msg);
    for (let i = 0; i < n; i++) deliver(this, r.matched[i]!, msg, r.qos[i]!, r.retain[i]!, r.subIds[i]!, r.group[i]!);
    // the other shards' subscribers: copies stored before the caller acknowledges (src/shards/node.ts)
    if (shards) n += shards.forward(msg, version);
    this.rules?.offer(msg);
    return n;
  }

  // ——— the other shards of the namespace (src/shards/node.ts; never at K = 1) ———

  /** A message another shard accepted: this shard's subscribers, or one member of a shared group here. */
  deliverForwarded(msg: Message, share: string | null): number {
    if (isSysTopic(msg.topic)) return 0;
    if (share !== null) {
      const group = this.router.sharedGroup(share);
      const sub = group ? pickMember(group, null, msg.topic) : null;
      if (!sub) {
        this.counters.drops[DROP.NO_SHARED_MEMBER]!++; // the last member here left while the copy travelled
        return 0;
      }
      const qos = (sub.qos < msg.qos ? sub.qos : msg.qos) as QoS;
      deliver(this, sub.session, msg, qos, sub.retainAsPublished && msg.retain, sub.subscriptionId ? [sub.subscriptionId] : null, group);
      return 1;
    }
    const r = this.router;
    const n = r.match(msg, false);
    for (let i = 0; i < n; i++) deliver(this, r.matched[i]!, msg, r.qos[i]!, r.retain[i]!, r.subIds[i]!, r.group[i]!);
    return n; // 0: a copy nobody here wanted (ShardStats.forwardedUnmatched)
  }

  hasSharedMember(share: string): boolean {
    const group = this.router.sharedGroup(share);
    return group !== null && group.members.size > 0;
  }

  /** Every shard keeps every retained message; the newest version of a topic wins whatever the order of arrival. */
  retainedForwarded(msg: Message, version: number): void {
    const stored = this.store.retainedVersion(msg.topic);
    if (stored !== null && stored > version) return;
    this.quota?.book(msg.topic, msg.payload.byteLength); // the origin admitted it; this copy counts here too
    if (msg.payload.byteLength === 0) this.store.deleteRetained(msg.topic, version);
    else this.store.setRetained(msg, version);
  }

  /** A session subscribed to `filter` (add) or stopped: the other shards hear of the filter's first and last. */
  interestChanged(filter: string, add: boolean): void {
    this.shards?.localInterest(filter, add);
  }

  tunnelAtHome(from: number, e: TunnelEntry): void {
    this.tunnels?.apply(from, e);
  }

  peerLost(peer: number): void {
    this.tunnels?.entranceLost(peer);
  }

  /** Re-sharding: a session, one of its deliveries, or a retained message an old shard handed this one. */
  moveArrived(e: MoveEntry): void {
    if (e.op === MoveOp.Session) {
      this.sessions.adopt(movedSession(e));
      this.lifecycle.sessionArrived(e.clientId);
    } else if (e.op === MoveOp.Delivery) {
      const d = movedDelivery(e);
      this.sessions.adoptDelivery(e.clientId, d.meta, d.msg);
    } else if (e.msg) this.retainedForwarded(entryMessage(e.msg), e.msg.version);
  }

  isHome(clientId: string): boolean {
    const shards = this.shards;
    return shards === null || home(clientId, shards.k) === shards.self;
  }

  /** Resolves once the other shards know of every subscription made here (a SUBACK waits); null: nothing to wait for. */
  interestSettled(): Promise<void> | null {
    return this.shards ? this.shards.interestSettled() : null;
  }

  /** The one place an error becomes a reason code: CONNACK while connecting, else MQTT 5 DISCONNECT. */
  fail(conn: Connection, err: unknown): void {
    if (conn.state === "closed") return;
    const known = err instanceof ProtocolError;
    const code = known ? err.reasonCode : RC.IMPLEMENTATION_SPECIFIC_ERROR;
    conn.end ??= { code, by: "server" };
    const message = err instanceof Error ? err.message : String(err);
    if (!known) this.runtime.log("error", `internal error on ${conn.clientId ? quote(conn.clientId) : "new connection"}: ${(err as Error)?.stack ?? message}`);
    if (conn.state === "awaiting-connect") {
      if (err instanceof ConnectRefused && AUTH_FAILURES.has(code)) this.counters.authFailures++;
      if (conn.version === 5 && known && code !== RC.UNSUPPORTED_PROTOCOL_VERSION) {
        // An MQTT 5 CONNECT that was read and refused, also for a protocol error in it: CONNACK says why
        conn.send({ cmd: "connack", sessionPresent: false, reasonCode: code, properties: { reasonString: message.slice(0, 200) } });
      } else if (err instanceof ConnectRefused || code === RC.UNSUPPORTED_PROTOCOL_VERSION) {
        const returnCode = connackCodeV3(code);
        if (returnCode !== null) conn.send({ cmd: "connack", sessionPresent: false, returnCode });
      }
    } else if (conn.version === 5) {
      conn.send({ cmd: "disconnect", reasonCode: code, properties: { reasonString: message.slice(0, 200) } });
    }
    this.closeConnection(conn, known ? 1000 : 1011, message);
  }

  /** Session takeover [MQTT-3.1.4-3]: DISCONNECT 0x8E to the old connection, which then ends. */
  takeover(session: Session): void {
    const old = connectionOf(session);
    if (old) this.fail(old, new ProtocolError(RC.SESSION_TAKEN_OVER, "session taken over"));
  }

  closeConnection(conn: Connection, code = 1000, reason = ""): void {
    conn.close(code, reason.slice(0, 120));
    this.connectionEnded(conn);
  }

  /**
   * Books the bytes held for a socket whose CONNECT is not accepted yet (its unfinished packet,
   * the CONNECT being verified and the packets behind it), and refuses the socket beyond
   * MAX_HELD_BYTES (behind a CONNECT) or when all such sockets together exceed MAX_UNCONNECTED_BYTES.
   */
  holdPending(conn: Connection): void {
    const behind = conn.heldBytes + (conn.authQueue ? conn.reader.pending : 0);
    const bytes = conn.state === "awaiting-connect" ? conn.connectBytes + conn.heldBytes + conn.reader.pending : 0;
    this.pendingBytes += bytes - conn.pendingBytes;
    conn.pendingBytes = bytes;
    if (bytes === 0) return;
    const { MAX_HELD_BYTES: perSocket, MAX_UNCONNECTED_BYTES: total } = this.config;
    if (perSocket > 0 && behind > perSocket) throw new ConnectRefused(RC.QUOTA_EXCEEDED, "too much sent before CONNACK");
    if (total > 0 && this.pendingBytes > total) {
      // a CONNECT that was read gets its CONNACK; a socket that has not sent one is just closed
      if (conn.authQueue) throw new ConnectRefused(RC.SERVER_BUSY, "too many connections being set up");
      throw new ProtocolError(RC.SERVER_BUSY, "too many connections being set up");
    }
  }

  private connectionEnded(conn: Connection): void {
    if (conn.pendingBytes !== 0) this.holdPending(conn); // closed: releases its share
    if (!this.connections.delete(conn)) return;
    const session = conn.session;
    if (!session || session.conn !== conn) return;
    this.sessionLost(conn, session, conn.disconnected, conn.end ?? SOCKET_LOST);
  }

  /** A session lost its connection: the will and expiry rules, then the disconnected event saying what they did. */
  private sessionLost(conn: Pick<Connection, "clientId" | "version" | "keepalive" | "grant">, session: Session, clean: boolean, end: ConnectionEnd): void {
    const willOwed = !clean && session.will !== null;
    this.sessions.connectionLost(session, clean);
    const delayed = session.willAt !== null;
    const ended = this.sessions.get(session.clientId) !== session;
    this.lifecycle.disconnected(conn, session, end, willOwed && !delayed, delayed, ended);
  }
}

/** the earlier of two times; null is never */
function earliest(a: number | null, b: number | null): number | null {
  return a === null ? b : b === null || a <= b ? a : b;
}
