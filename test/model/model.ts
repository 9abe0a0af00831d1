// A reference model of what MQTT allows a handful of clients to see, and a runner that applies
// random operations both to it and to BrokerCore (test/sim), checking every packet a client gets:
// nothing lost at QoS ≥ 1, no QoS 2 duplicate, no QoS 1 repeat without DUP, order per publisher
// and topic, nothing a client may not read, wills exactly when owed, Session Present as expected.
import fc from "fast-check";
import { Crash, SimBroker } from "../sim/broker";
import { SimClient, type Received } from "../sim/client";
import type { Store } from "../../src/storage/store";
import { inspect } from "../../src/broker/inspect";
import type { MemoryStore } from "../../src/storage/memory-store";

export const CLIENTS = ["c0", "c1", "c2"] as const;
type Id = (typeof CLIENTS)[number];
const MONITOR = "mon";
/** read rights of every client: `pub/#`, `sh/#`, its own `own/<id>/#`, and the wills */
export const AUTH_VARS = { ACL_DEFAULT: JSON.stringify({ subscribe: ["pub/#", "sh/#", "own/%c/#", "will/#"] }) };
// shared subscriptions are listed twice: their corner cases need two members at once
const FILTERS = ["pub/#", "pub/a", "+/a", "#", "own/+/x", "$share/g/sh/#", "$share/g/sh/#", "secret/#"] as const;
const TOPICS = ["pub/a", "pub/b", "sh/1", "sh/1", "own/c0/x", "own/c1/x", "secret/x"] as const;
const FAR = 2 * 3600 * 1000;

export type Op =
  | { op: "connect"; c: Id; version: 4 | 5; clean: boolean; expiry: number; will: number | null; rm?: number }
  | { op: "subscribe"; c: Id; filter: string; qos: 0 | 1 | 2 }
  | { op: "unsubscribe"; c: Id; filter: string }
  | { op: "publish"; c: Id; topic: string; qos: 0 | 1 | 2; retain: boolean }
  | { op: "hold"; c: Id }
  | { op: "release"; c: Id }
  | { op: "drop"; c: Id }
  | { op: "disconnect"; c: Id; withWill: boolean }
  | { op: "advance"; ms: number }
  | { op: "far" }
  | { op: "hibernate" }
  | { op: "restart" };

const id = fc.constantFrom(...CLIENTS);
export const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant("connect" as const), c: id, version: fc.constantFrom(4 as const, 5 as const), clean: fc.boolean(), expiry: fc.constantFrom(0, 3600), will: fc.constantFrom(null, 0, 2), rm: fc.constantFrom(undefined, 2, 10) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("subscribe" as const), c: id, filter: fc.constantFrom(...FILTERS), qos: fc.constantFrom(0 as const, 1 as const, 2 as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("unsubscribe" as const), c: id, filter: fc.constantFrom(...FILTERS) }) },
  { weight: 8, arbitrary: fc.record({ op: fc.constant("publish" as const), c: id, topic: fc.constantFrom(...TOPICS), qos: fc.constantFrom(0 as const, 1 as const, 2 as const), retain: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("hold" as const), c: id }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("release" as const), c: id }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("drop" as const), c: id }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("disconnect" as const), c: id, withWill: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("advance" as const), ms: fc.integer({ min: 100, max: 3000 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: "far" as const }) },
  { weight: 1, arbitrary: fc.constant({ op: "hibernate" as const }) },
  { weight: 1, arbitrary: fc.constant({ op: "restart" as const }) },
);

/** Each client may start connected with a persistent session and a subscription: rich states come sooner. */
const setupArb: fc.Arbitrary<Op[]> = fc
  .tuple(...CLIENTS.map((c) => fc.option(fc.tuple(fc.constantFrom(4 as const, 5 as const), fc.constantFrom(...FILTERS), fc.constantFrom(1 as const, 2 as const), fc.boolean()), { nil: null }).map((o) => ({ c, o }))))
  .map((list) =>
    list.flatMap(({ c, o }): Op[] => {
      if (!o) return [];
      const [version, filter, qos, hold] = o;
      const ops: Op[] = [
        { op: "connect", c, version, clean: false, expiry: 3600, will: 2, rm: 2 },
        { op: "subscribe", c, filter, qos },
      ];
      if (hold) ops.push({ op: "hold", c });
      return ops;
    }),
  );

