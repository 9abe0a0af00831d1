// A reference model of what MQTT allows clients of a namespace spread over K shards to see
// (test/sim/cluster.ts), and a runner that applies random operations to both: clients on their
// home shards subscribe, unsubscribe, publish, hold their acknowledgements and come and go while
// link calls fail or lose their replies and shards crash at any storage step. Checked on every
// packet and after a settle (no faults, every persistent session back):
// - a QoS ≥ 1 message whose PUBACK/PUBREC its publisher got reaches every persistent session that
//   had a matching subscription SUBACKed before the message was first sent, at least once (and
//   every Clean Session one whose connection lasted to the end), unless it unsubscribed since;
//   a shared group ($share/g/sh/#) gets it at one member;
// - a QoS 2 message never reaches a session twice, nor a QoS 0 one (outside the group's topics);
// - per publisher and topic, QoS ≥ 1 messages reach a connection in the order they were sent;
// - a session gets only messages matching a filter it subscribed to, at most at the QoS published;
// - a persistent session is never lost (Session Present);
// - after quiescence every shard holds the same retained messages, each shard's view of a peer's
//   interest is what the peer's sessions subscribe to (memory and storage), and no chunk is owed.
import fc from "fast-check";
import type * as mqtt from "mqtt-packet";
import { SimCluster, type CrashAt, type Fate } from "../sim/cluster";
import { SimClient } from "../sim/client";
import { home } from "../../src/shards/layout";
import { fingerprint, isExactFilter } from "../../src/shards/fingerprint";

export const FILTERS = ["pub/#", "pub/a", "+/a", "pub/+", "#", "other/b", "$share/g/sh/#"] as const;
export const TOPICS = ["pub/a", "pub/b", "other/a", "other/b", "sh/1"] as const;
const GROUP = "$share/g/sh/#";

/** the filter a subscription matches topics with (a shared one's, without $share/<group>/) */
function plain(filter: string): string {
  return filter.startsWith("$share/") ? filter.slice(filter.indexOf("/", 7) + 1) : filter;
}
export const CLIENT_COUNT = 4;

export type Op =
  | { op: "connect"; c: number; clean: boolean }
  | { op: "subscribe"; c: number; f: number }
  | { op: "unsubscribe"; c: number; f: number }
  | { op: "publish"; c: number; t: number; qos: 0 | 1 | 2; retain: boolean; clear?: boolean }
  | { op: "drop"; c: number }
  | { op: "hold"; c: number }
  | { op: "release"; c: number }
  | { op: "disconnect"; c: number }
  | { op: "step"; pick: number; fate: Fate; crash: CrashAt }
  | { op: "drain" }
  | { op: "advance"; ms: number }
  | { op: "crash"; shard: number };

export class Violation extends Error {}

/** Client ids whose homes spread over the shards: client i lives on shard i mod K. */
export function clientIds(k: number): string[] {
  const ids: string[] = [];
  for (let i = 0, n = 0; ids.length < CLIENT_COUNT; n++) {
    const id = `c${n}`;
    if (home(id, k) === i % k) {
      ids.push(id);
      i++;
    }
  }
  return ids;
}

