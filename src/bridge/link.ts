// One bridge at work: an MQTT client towards the remote broker and one towards its own namespace,
// and the messages between them. The two connections live and die together: when either ends,
// both are closed and rebuilt after a backoff, and each sender's session resends what the other
// side had not acknowledged. A message is acknowledged to its sender only once the receiving side
// has acknowledged it (QoS 1: PUBACK; QoS 2: PUBREC, hop by hop), so none is lost when a side or
// the bridge restarts (store-and-forward lives in the brokers' sessions, not here).
import { MqttClient, type Channel, type Message } from "./client";
import type { BridgeConfig, QoS, TopicRule } from "./config";
import { ruleFor, mapTopic, producedByOut } from "./topics";
import { backoffDelay } from "./backoff";
import type { Sink } from "./transport";
import type { PublishProperties } from "./wire";
import { isValidTopicName } from "../topics/validate";
import { isUtf8 } from "../protocol/utf8";

/** What the bridge needs from its runtime (the Durable Object, or a test). */
export interface LinkRuntime {
  openRemote(sink: Sink): Promise<Channel>;
  openLocal(sink: Sink): Promise<Channel>;
  /** the remote password (a Worker secret, perhaps): throws when it cannot be had */
  password(): string | undefined;
  now(): number;
  setTimer(fn: () => void, ms: number): () => void;
  /** the filters this bridge subscribed to on each side last time (to drop those no rule names any more) */
  loadFilters(): Promise<{ local: string[]; remote: string[] }>;
  saveFilters(filters: { local: string[]; remote: string[] }): Promise<void>;
  /** the largest packet taken from the remote (the namespace's MAX_PACKET_SIZE): nothing larger is ever held */
  maxPacketSize?: number;
  /** the object's storage (its writes are committed before what is sent after them leaves) */
  storage: { get<T>(key: string): Promise<T | undefined>; put(key: string, value: unknown): void };
  log(level: "info" | "warn" | "error", message: string): void;
}

export interface BridgeStatus {
  name: string;
  namespace: string;
  remote: string;
  connected: { remote: boolean; local: boolean };
  /** the last thing that went wrong, and when (ms); null while nothing has */
  lastError: string | null;
  lastErrorAt: number | null;
  /** messages sent to the remote and not acknowledged yet */
  queued: number;
  /** messages forwarded out (local → remote) and in (remote → local), acknowledged by the receiver */
  sent: number;
  received: number;
  /** messages not forwarded: refused by the receiver, caught by the loop guard, matching no rule, too large, unfit for the receiver, QoS 0 over a buffer budget */
  dropped: number;
  /** links rebuilt after a failure or a lost connection */
  reconnects: number;
  /** since when the link has been up (ms), or null */
  since: number | null;
  /** when the next attempt is due (ms), while the link is down */
  retryAt: number | null;
}

/** The local side's session lives as long as the broker lets it (MAX_SESSION_EXPIRY caps it). */
const LOCAL_SESSION_EXPIRY = 0xfffffffe;
/** How long building a link (sockets, CONNACKs, SUBACKs) may take before it is given up. */
const LINK_TIMEOUT_MS = 30_000;
/** A link up this long counts as healthy: its loss restarts the backoff at `reconnectMin`. */
const STABLE_MS = 30_000;
/** QoS 0 payload bytes held from the remote while the namespace side is being connected */
const INBOX_QOS0_BYTES = 4 * 1024 * 1024;
/** MAX_PACKET_SIZE's default, when the runtime gives none */
const DEFAULT_MAX_PACKET = 1024 * 1024;

export class BridgeLink {
  private remote: MqttClient | null = null;
  private local: MqttClient | null = null;
  private up = false;
  private running = false;
  /** generation of the current attempt: callbacks of an older one do nothing */
  private gen = 0;
  private failures = 0;
  private cancelRetry: (() => void) | null = null;
  private cancelTick: (() => void) | null = null;
  /** remote messages that came before the local side was ready (not acknowledged yet) */
  private inbox: [Message, () => void][] = [];
  /** bytes of the QoS 0 messages in the inbox (QoS 1/2 are bounded by the remote's window) */
  private inboxQos0Bytes = 0;
  /** each side's QoS 2 sends past PUBREC (their PUBREL owed), kept across links and restarts */
  private releasing: { remote: Set<number>; local: Set<number> } | null = null;
  private readonly stats = { lastError: null as string | null, lastErrorAt: null as number | null, sent: 0, received: 0, dropped: 0, reconnects: 0, since: null as number | null, retryAt: null as number | null };

