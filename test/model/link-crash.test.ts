// The links between shards (src/shards/link.ts) under crashes, failed calls and lost replies.
// Two or three shards in plain Node, each over a MemoryStore. Everything a shard does happens in
// an event; an event's writes commit at its end and what it sends (calls, replies, later events)
// leaves only then (the output gate). A crash before the commit loses the event's writes and
// sends (a call it was serving fails); after it, only memory is lost. Checked after a settle:
// every durable entry whose send committed is applied exactly once, in send order per link, and
// no other durable entry is; a volatile entry at most once, never before a durable one sent before it.
// `npm run soak` runs SOAK_CRASH_RUNS random sequences.
import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Links, type LinkHost } from "../../src/shards/link";
import type { LinkAck, LinkBatch } from "../../src/shards/peer";
import { MemoryStore, type MemoryState } from "../../src/storage/memory-store";
import { decodeEntries, encodeEntry } from "../../src/shards/wire";

type Fate = "ok" | "fail" | "lose";
type CrashAt = "none" | "before" | "after";

interface LocalEvent {
  kind: "local";
  shard: number;
  /** the incarnation it belongs to: dropped after a crash */
  epoch: number;
  run: () => void;
}
interface CallEvent {
  kind: "call";
  shard: number;
  from: number;
  fromEpoch: number;
  batch: LinkBatch;
  resolve: (ack: LinkAck) => void;
  reject: (err: Error) => void;
}
type Event = LocalEvent | CallEvent;

interface Sent {
  id: string;
  durable: boolean;
  /** its send event committed (a durable one was acknowledged to its publisher) */
  committed: boolean;
}

interface Node {
  index: number;
  epoch: number;
  store: MemoryStore;
  committed: MemoryState;
  /** entries applied here: "<id>" in order; rolled back with a crash before commit like the store */
  log: string[];
  committedLog: string[];
  links: Links;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

class World {
  now = 1000;
  readonly nodes: Node[] = [];
  queue: Event[] = [];
  /** what the running event sent: released at its commit */
  private out: Event[] = [];
  readonly sent = new Map<string, Sent[]>();
  private counter = 0;
  events = 0;

  constructor(readonly k: number) {
    for (let i = 0; i < k; i++) {
      const store = new MemoryStore();
      const node = { index: i, epoch: 0, store, committed: store.snapshot(), log: [], committedLog: [] } as unknown as Node;
      this.nodes.push(node);
      this.boot(node);
      this.queue.push(...this.out.splice(0));
    }
  }

  private boot(node: Node): void {
    // small caps: calls that leave chunks (and the volatile runs after them) for the next call, full volatile buffers
    node.links = new Links(this.host(node, node.epoch), node.store, { maxCallChunks: 2, maxVolatileBytes: 60 });
    node.links.restore();
  }

  private host(node: Node, epoch: number): LinkHost {
    return {
      self: node.index,
      k: this.k,
      now: () => this.now,
      sync: () => new Promise<void>((resolve) => this.out.push({ kind: "local", shard: node.index, epoch, run: resolve })),
      call: (target, batch) => new Promise<LinkAck>((resolve, reject) => this.out.push({ kind: "call", shard: target, from: node.index, fromEpoch: epoch, batch, resolve, reject })),
      wakeAt: () => {},
      later: (fn) => this.out.push({ kind: "local", shard: node.index, epoch, run: fn }),
      log: () => {},
    };
  }

  private commit(node: Node): void {
    node.committed = node.store.snapshot();
    node.committedLog = [...node.log];
  }

  /** memory gone; storage as last committed; the object starts again */
  private crash(node: Node): void {
    node.epoch++;
    node.store = MemoryStore.fromSnapshot(node.committed);
    node.log = [...node.committedLog];
    this.queue = this.queue.filter((e) => e.kind !== "local" || e.shard !== node.index);
    const out = this.out;
    this.out = [];
    this.boot(node);
    this.queue.push(...this.out);
    this.out = out;
  }

  private reply(ev: CallEvent, ack: LinkAck | null): Event {
    return { kind: "local", shard: ev.from, epoch: ev.fromEpoch, run: () => (ack ? ev.resolve(ack) : ev.reject(new Error("call failed"))) };
  }

  /** crash the shard running event number `at` (counted from 1), before or after its commit */
  crashPlan: { at: number; crash: CrashAt } | null = null;
  crashed = false;

  /**
   * Runs one event on its shard. `body` may return the reply of a call it served, and the failure
   * its caller sees instead should the shard crash before the commit.
   */
  private async run(node: Node, body: () => { reply: Event; failure: Event } | null, crash: CrashAt, onCommit?: () => void): Promise<void> {
    this.events++;
    if (this.crashPlan?.at === this.events) {
      crash = this.crashPlan.crash;
      this.crashed = true;
    }
    this.out = [];
    const answer = body();
    await tick(); // the continuations the event resumed run within it
    const sent = this.out;
    this.out = [];
    if (crash === "before") {
      this.crash(node);
      if (answer) this.queue.push(answer.failure);
      return;
    }
    this.commit(node);
    onCommit?.();
    this.queue.push(...sent);
    if (answer) this.queue.push(answer.reply);
    if (crash === "after") this.crash(node);
  }