export function matches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return !(i === 0 && topic.startsWith("$"));
    if (i >= t.length) return false;
    if (f[i] === "+") continue;
    if (f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

interface Pub {
  payload: string;
  from: number;
  topic: string;
  qos: 0 | 1 | 2;
  retain: boolean;
  pid: number | undefined;
  /** order of first send */
  seq: number;
  /**
   * sessions owed the message once it is accepted: client and session generation; for a Clean
   * Session one, the connection it must stay on (owed only if it was connected throughout)
   */
  owed: { c: number; gen: number; conn: number | null }[];
  /** the publisher's session generation when it sent it (a resend needs the same session) */
  gen: number;
  /** every client's session when it was sent (one member is owed it), null: not owed to the group */
  group: { c: number; gen: number; conn: number | null }[] | null;
}

interface ClientState {
  /** session generation: a CONNACK with Session Present 0 starts a new one */
  gen: number;
  /** the broker holds a persistent session for it (the last CONNACKed connect had Clean Session 0) */
  persistent: boolean;
  /** a Clean Session connect got no CONNACK: the old session may be gone */
  uncertain: boolean;
  /** the connect in progress (no CONNACK yet) */
  connecting: { clean: boolean } | null;
  /** SUBACKed filters of this generation, with the QoS granted */
  subs: Map<string, number>;
  /** UNSUBSCRIBEs sent in this generation, with the publish seq then */
  unsubscribed: { filter: string; seq: number }[];
  /** filters sent in a SUBSCRIBE in this generation (acknowledged or not) */
  everSubscribed: Set<string>;
  /** SUBSCRIBE sent, by packet id */
  pendingSubs: Map<number, string>;
  /** payloads got in this generation; QoS 2 ones counted */
  got: Set<string>;
  qos2: Map<string, number>;
  qos0: Map<string, number>;
  /** connections so far, and per connection the last seq got per publisher|topic */
  conn: number;
  lastSeq: Map<string, number>;
  /** CONNACK time of the current connection (publish seq) */
  connectedAtSeq: number;
  /** packets of the client read so far, and PUBLISH among them */
  seen: number;
  received: number;
}

export class ClusterRun {
  readonly cluster: SimCluster;
  readonly ids: string[];
  readonly clients: SimClient[];
  readonly state: ClientState[];
  /** the QoS each client subscribes to each filter with (fixed per run: a re-subscribe changes nothing) */
  readonly qosTable: (0 | 1 | 2)[];
  private readonly pubs = new Map<string, Pub>();
  private seq = 0;
  /** SUBSCRIBE packet ids: far from the client's own PUBLISH ids */
  private subIds = 50_000;
  log: string[] = [];
  /** SUBACKs and PUBACKs/PUBRECs the clients got, in the order they got them ("suback c1 50001") */
  readonly timeline: string[] = [];
  /** deliveries owed (accepted QoS ≥ 1 message, persistent matching session) found made; those across shards */
  checked = 0;
  checkedAcross = 0;
  /** messages owed to the shared group found delivered to a member */
  checkedGroup = 0;

  constructor(
    readonly k: number,
    qosTable: (0 | 1 | 2)[],
    crashPlan: SimCluster["crashPlan"] = null,
    restartMs = 0,
  ) {
    this.cluster = new SimCluster({ k, config: { MAX_QUEUED_MESSAGES: 10_000, RECEIVE_MAXIMUM: 65535 }, restartMs });
    this.cluster.crashPlan = crashPlan;
    this.ids = clientIds(k);
    this.clients = this.ids.map((id) => new SimClient(this.cluster.gate(home(id, k)), id));
    this.state = this.ids.map(() => ({
      gen: 0,
      persistent: false,
      uncertain: false,
      connecting: null,
      subs: new Map(),
      everSubscribed: new Set(),
      unsubscribed: [],
      pendingSubs: new Map(),
      got: new Set(),
      qos2: new Map(),
      qos0: new Map(),
      conn: 0,
      lastSeq: new Map(),
      connectedAtSeq: 0,
      seen: 0,
      received: 0,
    }));
    this.qosTable = qosTable;
    this.cluster.onEvent = () => this.observe();
  }

  async start(): Promise<void> {
    await this.cluster.start();
  }

  private fail(message: string): never {
    const crash = this.cluster.crashedAt ? ` (planned crash: ${this.cluster.crashedAt})` : "";
    throw new Violation(`${message}${crash}\nops:\n${this.log.join("\n")}`);
  }

  async apply(op: Op): Promise<void> {
    this.log.push(JSON.stringify(op));
    const cl = this.cluster;
    switch (op.op) {
      case "connect": {
        const c = this.clients[op.c]!;
        if (c.socket && !c.closed) return; // one connection at a time per client
        this.lostConnect(op.c);
        const s = this.state[op.c]!;
        s.connecting = { clean: op.clean };
        c.connect({ version: 4, clean: op.clean });
        return;
      }
      case "subscribe": {
        const c = this.clients[op.c]!;
        if (!c.connected) return;
        const filter = FILTERS[op.f]!;
        const qos = this.qosTable[op.c * FILTERS.length + op.f]!;
        const s = this.state[op.c]!;
        s.everSubscribed.add(filter);
        const messageId = ++this.subIds;
        s.pendingSubs.set(messageId, filter);
        c.send({ cmd: "subscribe", messageId, subscriptions: [{ topic: filter, qos }] });
        return;
      }
      case "unsubscribe": {
        const c = this.clients[op.c]!;
        if (!c.connected) return;
        const filter = FILTERS[op.f]!;
        const s = this.state[op.c]!;
        s.subs.delete(filter);
        // a SUBACK of the filter still to come (at K > 1 it may follow this UNSUBACK) says nothing now
        for (const [id, f] of s.pendingSubs) if (f === filter) s.pendingSubs.delete(id);
        s.unsubscribed.push({ filter, seq: this.seq });
        c.send({ cmd: "unsubscribe", messageId: ++this.subIds, unsubscriptions: [filter] });
        return;
      }
      case "publish":
        return this.publish(op);
      case "hold":
        this.clients[op.c]!.ackMode = "hold"; // PUBLISH received and not acknowledged: in flight until released or re-sent
        return;
      case "release": {
        const c = this.clients[op.c]!;
        c.ackMode = "auto";
        if (c.connected) c.releaseAcks();
        return;
      }
      case "drop":
        if (this.clients[op.c]!.connected) this.clients[op.c]!.drop();
        return;
      case "disconnect":
        if (this.clients[op.c]!.connected) this.clients[op.c]!.disconnect();
        return;
      case "step":
        await cl.step(op.pick, op.fate, op.crash);
        return;
      case "drain":
        await cl.drain();
        return;
      case "advance":
        await cl.advance(op.ms);
        return;
      case "crash":
        await cl.crash(cl.shards[op.shard % cl.k]!);
        return;
    }
  }

  private publish(op: Extract<Op, { op: "publish" }>): void {
    const c = this.clients[op.c]!;
    if (!c.connected) return;
    const topic = TOPICS[op.t]!;
    const clear = op.retain && op.clear === true;
    const payload = clear ? "" : `m${++this.seq}`;
    const seq = this.seq;
    const owed: Pub["owed"] = [];
    if (op.qos > 0 && !clear) {
      for (let d = 0; d < this.clients.length; d++) {
        const s = this.state[d]!;
        if (s.uncertain || !(s.persistent || this.clients[d]!.connected)) continue;
        let q = -1;
        for (const [filter, granted] of s.subs) if (matches(filter, topic)) q = Math.max(q, granted);
        if (Math.min(q, op.qos) >= 1) owed.push({ c: d, gen: s.gen, conn: s.persistent ? null : s.conn });
      }
    }
    // The group: owed to one member once a member's SUBACK came, if every client that may join takes
    // it at QoS ≥ 1 (a QoS 0 member may be the one picked; one not yet SUBACKed may be picked too).
    let group: Pub["group"] = null;
    const groupQos = this.state.map((_, d) => this.qosTable[d * FILTERS.length + FILTERS.indexOf(GROUP)]!);
    if (op.qos > 0 && !clear && matches(plain(GROUP), topic) && this.state.some((s) => s.subs.has(GROUP) && !s.uncertain) && groupQos.every((q) => q > 0)) {
      group = this.state.map((s, d) => ({ c: d, gen: s.gen, conn: s.persistent ? null : s.conn }));
    }
    const pid = c.publish(topic, payload, op.qos, op.retain);
    if (!clear) this.pubs.set(payload, { payload, from: op.c, topic, qos: op.qos, retain: op.retain, pid, seq, owed, gen: this.state[op.c]!.gen, group });
  }

  /**
   * A connect that never got its CONNACK: with Clean Session the old session may be gone, without
   * it a new one may exist. (A persistent session a Clean Session 0 connect finds stays certain.)
   */
  private lostConnect(c: number): void {
    const s = this.state[c]!;
    if (s.connecting && (s.connecting.clean || !s.persistent)) s.uncertain = true;
    s.connecting = null;
  }

  /** What the clients got since the last look, against the model (after every event). */
  private observe(): void {
    for (let ci = 0; ci < this.clients.length; ci++) {
      const c = this.clients[ci]!;
      const s = this.state[ci]!;
      while (s.seen < c.packets.length) this.packet(ci, c, s, c.packets[s.seen++]!);
    }
  }

  private packet(ci: number, c: SimClient, s: ClientState, p: mqtt.Packet): void {
    const who = this.ids[ci]!;
    if (p.cmd === "connack") {
      const rc = p.returnCode ?? p.reasonCode ?? 0;
      const clean = s.connecting?.clean ?? true;
      s.connecting = null;
      if (rc !== 0) this.fail(`${who}: CONNACK refused (${rc})`);
      const expected = s.persistent;
      if (!p.sessionPresent) {
        if (expected && !s.uncertain && !clean) this.fail(`${who}: persistent session lost (Session Present 0)`);
        s.gen++;
        s.subs.clear();
        s.everSubscribed.clear();
        s.unsubscribed = [];
        s.pendingSubs.clear();
        s.got.clear();
        s.qos2.clear();
        s.qos0.clear();
      } else if (clean || (!expected && !s.uncertain)) this.fail(`${who}: Session Present 1 where no session was`);
      else if (s.uncertain) {
        // connects whose CONNACK was lost may have ended the session and made this one: what was
        // owed to the old one is void, and its subscriptions are not known (still may have matched)
        s.gen++;
        s.subs.clear();
        s.pendingSubs.clear();
      }
      s.uncertain = false;
      s.persistent = !clean;
      s.conn++;
      s.lastSeq.clear();
      s.connectedAtSeq = this.seq;
      if (p.sessionPresent) this.resend(ci, c, s);
      return;
    }
    if (p.cmd === "suback" || p.cmd === "puback" || p.cmd === "pubrec") this.timeline.push(`${p.cmd} ${who} ${p.messageId}`);
    if (p.cmd === "suback") {
      const filter = s.pendingSubs.get(p.messageId!);
      if (filter === undefined) return;
      s.pendingSubs.delete(p.messageId!);
      const g = p.granted[0] as number;
      if (g < 0x80) s.subs.set(filter, g);
      return;
    }
    if (p.cmd !== "publish") return;
    s.received++;
    const payload = Buffer.from(p.payload as Buffer).toString();
    const where = `${who} got ${p.topic} "${payload}" qos ${p.qos}${p.dup ? " dup" : ""}${p.retain ? " retain" : ""}`;
    if (![...s.everSubscribed].some((f) => matches(plain(f), p.topic))) this.fail(`${where}: no subscription of this session matches`);
    if (payload === "") return; // a retained message cleared: nothing more to know
    const pub = this.pubs.get(payload);
    if (!pub) this.fail(`${where}: never published`);
    if (pub.topic !== p.topic) this.fail(`${where}: published on ${pub.topic}`);
    if (p.qos > pub.qos) this.fail(`${where}: published at QoS ${pub.qos}`);
    if (p.retain && !pub.retain) this.fail(`${where}: not published retained`);
    const first = !s.got.has(payload);
    s.got.add(payload);
    // a shared group's copy and the session's own subscription's are two deliveries [MQTT-4.8.2]:
    // repeats and order are checked outside the group's topics only
    if (p.topic.startsWith("sh/")) return;
    // QoS 0: at most once (a message published at QoS 0 is never re-sent by anyone)
    if (pub.qos === 0 && !p.retain) {
      const n = (s.qos0.get(payload) ?? 0) + 1;
      s.qos0.set(payload, n);
      if (n > 1) this.fail(`${where}: QoS 0 message delivered twice`);
    }
    // SimClient's own exactly-once record says whether a QoS 2 PUBLISH is new (a re-send of a packet id it holds is not)
    if (p.qos === 2 && !p.retain && c.received[s.received - 1]?.fresh) {
      const n = (s.qos2.get(payload) ?? 0) + 1;
      s.qos2.set(payload, n);
      if (n > 1) this.fail(`${where}: QoS 2 delivered twice`);
    }
    if (first && p.qos > 0 && !p.retain && pub.seq > s.connectedAtSeq) {
      const key = `${pub.from}|${pub.topic}`;
      const last = s.lastSeq.get(key) ?? 0;
      if (pub.seq < last) this.fail(`${where}: out of order (after m${last})`);
      s.lastSeq.set(key, pub.seq);
    }
  }

  /** The session came back: what the client sent and was not acknowledged goes again, in order. */
  private resend(ci: number, c: SimClient, s: ClientState): void {
    for (const pub of this.pubs.values()) {
      if (pub.from !== ci || pub.qos === 0 || pub.gen !== s.gen) continue;
      const acked = c.packets.some((q) => (q.cmd === "puback" || q.cmd === "pubrec") && q.messageId === pub.pid);
      if (!acked) {
        c.send({ cmd: "publish", topic: pub.topic, payload: Buffer.from(pub.payload), qos: pub.qos, retain: pub.retain, dup: true, messageId: pub.pid });
        continue;
      }
      if (pub.qos === 2 && !c.packets.some((q) => q.cmd === "pubcomp" && q.messageId === pub.pid)) c.send({ cmd: "pubrel", messageId: pub.pid! });
    }
  }

  /** Was the message taken (its publisher got the PUBACK or PUBREC)? */
  private accepted(pub: Pub): boolean {
    const c = this.clients[pub.from]!;
    return c.packets.some((q) => (q.cmd === "puback" || q.cmd === "pubrec") && q.messageId === pub.pid);
  }

  /** The end: no more faults, every persistent session back, then everything owed must have arrived. */
  async settle(): Promise<void> {
    const cl = this.cluster;
    for (const c of this.clients) {
      c.ackMode = "auto";
      if (c.connected) c.releaseAcks();
    }
    for (let round = 0; round < 4; round++) {
      await cl.settle();
      let again = false;
      for (let ci = 0; ci < this.clients.length; ci++) {
        const c = this.clients[ci]!;
        if (c.connected) continue;
        if (c.socket && !c.closed) continue; // connecting
        this.lostConnect(ci);
        const s = this.state[ci]!;
        if (!s.persistent && !s.uncertain) continue;
        s.connecting = { clean: false };
        c.connect({ version: 4, clean: false });
        again = true;
      }
      if (!again) break;
    }
    await cl.settle();
    for (const pub of this.pubs.values()) {
      if (pub.qos === 0 || !this.accepted(pub)) continue;
      for (const { c, gen, conn } of pub.owed) {
        const s = this.state[c]!;
        if (s.gen !== gen) continue; // that session ended (Clean Session)
        if (conn !== null && (s.conn !== conn || !this.clients[c]!.connected)) continue; // a Clean Session's connection ended
        // unsubscribed after the message was sent: a copy still travelling between shards finds no subscription
        if (s.unsubscribed.some((u) => u.seq >= pub.seq && matches(u.filter, pub.topic))) continue;
        if (!s.got.has(pub.payload)) this.fail(`${this.ids[c]} never got ${pub.payload} (QoS ${pub.qos} on ${pub.topic} from ${this.ids[pub.from]})`);
        this.checked++;
        if (home(this.ids[c]!, this.k) !== home(this.ids[pub.from]!, this.k)) this.checkedAcross++;
      }
    }
    // the group: a member got it, unless a client left the group (or a session ended) since
    for (const pub of this.pubs.values()) {
      if (!pub.group || !this.accepted(pub)) continue;
      const gone = pub.group.some(({ c, gen, conn }) => {
        const s = this.state[c]!;
        return s.gen !== gen || (conn !== null && (s.conn !== conn || !this.clients[c]!.connected)) || s.unsubscribed.some((u) => u.seq >= pub.seq && u.filter === GROUP);
      });
      if (gone) continue;
      if (!this.state.some((s) => s.got.has(pub.payload))) this.fail(`the shared group never got ${pub.payload} (QoS ${pub.qos} from ${this.ids[pub.from]})`);
      this.checkedGroup++;
    }
    // retained: every shard holds the same, and only what was published retained
    const views = cl.shards.map((sh) => {
      const m = new Map<string, string>();
      for (const [topic, msg] of sh.store.snapshot().retained) m.set(topic, Buffer.from(msg.payload).toString());
      return m;
    });
    for (let i = 1; i < views.length; i++) {
      const a = [...views[0]!].sort();
      const b = [...views[i]!].sort();
      if (JSON.stringify(a) !== JSON.stringify(b)) this.fail(`retained differs: shard 0 ${JSON.stringify(a)}, shard ${i} ${JSON.stringify(b)}`);
    }
    for (const [topic, payload] of views[0]!) {
      const pub = this.pubs.get(payload);
      if (!pub || !pub.retain || pub.topic !== topic) this.fail(`retained ${topic} holds "${payload}", never published retained there`);
    }
    // interest: what each shard knows of each peer is what the peer's sessions subscribe to (wildcard
    // and shared filters as strings, exact ones as fingerprints), in memory and stored
    const json = (v: unknown[]) => JSON.stringify([...v].sort());
    for (const sh of cl.shards) {
      const wild = new Set<string>();
      const exact = new Set<number>();
      for (const session of sh.core.sessions.values()) for (const f of session.subscriptions.keys()) if (isExactFilter(f)) exact.add(fingerprint(f));
      else wild.add(f);
      const local = json([...sh.node.interest.localFilters()]);
      const localFps = json(sh.node.interest.localFingerprints());
      if (local !== json([...wild]) || localFps !== json([...exact])) this.fail(`shard ${sh.index} announces ${local} ${localFps}, its sessions subscribe to ${json([...wild])} ${json([...exact])}`);
      for (const other of cl.shards) {
        if (other === sh) continue;
        const view = json(other.node.interest.viewOf(sh.index));
        const fps = json(other.node.interest.fingerprintsOf(sh.index));
        if (view !== local || fps !== localFps) this.fail(`shard ${other.index} sees ${view} ${fps} of shard ${sh.index}, which announces ${local} ${localFps}`);
        const stored = json(other.store.loadInterest().filter((r) => r.peer === sh.index).map((r) => r.filter));
        const storedFps: number[] = [];
        other.store.loadInterestFps((peer, fp) => peer === sh.index && storedFps.push(fp));
        if (stored !== view || json(storedFps) !== fps) this.fail(`shard ${other.index} stored ${stored} ${json(storedFps)} of shard ${sh.index}, holds ${view} ${fps}`);
      }
    }
    if (cl.pendingChunks() > 0) this.fail(`${cl.pendingChunks()} chunks still owed after the settle`);
    for (const sh of cl.shards) if (sh.store.loadChunks().length > 0) this.fail(`shard ${sh.index}: outbox not empty after the settle`);
  }
}

// ——— random sequences ———

const crashArb = fc.constantFrom<CrashAt>("none", "none", "none", "none", "none", "none", "none", "none", "before", "after");

export const opArb = (k: number): fc.Arbitrary<Op> => {
  const c = fc.nat(CLIENT_COUNT - 1);
  return fc.oneof(
    { weight: 3, arbitrary: fc.record({ op: fc.constant("connect" as const), c, clean: fc.constantFrom(false, false, false, true) }) },
    { weight: 4, arbitrary: fc.record({ op: fc.constant("subscribe" as const), c, f: fc.nat(FILTERS.length - 1) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("unsubscribe" as const), c, f: fc.nat(FILTERS.length - 1) }) },
    {
      weight: 8,
      arbitrary: fc.record({ op: fc.constant("publish" as const), c, t: fc.nat(TOPICS.length - 1), qos: fc.constantFrom(0 as const, 1 as const, 2 as const), retain: fc.boolean(), clear: fc.constantFrom(false, false, false, true) }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("drop" as const), c }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("hold" as const), c }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("release" as const), c }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("disconnect" as const), c }) },
    { weight: 12, arbitrary: fc.record({ op: fc.constant("step" as const), pick: fc.nat(), fate: fc.constantFrom<Fate>("ok", "ok", "ok", "ok", "fail", "lose"), crash: crashArb }) },
    { weight: 2, arbitrary: fc.constant({ op: "drain" as const }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("advance" as const), ms: fc.integer({ min: 50, max: 2000 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("crash" as const), shard: fc.nat(k - 1) }) },
  );
};