/** A sequence: an optional set-up, then random operations. */
export const sequenceArb = (maxLength: number): fc.Arbitrary<Op[]> =>
  fc.tuple(setupArb, fc.array(opArb, { minLength: 5, maxLength })).map(([setup, ops]) => [...setup, ...ops]);

interface ModelSession {
  /** outlives its connection now (expiry > 0) */
  persistent: boolean;
  /** created to outlive its connection: its queue is stored (a clean session's is in memory) */
  durable: boolean;
  expiry: number;
  subs: Map<string, 0 | 1 | 2>;
  connected: boolean;
  will: { payload: string; delayMs: number } | null;
  willDueAt: number | null;
  /** a crash hit an operation of this session: what it is owed can no longer be asserted */
  uncertain: boolean;
  /** ever joined the shared group: messages it holds for the group go when it ends */
  shared: boolean;
}

interface Published {
  from: Id;
  topic: string;
  seq: number;
}

/** What went wrong, with the operations that led there. */
export class Violation extends Error {}

function readable(client: string, topic: string): boolean {
  return topic.startsWith("pub/") || topic.startsWith("sh/") || topic.startsWith(`own/${client}/`) || topic.startsWith("will/");
}

function matches(filter: string, topic: string): boolean {
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

export interface RunOptions {
  /** crash the runtime at the n-th event that writes storage, before or after its commit */
  crashAt?: { event: number; afterCommit: boolean };
  /** a small MAX_INFLIGHT_BYTES, so the byte bound paces most sends */
  tightBytes?: boolean;
}

export class ModelRun {
  readonly broker: SimBroker;
  private readonly clients = new Map<string, SimClient>();
  private readonly sessions = new Map<string, ModelSession>();
  /** keys ("payload" live, "payload|r" retained) each session must still receive */
  private readonly owed = new Map<string, Set<string>>();
  /** shared-group messages: owed to some member; loss allowed once a member's session ended */
  private readonly groupOwed = new Map<string, { since: number }>();
  private groupEndedAt = -1;
  private readonly retained = new Map<string, { payload: string; qos: 0 | 1 | 2 }>();
  private readonly published = new Map<string, Published>();
  private readonly seen = new Map<string, number>();
  private readonly ackSeen = new Map<string, number>();
  /** per client session: payloads received (QoS 1 repeats need DUP), QoS 2 ones delivered */
  private readonly got = new Map<string, { live: Set<string>; qos2: Set<string>; lastSeq: Map<string, number> }>();
  private readonly willsDue = new Set<string>();
  private readonly willsMaybe = new Set<string>();
  private readonly willsGot = new Set<string>();
  private counter = 0;
  private writesSeen = 0;
  log: string[] = [];
  crashed = false;
  /** the operation and store call the crash hit */
  crashOp = "";

  constructor(private readonly options: RunOptions = {}) {
    this.broker = new SimBroker({
      authVars: AUTH_VARS,
      config: { MAX_QUEUED_MESSAGES: 10_000, RECEIVE_MAXIMUM: 65535, ...(options.tightBytes ? { MAX_INFLIGHT_BYTES: 16 } : {}) },
      wrapStore: options.crashAt ? (store) => this.faulty(store) : undefined,
    });
    for (const c of [...CLIENTS, MONITOR]) this.clients.set(c, new SimClient(this.broker, c));
    this.connectMonitor();
    if (this.broker.crashes !== this.crashesSeen) this.afterCrash(); // the crash hit the monitor's set-up
  }

  /** A store that kills the runtime at the chosen event that writes (see SimBroker.run). */
  private faulty(store: MemoryStore): Store {
    const crashAt = this.options.crashAt!;
    let eventWithWrite = -1;
    const self = this;
    return new Proxy(store, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== "function" || !/^(save|mark|clear|delete|set|add|drop)/.test(String(prop))) return typeof value === "function" ? value.bind(target) : value;
        return (...args: unknown[]) => {
          if (eventWithWrite !== self.broker.events) {
            eventWithWrite = self.broker.events;
            self.writesSeen++;
            if (!self.crashed && self.writesSeen === crashAt.event) {
              self.crashed = true;
              self.crashOp = `${JSON.stringify(self.current)} / ${String(prop)}`;
              if (crashAt.afterCommit) self.broker.crashAfterCommit = true;
              else {
                self.markUncertain();
                self.broker.crashNow = true;
                throw new Crash();
              }
            }
          }
          return value.apply(target, args);
        };
      },
    }) as Store;
  }

  /** events that wrote storage so far (the crash points of a run) */
  get writeEvents(): number {
    return this.writesSeen;
  }

  /**
   * A crash hit the operation in progress: it may or may not have happened. A publish is judged
   * by its acknowledgement alone; an operation of one client leaves that client's session and
   * will in doubt; anything else (alarms, restores) leaves every session and will in doubt.
   */
  private markUncertain(): void {
    const op = this.current;
    if (op?.op === "publish") return;
    const who = op && "c" in op ? [op.c] : [...this.sessions.keys()];
    for (const cid of who) {
      const s = this.sessions.get(cid);
      if (!s) continue;
      s.uncertain = true;
      if (s.will) this.willsMaybe.add(s.will.payload);
    }
    if (!op || !("c" in op)) for (const w of this.willsDue) this.willsMaybe.add(w);
  }

  /** the operation being applied */
  private current: Op | null = null;

  private connectMonitor(): void {
    const m = this.clients.get(MONITOR)!;
    m.connect({ version: 4, clean: false });
    m.subscribe("will/#", 1);
  }

  apply(op: Op): void {
    this.log.push(JSON.stringify(op));
    this.current = op;
    this.step(op);
    if (this.broker.crashes !== this.crashesSeen) this.afterCrash();
    this.check();
    // memory, router and storage agree after every step (the invariant inspect() checks)
    const problems = inspect(this.broker.core).problems;
    if (problems.length) throw new Violation(`after ${JSON.stringify(op)}: ${problems.join("; ")}`);
  }

  private crashesSeen = 0;

  private afterCrash(): void {
    this.crashesSeen = this.broker.crashes;
    this.markUncertain(); // (again: a crash after the commit did not pass through the store)
    this.lostConnections();
    this.connectMonitor();
  }

  private step(op: Op): void {
    const b = this.broker;
    switch (op.op) {
      case "connect":
        return this.connect(op);
      case "subscribe": {
        const c = this.client(op.c);
        if (!c.connected) return;
        const granted = c.subscribe(op.filter, op.qos);
        const s = this.sessions.get(op.c)!;
        if (granted.length && granted[0]! < 0x80) s.subs.set(op.filter, granted[0] as 0 | 1 | 2);
        if (op.filter.startsWith("$share/")) s.shared = true;
        else if (granted.length === 0) s.uncertain = true;
        if (granted.length && granted[0]! < 0x80 && !op.filter.startsWith("$share/")) {
          for (const [topic, r] of this.retained) {
            const qos = Math.min(r.qos, granted[0]!);
            if (qos > 0 && matches(op.filter, topic) && readable(op.c, topic)) this.owe(op.c, `${r.payload}|r`);
          }
        }
        return;
      }
      case "unsubscribe": {
        const c = this.client(op.c);
        if (!c.connected) return;
        c.send({ cmd: "unsubscribe", messageId: 60000, unsubscriptions: [op.filter] });
        this.sessions.get(op.c)!.subs.delete(op.filter);
        return;
      }
      case "publish":
        return this.publish(op);
      case "hold":
        this.client(op.c).ackMode = "hold";
        return;
      case "release": {
        const c = this.client(op.c);
        c.ackMode = "auto";
        if (c.connected) c.releaseAcks();
        return;
      }
      case "drop": {
        const c = this.client(op.c);
        if (!c.connected) return;
        c.drop();
        this.lost(op.c);
        return;
      }
      case "disconnect": {
        const c = this.client(op.c);
        if (!c.connected) return;
        const v5 = c.version === 5;
        c.disconnect(op.withWill && v5 ? 0x04 : 0);
        const s = this.sessions.get(op.c)!;
        if (!(op.withWill && v5)) s.will = null;
        this.lost(op.c);
        return;
      }
      case "advance":
        b.advance(op.ms);
        this.fireWills();
        return;
      case "far":
        b.advance(FAR);
        this.fireWills();
        for (const [cid, s] of this.sessions) if (!s.connected && s.expiry !== Infinity && s.expiry * 1000 <= FAR) this.end(cid);
        return;
      case "hibernate":
        b.hibernate();
        // A clean session's in-memory queue and in-flight bookkeeping are forgotten (README).
        for (const [cid, s] of this.sessions) if (!s.durable) this.owed.get(cid)?.clear();
        return;
      case "restart":
        b.restart();
        this.crashesSeen = b.crashes;
        this.lostConnections();
        this.connectMonitor();
        return;
    }
  }

  private client(c: string): SimClient {
    return this.clients.get(c)!;
  }

  private connect(op: Extract<Op, { op: "connect" }>): void {
    const c = this.client(op.c);
    const old = this.sessions.get(op.c);
    const willBefore = old?.will?.payload; // a crash may undo its publication or its cancellation
    if (c.connected) this.lost(op.c); // the takeover closes the old connection: its will follows the usual rules
    const persistentNow = op.version === 5 ? op.expiry > 0 : !op.clean;
    const expiry = op.version === 5 ? op.expiry : op.clean ? 0 : 7 * 24 * 3600;
    const willPayload = op.will !== null ? `w:${op.c}:${++this.counter}` : null;
    const prev = this.sessions.get(op.c);
    if (prev && op.clean) this.end(op.c); // Clean Start ends the old session (an owed delayed will goes out)
    const existing = this.sessions.get(op.c);
    const oldWill = existing?.will?.payload;
    if (existing?.willDueAt !== undefined && existing?.willDueAt !== null && existing.will) {
      existing.will = null; // a new connection in time cancels a delayed will [MQTT-3.1.3-9]
      existing.willDueAt = null;
    }
    const connack = c.connect({
      version: op.version,
      clean: op.clean,
      expiry: op.version === 5 ? op.expiry : undefined,
      receiveMaximum: op.version === 5 ? op.rm : undefined,
      will: willPayload ? { topic: `will/${op.c}`, payload: willPayload, qos: 1, delay: op.version === 5 ? (op.will ?? 0) : 0 } : undefined,
    });
    if (!connack) {
      if (!this.crashed) throw new Violation(`no CONNACK for ${op.c}`);
      // The runtime died around this CONNECT: the session may or may not exist now, with its will.
      if (willPayload) this.willsMaybe.add(willPayload);
      if (oldWill) this.willsMaybe.add(oldWill); // its cancellation may not have happened
      if (willBefore) this.willsMaybe.add(willBefore);
      const s = this.sessions.get(op.c);
      if (s) s.uncertain = true;
      else if (persistentNow || prev) {
        this.sessions.set(op.c, { persistent: true, durable: true, expiry, subs: new Map(), connected: false, will: null, willDueAt: null, uncertain: true, shared: false });
        this.got.set(op.c, { live: new Set(), qos2: new Set(), lastSeq: new Map() });
      }
      return;
    }
    const present = !!connack.sessionPresent;
    const expected = existing !== undefined;
    if (present !== expected && !(existing?.uncertain || old?.uncertain)) throw new Violation(`${op.c}: Session Present ${present}, model says ${expected}`);
    let s = this.sessions.get(op.c);
    if (!present) {
      if (s) this.end(op.c);
      s = { persistent: false, durable: persistentNow, expiry, subs: new Map(), connected: false, will: null, willDueAt: null, uncertain: false, shared: false };
      this.sessions.set(op.c, s);
      this.got.set(op.c, { live: new Set(), qos2: new Set(), lastSeq: new Map() });
    }
    s!.persistent = persistentNow;
    s!.expiry = expiry;
    s!.connected = true;
    s!.will = willPayload ? { payload: willPayload, delayMs: (op.version === 5 ? (op.will ?? 0) : 0) * 1000 } : null;
    s!.willDueAt = null;
  }

  private publish(op: Extract<Op, { op: "publish" }>): void {
    const c = this.client(op.c);
    if (!c.connected) return;
    const payload = `m${++this.counter}`;
    this.published.set(payload, { from: op.c, topic: op.topic, seq: this.counter });
    const pid = c.publish(op.topic, payload, op.qos, op.retain);
    const acked = op.qos === 0 ? c.connected : pid !== undefined && c.packets.some((p) => (p.cmd === "puback" || p.cmd === "pubrec") && p.messageId === pid);
    if (!acked) return; // not taken (a crash): it may or may not arrive, nothing is owed
    if (op.retain) {
      // A paced retained backlog sends the retained message current when it gets there: what was
      // owed for the replaced one may come as this one, or not at all if this one is QoS 0.
      const replaced = this.retained.get(op.topic);
      if (replaced) for (const keys of this.owed.values()) keys.delete(`${replaced.payload}|r`);
      this.retained.set(op.topic, { payload, qos: op.qos });
    }
    if (op.qos === 0) return;
    // owed to the group when it matches and whichever member gets it takes it at QoS ≥ 1
    let groupMatched = false;
    let groupQos0 = false;
    for (const [cid, s] of this.sessions) {
      let qos = -1;
      for (const [filter, q] of s.subs) {
        if (filter.startsWith("$share/")) {
          if (!matches(filter.slice("$share/g/".length), op.topic)) continue;
          if (readable(cid, op.topic)) groupMatched = true;
          if (q === 0) groupQos0 = true;
          continue;
        }
        if (matches(filter, op.topic)) qos = Math.max(qos, q);
      }
      if (Math.min(qos, op.qos) >= 1 && readable(cid, op.topic)) this.owe(cid, payload);
    }
    if (groupMatched && !groupQos0) this.groupOwed.set(payload, { since: this.counter });
  }

  private owe(cid: string, key: string): void {
    let set = this.owed.get(cid);
    if (!set) this.owed.set(cid, (set = new Set()));
    set.add(key);
  }

  /** A connection of `cid` ended without a normal DISCONNECT (or with one: will already cleared). */
  private lost(cid: string): void {
    const s = this.sessions.get(cid);
    if (!s || !s.connected) return;
    s.connected = false;
    if (s.will) {
      const delay = Math.min(s.will.delayMs, s.expiry * 1000);
      if (delay === 0) this.publishWill(cid);
      else s.willDueAt = this.broker.now + delay;
    }
    if (!s.persistent) this.end(cid);
  }

  private lostConnections(): void {
    for (const c of [...CLIENTS, MONITOR]) {
      const client = this.client(c);
      client.closed ??= { code: 1006, reason: "restart" };
      if (this.sessions.get(c)?.connected) this.lost(c);
    }
  }

  private publishWill(cid: string): void {
    const s = this.sessions.get(cid)!;
    if (!s.will) return;
    this.willsDue.add(s.will.payload);
    if (s.uncertain) this.willsMaybe.add(s.will.payload);
    s.will = null;
    s.willDueAt = null;
  }

  private fireWills(): void {
    for (const [cid, s] of this.sessions) if (s.willDueAt !== null && s.willDueAt <= this.broker.now) this.publishWill(cid);
  }

  private end(cid: string): void {
    const s = this.sessions.get(cid);
    if (!s) return;
    if (s.willDueAt !== null) this.publishWill(cid);
    if (s.shared) this.groupEndedAt = this.counter;
    this.sessions.delete(cid);
    this.owed.delete(cid);
  }

  /** Every packet received since the last check, against the model. */
  private check(): void {
    for (const [cid, c] of this.clients) {
      const from = this.seen.get(cid) ?? 0;
      const fresh = c.received.slice(from);
      this.seen.set(cid, c.received.length);
      for (const r of fresh) this.receivedOne(cid, r);
      // A delivery is done once the client acknowledges it: only then is nothing owed.
      const acks = c.acknowledged.slice(this.ackSeen.get(cid) ?? 0);
      this.ackSeen.set(cid, c.acknowledged.length);
      for (const a of acks) {
        this.owed.get(cid)?.delete(a.retain ? `${a.payload}|r` : a.payload);
        if (!a.retain) this.groupOwed.delete(a.payload);
      }
    }
  }

  private receivedOne(cid: string, r: Received): void {
    const where = `${cid} got ${r.topic} ${r.payload} qos ${r.qos}${r.dup ? " dup" : ""}${r.retain ? " retain" : ""}`;
    if (!readable(cid, r.topic)) throw new Violation(`${where}: may not read it`);
    if (cid === MONITOR) {
      if (!this.willsDue.has(r.payload) && !this.willsMaybe.has(r.payload)) throw new Violation(`${where}: a will that is not owed`);
      this.willsGot.add(r.payload);
      return;
    }
    if (r.payload.startsWith("w:")) return; // a will to a client subscribed to will/#: not tracked
    const got = this.got.get(cid);
    if (r.qos === 0) {
      // downgraded by the subscription: nothing to acknowledge
      this.owed.get(cid)?.delete(r.retain ? `${r.payload}|r` : r.payload);
      if (!r.retain) this.groupOwed.delete(r.payload);
    }
    // A shared group's copy and the client's own subscription's copy are two deliveries [MQTT-4.8.2]:
    // repeats are checked outside the shared topics only.
    if (!got || r.retain || r.topic.startsWith("sh/")) return;
    if (r.qos === 2 && r.fresh) {
      if (got.qos2.has(r.payload) && !this.sessions.get(cid)?.uncertain) throw new Violation(`${where}: QoS 2 delivered twice`);
      got.qos2.add(r.payload);
    }
    if (r.qos === 1 && got.live.has(r.payload) && !r.dup) throw new Violation(`${where}: QoS 1 repeated without DUP`);
    const first = !got.live.has(r.payload);
    got.live.add(r.payload);
    const p = this.published.get(r.payload);
    if (first && p && r.qos > 0) {
      const k = `${p.from}|${p.topic}`;
      const last = got.lastSeq.get(k) ?? 0;
      if (p.seq < last) throw new Violation(`${where}: out of order (after m${last})`);
      got.lastSeq.set(k, p.seq);
    }
  }

  /**
   * The end of a sequence: delayed wills fall due, every session comes back and acknowledges,
   * and then everything owed must have arrived.
   */
  settle(): void {
    this.apply({ op: "advance", ms: 10_000 });
    for (const cid of CLIENTS) {
      const s = this.sessions.get(cid);
      const c = this.client(cid);
      if (c.connected) this.apply({ op: "release", c: cid });
      else if (s) {
        c.ackMode = "auto";
        const version = c.version;
        this.apply({ op: "connect", c: cid, version, clean: false, expiry: version === 5 ? 3600 : 0, will: null });
      }
    }
    const mon = this.client(MONITOR);
    if (!mon.connected) this.connectMonitor();
    this.broker.flushLaters();
    this.check();
    for (const [cid, keys] of this.owed) {
      if (this.sessions.get(cid)?.uncertain || keys.size === 0) continue;
      throw new Violation(`${cid} never got ${[...keys].slice(0, 5).join(", ")}`);
    }
    for (const [payload, g] of this.groupOwed) {
      if (this.groupEndedAt >= g.since || this.crashed) continue;
      throw new Violation(`shared group never got ${payload}`);
    }
    for (const w of this.willsDue) {
      if (!this.willsGot.has(w) && !this.willsMaybe.has(w)) throw new Violation(`will ${w} owed, never published`);
    }
  }
}

/** Runs a sequence and its settle; a violation's message says where the crash (if any) hit. */
export function runOps(ops: Op[], crashAt?: { event: number; afterCommit: boolean }, tightBytes = false): ModelRun {
  const run = new ModelRun(crashAt ? { crashAt, tightBytes } : { tightBytes });
  try {
    for (const op of ops) run.apply(op);
    run.settle();
  } catch (err) {
    if (run.crashed) (err as Error).message += ` (crash at write event ${crashAt!.event}${crashAt!.afterCommit ? " after its commit" : ""}, in ${run.crashOp})`;
    throw err;
  }
  return run;
}