  /** one event on `from` sending entries to `to` (true: durable) */
  async send(from: number, to: number, kinds: boolean[], crash: CrashAt): Promise<void> {
    const node = this.nodes[from]!;
    const key = `${from}>${to}`;
    if (!this.sent.has(key)) this.sent.set(key, []);
    const records = kinds.map((durable): Sent => ({ id: `${from}.${++this.counter}${durable ? "d" : "v"}`, durable, committed: false }));
    this.sent.get(key)!.push(...records);
    const send = () => {
      for (const r of records) {
        const bytes = encodeEntry({ kind: "publish", topic: "t", payload: new Uint8Array([1]), qos: r.durable ? 1 : 0, retain: false, origin: r.id, share: null, version: 0 });
        node.links.send(to, bytes, r.durable);
      }
      return null;
    };
    await this.run(node, send, crash, () => records.forEach((r) => (r.committed = true)));
  }

  /** runs the event at `pick` in the queue */
  async step(pick: number, fate: Fate, crash: CrashAt): Promise<void> {
    if (this.queue.length === 0) return;
    const [ev] = this.queue.splice(pick % this.queue.length, 1);
    const node = this.nodes[ev!.shard]!;
    if (ev!.kind === "local") {
      if (ev!.epoch !== node.epoch) return;
      const run = ev!.run;
      await this.run(node, () => (run(), null), crash);
      return;
    }
    const call = ev as CallEvent;
    const failure = this.reply(call, null);
    await this.run(
      node,
      () => {
        if (fate === "fail") return { reply: failure, failure };
        const ack = node.links.receive(call.batch, (_from, bytes) =>
          decodeEntries(bytes, (e) => {
            if (e.kind === "publish") node.log.push(e.origin!);
          }),
        );
        return { reply: fate === "lose" ? failure : this.reply(call, ack), failure };
      },
      crash,
    );
  }

  /** the alarm of every shard whose retry time came */
  async alarms(): Promise<void> {
    for (const node of this.nodes) {
      const at = node.links.nextWake();
      if (at === null || at > this.now) continue;
      await this.run(node, () => (node.links.due(this.now), null), "none");
    }
  }

  crashNow(shard: number): void {
    this.crash(this.nodes[shard]!);
  }

  /** runs what is queued, in order, with no fault (the crash plan still applies) */
  async drain(): Promise<void> {
    for (let i = 0; i < 1000 && this.queue.length > 0; i++) await this.step(0, "ok", "none");
  }

  /** no more faults: run everything, firing alarms as time passes, until nothing is left */
  async settle(): Promise<void> {
    for (let i = 0; i < 20_000; i++) {
      if (this.queue.length > 0) {
        await this.step(0, "ok", "none");
        continue;
      }
      let at: number | null = null;
      for (const n of this.nodes) {
        const w = n.links.nextWake();
        if (w !== null && (at === null || w < at)) at = w;
      }
      if (at === null) return;
      this.now = Math.max(this.now, at);
      await this.alarms();
    }
    throw new Error("the links never settled");
  }

  check(): void {
    for (const [key, list] of this.sent) {
      const [from, to] = key.split(">").map(Number) as [number, number];
      const applied = this.nodes[to]!.committedLog.filter((id) => id.startsWith(`${from}.`));
      const durable = applied.filter((id) => id.endsWith("d"));
      expect(durable, `durable entries on link ${key}`).toEqual(list.filter((s) => s.durable && s.committed).map((s) => s.id));
      const volatile = applied.filter((id) => id.endsWith("v"));
      expect(new Set(volatile).size, `volatile entries applied twice on ${key}`).toBe(volatile.length);
      for (const v of volatile) {
        const at = applied.indexOf(v);
        const before = list.slice(0, list.findIndex((s) => s.id === v)).filter((s) => s.durable && s.committed);
        for (const d of before) expect(applied.indexOf(d.id), `${v} applied before ${d.id} on ${key}`).toBeLessThan(at);
      }
    }
    for (const node of this.nodes) {
      expect(node.links.pendingAll(), `shard ${node.index} still owes chunks`).toBe(0);
      expect(node.store.loadChunks(), `shard ${node.index} outbox`).toEqual([]);
    }
  }
}

type Op =
  | { op: "send"; from: number; to: number; kinds: boolean[]; crash: CrashAt }
  | { op: "step"; pick: number; fate: Fate; crash: CrashAt }
  | { op: "advance"; ms: number }
  | { op: "drain" }
  | { op: "crash"; shard: number };

const crashArb = fc.constantFrom<CrashAt>("none", "none", "none", "none", "none", "none", "before", "after");
const opArb = (k: number): fc.Arbitrary<Op> =>
  fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({ op: fc.constant("send" as const), from: fc.nat(k - 1), to: fc.nat(k - 2), kinds: fc.array(fc.boolean(), { minLength: 1, maxLength: 4 }), crash: crashArb }).map((o) => ({ ...o, to: o.to >= o.from ? o.to + 1 : o.to })),
    },
    { weight: 6, arbitrary: fc.record({ op: fc.constant("step" as const), pick: fc.nat(), fate: fc.constantFrom<Fate>("ok", "ok", "ok", "fail", "lose"), crash: crashArb }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("advance" as const), ms: fc.integer({ min: 50, max: 2000 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("crash" as const), shard: fc.nat(k - 1) }) },
    { weight: 1, arbitrary: fc.constant({ op: "drain" as const }) },
  );