  constructor(
    readonly config: BridgeConfig,
    private readonly rt: LinkRuntime,
  ) {}

  get isRunning(): boolean {
    return this.running;
  }

  /** Starts the bridge (idempotent). */
  start(): void {
    if (this.running) return;
    this.running = true;
    void this.attempt();
  }

  /** Stops it for good (config removed or changed): both sides are disconnected. */
  stop(): void {
    this.running = false;
    this.cancelRetry?.();
    this.cancelRetry = null;
    this.gen++;
    this.teardown("bridge stopped", true);
  }

  status(): BridgeStatus {
    const c = this.config;
    return {
      name: c.name,
      namespace: c.namespace,
      remote: c.url,
      connected: { remote: this.remote?.state === "connected", local: this.local?.state === "connected" },
      ...this.stats,
      queued: this.remote?.inflight ?? 0,
    };
  }

  private async attempt(): Promise<void> {
    const gen = ++this.gen;
    this.stats.retryAt = null;
    const c = this.config;
    // a server that accepts the socket and then says nothing must not hold the bridge for ever
    const cancelTimeout = this.rt.setTimer(() => {
      if (gen === this.gen && !this.up) this.fail(`timed out building the link (no CONNACK or SUBACK within ${LINK_TIMEOUT_MS / 1000} s)`);
    }, LINK_TIMEOUT_MS);
    try {
      if (!this.releasing) {
        const saved = await this.rt.storage.get<{ remote: number[]; local: number[] }>("releasing");
        this.releasing ??= { remote: new Set(saved?.remote), local: new Set(saved?.local) };
      }
      const password = this.rt.password();
      const remote = await this.open("remote", gen, (sink) => this.rt.openRemote(sink), c.version);
      const r = await remote.connect({
        clientId: c.clientId,
        clean: c.clean,
        keepalive: c.keepalive,
        username: c.username,
        password,
        bridgeMode: c.tryPrivate,
        properties: { sessionExpiryInterval: c.clean ? 0 : c.sessionExpiry, receiveMaximum: c.maxInflight },
      });
      const local = await this.open("local", gen, (sink) => this.rt.openLocal(sink), 5);
      await local.connect({
        clientId: `bridge/${c.name}`,
        clean: false,
        keepalive: 0,
        properties: { sessionExpiryInterval: LOCAL_SESSION_EXPIRY, receiveMaximum: Math.min(c.maxInflight, r.receiveMaximum) },
      });
      // Both sessions outlive the link, with their subscriptions: those of rules since removed go.
      const before = await this.rt.loadFilters();
      await this.unsubscribeStale(local, before.local, c.out);
      await this.unsubscribeStale(remote, before.remote, c.in);
      if (c.out.length) await this.subscribe(local, c.out, "local");
      if (c.in.length) await this.subscribe(remote, c.in, "remote");
      if (gen !== this.gen) return;
      const now = { local: c.out.map((r) => r.filter), remote: c.in.map((r) => r.filter) };
      if (JSON.stringify(now) !== JSON.stringify(before)) await this.rt.saveFilters(now);
      if (gen !== this.gen) return;
      cancelTimeout();
      this.up = true;
      this.stats.since = this.rt.now();
      this.rt.log("info", `bridge ${c.name}: connected to ${c.url} (session ${r.sessionPresent ? "resumed" : "new"})`);
      const inbox = this.inbox;
      this.inbox = [];
      this.inboxQos0Bytes = 0;
      for (const [m, ack] of inbox) this.forwardIn(m, ack);
      this.scheduleTick();
    } catch (e) {
      cancelTimeout();
      if (gen !== this.gen) return;
      this.fail((e as Error).message);
    }
  }

  /**
   * No Local, so what the bridge publishes on a side never comes back to it (loops); Retain As
   * Published, so a live retained message keeps its flag; Retain Handling 1, retained messages
   * only for a new subscription (the session keeps the subscriptions). 3.1.1 ignores the options.
   */
  private async subscribe(client: MqttClient, rules: TopicRule[], side: string): Promise<void> {
    const granted = await client.subscribe(rules.map((r) => ({ topic: r.filter, qos: r.qos, nl: true, rap: true, rh: 1 })));
    granted.forEach((code, i) => {
      if (code >= 0x80) throw new Error(`the ${side} broker refused the subscription to ${rules[i]!.filter} (0x${code.toString(16)})`);
    });
  }