/** Every client starts connected with a persistent session and a subscription (rich states come sooner), then random operations. */
export const sequenceArb = (k: number, maxLength: number): fc.Arbitrary<Op[]> =>
  fc.tuple(fc.array(fc.nat(FILTERS.length - 1), { minLength: CLIENT_COUNT, maxLength: CLIENT_COUNT }), fc.array(opArb(k), { minLength: 5, maxLength, size: "max" })).map(([filters, ops]) => [
    ...Array.from({ length: CLIENT_COUNT }, (_, c): Op => ({ op: "connect", c, clean: false })),
    { op: "drain" },
    ...filters.map((f, c): Op => ({ op: "subscribe", c, f })),
    { op: "drain" },
    ...ops,
  ]);

export const qosTableArb = fc.array(fc.constantFrom(0 as const, 1 as const, 2 as const, 1 as const, 2 as const), { minLength: CLIENT_COUNT * FILTERS.length, maxLength: CLIENT_COUNT * FILTERS.length });

/** Runs a sequence and its settle; throws a Violation naming the operations and the crash. */
export async function runCluster(k: number, ops: Op[], qosTable: (0 | 1 | 2)[], crashPlan: SimCluster["crashPlan"] = null, restartMs?: number, crashEvent: SimCluster["crashEvent"] = null): Promise<ClusterRun> {
  const run = new ClusterRun(k, qosTable, crashPlan, restartMs);
  run.cluster.crashEvent = crashEvent;
  await run.start();
  for (const op of ops) await run.apply(op);
  await run.settle();
  return run;
}