async function play(k: number, ops: Op[], crashPlan: World["crashPlan"] = null): Promise<World> {
  const world = new World(k);
  world.crashPlan = crashPlan;
  for (const o of ops) {
    if (o.op === "send") await world.send(o.from, o.to, o.kinds, o.crash);
    else if (o.op === "step") await world.step(o.pick, o.fate, o.crash);
    else if (o.op === "advance") {
      world.now += o.ms;
      await world.alarms();
    } else if (o.op === "drain") await world.drain();
    else world.crashNow(o.shard);
  }
  await world.settle();
  world.check();
  return world;
}

const runs = Number(process.env.SOAK_CRASH_RUNS ?? 300);

describe("links under faults", () => {
  for (const k of [2, 3]) {
    test(`${runs} random runs of ${k} shards: sends, failed calls, lost replies, crashes`, async () => {
      let applied = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(opArb(k), { minLength: 5, maxLength: 80, size: "max" }), async (ops) => {
          const world = await play(k, ops);
          applied += world.nodes.reduce((n, node) => n + node.committedLog.length, 0);
        }),
        { numRuns: runs, seed: process.env.SOAK_SEED ? Number(process.env.SOAK_SEED) : undefined },
      );
      expect(applied).toBeGreaterThan(runs); // the runs did carry entries
      console.log(`link model, ${k} shards: ${runs} runs, ${applied} entries applied`);
    }, 600_000);
  }

  // A fixed exchange, crashed at each of its events in turn, before and after the commit.
  const scenario: Op[] = [
    { op: "send", from: 0, to: 1, kinds: [true, true, false, true, false], crash: "none" },
    { op: "send", from: 0, to: 1, kinds: [false], crash: "none" },
    { op: "send", from: 1, to: 0, kinds: [true], crash: "none" },
    { op: "step", pick: 0, fate: "ok", crash: "none" },
    { op: "send", from: 0, to: 1, kinds: [true], crash: "none" },
    { op: "step", pick: 0, fate: "ok", crash: "none" },
    { op: "step", pick: 0, fate: "lose", crash: "none" },
    { op: "send", from: 0, to: 2, kinds: [true], crash: "none" },
    { op: "step", pick: 1, fate: "ok", crash: "none" },
    { op: "send", from: 0, to: 1, kinds: [false], crash: "none" },
    { op: "send", from: 0, to: 1, kinds: [true], crash: "none" },
    { op: "step", pick: 0, fate: "fail", crash: "none" },
    { op: "step", pick: 0, fate: "ok", crash: "none" },
    { op: "step", pick: 0, fate: "ok", crash: "none" },
    { op: "advance", ms: 150 },
    { op: "send", from: 2, to: 1, kinds: [true], crash: "none" },
    { op: "step", pick: 0, fate: "ok", crash: "none" },
    { op: "step", pick: 0, fate: "ok", crash: "none" },
    { op: "step", pick: 0, fate: "ok", crash: "none" },
    { op: "drain" },
    // after everything was acknowledged: the next seqs must not repeat the old ones
    { op: "send", from: 0, to: 1, kinds: [true, false], crash: "none" },
    { op: "send", from: 1, to: 0, kinds: [true], crash: "none" },
  ];

  test("a fixed exchange crashed at every event, before and after its commit", async () => {
    // count the events a clean run has (settle included) by running it once
    const total = (await play(3, scenario)).events;
    expect(total).toBeGreaterThan(20);
    for (let at = 1; at <= total; at++) {
      for (const crash of ["before", "after"] as const) {
        const world = await play(3, scenario, { at, crash });
        expect(world.crashed, `crash point ${at} ${crash}`).toBe(true);
      }
    }
    console.log(`link crash points: ${2 * total} (${total} events, before and after each commit)`);
  }, 600_000);
});