  private async unsubscribeStale(client: MqttClient, before: string[], rules: TopicRule[]): Promise<void> {
    const stale = before.filter((f) => !rules.some((r) => r.filter === f));
    if (stale.length) await client.unsubscribe(stale);
  }

  /** Opens one side's socket and its client, wired to this attempt. */
  private async open(side: "remote" | "local", gen: number, opener: (sink: Sink) => Promise<Channel>, version: 4 | 5): Promise<MqttClient> {
    let client: MqttClient | null = null;
    const early: Uint8Array[] = [];
    let closedEarly: string | null = null;
    const sink: Sink = {
      data: (b) => (client ? client.receive(b) : early.push(b)),
      closed: (reason) => (client ? client.close(`${side}: ${reason}`) : (closedEarly ??= reason)),
    };
    const channel = await opener(sink);
    if (gen !== this.gen) {
      channel.close();
      throw new Error("superseded");
    }
    client = new MqttClient(
      channel,
      version,
      {
        message: (m, ack) => (side === "local" ? this.forwardOut(m, ack) : this.up ? this.forwardIn(m, ack) : this.early(m, ack)),
        closed: (reason) => {
          if (gen === this.gen) this.fail(reason.startsWith(side) ? reason : `${side}: ${reason}`);
        },
        dropped: (reason) => {
          this.stats.dropped++;
          this.error(`the ${side} broker sent ${reason}`);
        },
      },
      this.rt.now,
      { releasing: this.releasing![side], changed: () => this.saveReleasing() },
      // the namespace is this broker; the remote could send anything, up to 256 MB a packet
      side === "remote" ? (this.rt.maxPacketSize ?? DEFAULT_MAX_PACKET) : Infinity,
    );
    if (side === "remote") this.remote = client;
    else this.local = client;
    for (const b of early) client.receive(b);
    if (closedEarly !== null) throw new Error(`${side}: ${closedEarly}`);
    return client;
  }

  /** A write per QoS 2 PUBREC and PUBCOMP: what the exactly-once exchange needs to survive a restart. */
  private saveReleasing(): void {
    const r = this.releasing!;
    this.rt.storage.put("releasing", { remote: [...r.remote], local: [...r.local] });
  }

  /** A remote message before the namespace side is ready: held, QoS 0 only up to a budget. */
  private early(m: Message, ack: () => void): void {
    if (m.qos === 0) {
      if (this.inboxQos0Bytes + m.payload.byteLength > INBOX_QOS0_BYTES) {
        this.stats.dropped++;
        return;
      }
      this.inboxQos0Bytes += m.payload.byteLength;
    }
    this.inbox.push([m, ack]);
  }

  /** local → remote */
  private forwardOut(m: Message, ack: () => void): void {
    const rule = ruleFor(this.config.out, m.topic);
    const remote = this.remote;
    if (!rule) {
      // a subscription of an older configuration: not ours to forward
      this.stats.dropped++;
      ack();
      return;
    }
    if (!remote || remote.state !== "connected") return; // not acknowledged: the local session resends it
    const topic = mapTopic(rule, m.topic);
    const bad = unsendable(topic, m);
    if (bad) {
      // it could never be sent: acknowledged, or the local session would resend it for ever
      this.refused("remote", topic.slice(0, 200), 0x90, bad);
      ack();
      return;
    }
    remote
      .publish({ topic, payload: m.payload, qos: minQos(m.qos, rule.qos), retain: rule.retain && m.retain, properties: carried(m.properties, remote.version) })
      .then((code) => {
        if (code === 0x97 && minQos(m.qos, rule.qos) === 0) this.refused("remote", m.topic, code, "the remote reads slower than messages come: QoS 0 dropped");
        else if (code >= 0x80) this.refused("remote", m.topic, code);
        else this.stats.sent++;
        ack();
      })
      .catch(() => undefined); // the link broke: the local session resends it
  }

  /** remote → local */
  private forwardIn(m: Message, ack: () => void): void {
    const c = this.config;
    const local = this.local;
    // A 3.1.1 remote without the bridge bit may echo our own messages back: not brought in.
    if (c.version === 4 && !c.tryPrivate && producedByOut(c.out, m.topic)) {
      this.stats.dropped++;
      ack();
      return;
    }
    const rule = ruleFor(c.in, m.topic);
    if (!rule) {
      this.stats.dropped++;
      ack();
      return;
    }
    if (!local || local.state !== "connected") return;
    const topic = mapTopic(rule, m.topic);
    // What the namespace would answer with a DISCONNECT (a protocol error) is dropped here: else the
    // link would be rebuilt, and a QoS 1/2 message resent by the remote at every attempt.
    const bad = unsendable(topic, m);
    if (bad) {
      this.refused("local", topic.slice(0, 200), m.properties?.payloadFormatIndicator && !isUtf8(m.payload) ? 0x99 : 0x90, bad);
      ack();
      return;
    }
    local
      .publish({ topic, payload: m.payload, qos: minQos(m.qos, rule.qos), retain: rule.retain && m.retain, properties: carried(m.properties, 5) })
      .then((code) => {
        if (code >= 0x80) this.refused("local", mapTopic(rule, m.topic), code);
        else this.stats.received++;
        ack();
      })
      .catch(() => undefined);
  }

  /** A receiver refused a message (ACL, quota): it is acknowledged anyway, or it would come back forever. */
  private refused(side: string, topic: string, code: number, why?: string): void {
    this.stats.dropped++;
    if (why) this.error(`a message for the ${side} broker on ${topic} (0x${code.toString(16)}: ${why}) was dropped`);
    else this.error(`the ${side} broker refused a message on ${topic} (0x${code.toString(16)}); it was dropped`);
  }

  private fail(reason: string): void {
    if (!this.running) return;
    const wasUp = this.up;
    // a link that held for a while starts the backoff afresh; one that drops at once does not
    if (wasUp && this.stats.since !== null && this.rt.now() - this.stats.since >= STABLE_MS) this.failures = 0;
    this.gen++;
    this.error(reason);
    this.teardown(reason, false);
    if (wasUp) this.stats.reconnects++;
    this.failures++;
    const delay = backoffDelay(this.failures, this.config.reconnectMin, this.config.reconnectMax);
    this.stats.retryAt = this.rt.now() + delay;
    this.cancelRetry?.();
    this.cancelRetry = this.rt.setTimer(() => {
      this.cancelRetry = null;
      if (this.running) void this.attempt();
    }, delay);
  }

  private error(reason: string): void {
    // said once while it repeats (a remote that stays down is retried for as long as it is down)
    if (reason !== this.stats.lastError) this.rt.log("warn", `bridge ${this.config.name}: ${reason}`);
    this.stats.lastError = reason;
    this.stats.lastErrorAt = this.rt.now();
  }

  private teardown(reason: string, disconnect: boolean): void {
    this.up = false;
    this.stats.since = null;
    this.inbox = [];
    this.inboxQos0Bytes = 0;
    this.cancelTick?.();
    this.cancelTick = null;
    const { remote, local } = this;
    this.remote = null;
    this.local = null;
    remote?.close(reason, disconnect);
    local?.close(reason, disconnect);
  }

  /** Keep-alive for both sides, once a second while the link is up. */
  private scheduleTick(): void {
    this.cancelTick = this.rt.setTimer(() => {
      const now = this.rt.now();
      this.remote?.tick(now);
      this.local?.tick(now);
      if (this.up) this.scheduleTick();
    }, 1000);
  }
}

/** Why a message cannot be published as it is (a receiver would end the connection over it), or null. */
function unsendable(topic: string, m: Message): string | null {
  if (!isValidTopicName(topic)) return "not a valid topic name";
  // (at most 3 bytes per UTF-16 unit: only a long topic is encoded to count)
  if (topic.length > 21845 && new TextEncoder().encode(topic).byteLength > 65535) return "topic longer than 65535 bytes";
  if (m.properties?.payloadFormatIndicator && !isUtf8(m.payload)) return "payload not UTF-8 as its format indicator says";
  return null;
}

function minQos(a: QoS, b: QoS): QoS {
  return (a < b ? a : b) as QoS;
}

/** MQTT 5 properties that travel with a message (not the hop's own: alias, subscription ids). */
function carried(p: PublishProperties | undefined, version: 4 | 5): PublishProperties | undefined {
  if (!p || version !== 5) return undefined;
  const { topicAlias: _a, subscriptionIdentifier: _s, ...rest } = p;
  return Object.keys(rest).length ? rest : undefined;
}
