// The link between shards (src/shards/link.ts) over MemoryStore, with calls delivered in process:
// order, dedup, gap refusal, volatile placement, seq reuse after a restart, retries, flushedAll.
import { describe, expect, test } from "vitest";
import { Links, MAX_CALL_CHUNKS, type LinkHost } from "../../src/shards/link";
import type { LinkAck, LinkBatch } from "../../src/shards/peer";
import { MemoryStore } from "../../src/storage/memory-store";
import { decodeAll, encodeEntry } from "../../src/shards/wire";

const entry = (label: string) => encodeEntry({ kind: "interest", add: true, filter: label });
const labels = (bytes: Uint8Array) => decodeAll(bytes).map((e) => (e as { filter: string }).filter);
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

type Fate = "ok" | "fail" | "lose";

interface Shard {
  store: MemoryStore;
  links: Links;
  /** what this shard applied, "from:label" */
  log: string[];
  calls: LinkBatch[];
  wakes: number[];
  /** fates of the next calls this shard makes (default ok) */
  fates: Fate[];
  host: LinkHost;
}

class Cluster {
  now = 1000;
  readonly shards: Shard[] = [];
  private laters: (() => void)[] = [];

  constructor(readonly k: number) {
    for (let i = 0; i < k; i++) this.shards.push(this.make(i, new MemoryStore()));
  }

  private make(self: number, store: MemoryStore): Shard {
    const shard = { store, log: [], calls: [], wakes: [], fates: [] } as unknown as Shard;
    shard.host = {
      self,
      k: this.k,
      now: () => this.now,
      sync: () => Promise.resolve(),
      wakeAt: (ms) => shard.wakes.push(ms),
      later: (fn) => this.laters.push(fn),
      log: () => {},
      call: async (target, batch): Promise<LinkAck> => {
        shard.calls.push(batch);
        const fate = shard.fates.shift() ?? "ok";
        if (fate === "fail") throw new Error("peer down");
        const ack = this.shards[target]!.links.receive(batch, (from, bytes) => this.shards[target]!.log.push(...labels(bytes).map((l) => `${from}:${l}`)));
        if (fate === "lose") throw new Error("reply lost");
        return ack;
      },
    };
    shard.links = new Links(shard.host, store);
    shard.links.restore();
    return shard;
  }

  /** a restart of shard i from what it stored (memory lost) */
  restart(i: number): Shard {
    const old = this.shards[i]!;
    return (this.shards[i] = this.make(i, MemoryStore.fromSnapshot(old.store.snapshot())));
  }

  /** runs later events and promise continuations until nothing is left */
  async settle(): Promise<void> {
    for (let round = 0; round < 1000; round++) {
      await tick();
      const fns = this.laters;
      if (fns.length === 0) return;
      this.laters = [];
      for (const fn of fns) fn();
    }
    throw new Error("never settled");
  }
}

describe("sending and receiving", () => {
  test("entries arrive in send order; volatile ones right after the chunk sent before them", async () => {
    const c = new Cluster(3);
    const [a] = c.shards;
    a!.links.send(1, entry("v0"), false);
    a!.links.send(1, entry("d1"), true);
    a!.links.send(1, entry("d2"), true);
    a!.links.send(1, entry("v1"), false);
    a!.links.send(1, entry("v2"), false);
    a!.links.send(1, entry("d3"), true);
    a!.links.send(2, entry("other"), true);
    expect(a!.links.pending(1)).toBe(3);
    await c.settle();
    expect(c.shards[1]!.log).toEqual(["0:v0", "0:d1", "0:d2", "0:v1", "0:v2", "0:d3"]);
    expect(c.shards[2]!.log).toEqual(["0:other"]);
    // one call per target, the volatile entries as runs tagged with the chunk they follow
    expect(a!.calls.map((b) => [b.chunks.map((x) => x.seq), b.volatile.map((v) => [v.after, labels(v.entries)])])).toEqual([
      [[1, 2, 3], [[0, ["v0"]], [2, ["v1", "v2"]]]],
      [[1], []],
    ]);
    expect(a!.links.pending(1)).toBe(0);
    expect(a!.store.loadChunks()).toEqual([]);
    expect(a!.store.loadLinks()).toEqual([
      { peer: 1, ackedSeq: 3, appliedSeq: 0 },
      { peer: 2, ackedSeq: 1, appliedSeq: 0 },
    ]);
    expect(c.shards[1]!.store.loadLinks()).toEqual([{ peer: 0, ackedSeq: 0, appliedSeq: 3 }]);
    expect(a!.links.stats).toMatchObject({ calls: 2, chunksSent: 4, entries: 7, volatileSent: 2, failures: 0, volatileLost: 0 });
  });

  test("rows: one per durable send; an acknowledgement deletes them and stores the watermark; a receive stores one", async () => {
    const c = new Cluster(2);
    const [a, b] = c.shards;
    const before = a!.store.rowsWritten;
    for (let i = 0; i < 5; i++) a!.links.send(1, entry(`d${i}`), true);
    a!.links.send(1, entry("v"), false);
    expect(a!.store.rowsWritten - before).toBe(5);
    const receiverBefore = b!.store.rowsWritten;
    await c.settle();
    expect(a!.store.rowsWritten - before).toBe(5 + 5 + 1);
    expect(b!.store.rowsWritten - receiverBefore).toBe(1);
  });

  test("a batch received again applies nothing and writes nothing", () => {
    const c = new Cluster(2);
    const b = c.shards[1]!;
    const batch: LinkBatch = { from: 0, chunks: [{ seq: 1, entries: entry("x") }, { seq: 2, entries: entry("y") }], volatile: [] };
    const apply = (_from: number, bytes: Uint8Array) => b.log.push(...labels(bytes));
    expect(b.links.receive(batch, apply)).toEqual({ applied: 2 });
    const rows = b.store.rowsWritten;
    expect(b.links.receive(batch, apply)).toEqual({ applied: 2 });
    expect(b.store.rowsWritten).toBe(rows);
    // overlapping: the old part skipped, the new part applied
    expect(b.links.receive({ from: 0, chunks: [{ seq: 2, entries: entry("y") }, { seq: 3, entries: entry("z") }], volatile: [] }, apply)).toEqual({ applied: 3 });
    expect(b.log).toEqual(["x", "y", "z"]);
    expect(b.links.stats).toMatchObject({ chunksApplied: 3, duplicates: 3 });
  });

  test("a gap is refused whole: nothing applied, the watermark answered", () => {
    const c = new Cluster(2);
    const b = c.shards[1]!;
    const apply = (_from: number, bytes: Uint8Array) => b.log.push(...labels(bytes));
    b.links.receive({ from: 0, chunks: [{ seq: 1, entries: entry("a") }], volatile: [] }, apply);
    const rows = b.store.rowsWritten;
    const ack = b.links.receive({ from: 0, chunks: [{ seq: 3, entries: entry("c") }], volatile: [{ after: 1, entries: entry("v") }] }, apply);
    expect(ack).toEqual({ applied: 1 });
    const inside = b.links.receive({ from: 0, chunks: [{ seq: 2, entries: entry("b") }, { seq: 4, entries: entry("d") }], volatile: [] }, apply);
    expect(inside).toEqual({ applied: 1 });
    expect(b.log).toEqual(["a"]);
    expect(b.store.rowsWritten).toBe(rows);
    expect(b.links.stats.gapsRefused).toBe(2);
    expect(() => b.links.receive({ from: 1, chunks: [], volatile: [] }, apply)).toThrow(RangeError);
    expect(() => b.links.receive({ from: 2, chunks: [], volatile: [] }, apply)).toThrow(RangeError);
  });

  test("volatile runs are applied after the chunk they follow, also one applied by an earlier call", () => {
    const c = new Cluster(2);
    const b = c.shards[1]!;
    const apply = (_from: number, bytes: Uint8Array) => b.log.push(...labels(bytes));
    b.links.receive({ from: 0, chunks: [{ seq: 1, entries: entry("c1") }], volatile: [] }, apply);
    b.links.receive(
      {
        from: 0,
        chunks: [
          { seq: 1, entries: entry("c1") },
          { seq: 2, entries: entry("c2") },
          { seq: 3, entries: entry("c3") },
        ],
        volatile: [
          { after: 1, entries: entry("v1") },
          { after: 2, entries: entry("v2") },
          { after: 3, entries: entry("v3") },
          { after: 9, entries: entry("never") },
        ],
      },
      apply,
    );
    expect(b.log).toEqual(["c1", "v1", "c2", "v2", "c3", "v3"]);
  });

  test("a call carries at most MAX_CALL_CHUNKS chunks, and no volatile run ahead of a chunk left for the next call", async () => {
    const c = new Cluster(2);
    const a = c.shards[0]!;
    for (let i = 1; i <= MAX_CALL_CHUNKS + 1; i++) a.links.send(1, entry(`d${i}`), true);
    a.links.send(1, entry("v"), false);
    await c.settle();
    expect(a.calls.map((b) => [b.chunks.length, b.volatile.length])).toEqual([
      [MAX_CALL_CHUNKS, 0],
      [1, 1],
    ]);
    expect(c.shards[1]!.log.slice(-2)).toEqual([`0:d${MAX_CALL_CHUNKS + 1}`, "0:v"]);
  });
});

describe("failures and restarts", () => {
  test("a failed call keeps its chunks, drops its volatile entries, and is retried from the alarm with backoff", async () => {
    const c = new Cluster(2);
    const a = c.shards[0]!;
    a.fates.push("fail", "fail");
    a.links.send(1, entry("d1"), true);
    a.links.send(1, entry("v1"), false);
    await c.settle();
    expect(a.links.pending(1)).toBe(1);
    expect(a.links.stats).toMatchObject({ calls: 1, failures: 1, volatileLost: 1 });
    expect(a.links.nextWake()).toBe(1100);
    // the safety alarm asked when the first chunk was stored (CALL_TIMEOUT_MS ahead), then the retry's
    expect(a.wakes).toEqual([1000 + 30_000, 1100]);
    expect(a.store.loadChunks()[0]).toMatchObject({ seq: 1, attempts: 1, nextAt: 1100 });
    // a send while backing off waits for the retry
    a.links.send(1, entry("d2"), true);
    await c.settle();
    expect(a.calls.length).toBe(1);
    c.now = 1099;
    a.links.due(c.now);
    await c.settle();
    expect(a.calls.length).toBe(1);
    c.now = 1100;
    a.links.due(c.now);
    await c.settle();
    expect(a.links.nextWake()).toBe(1100 + 200); // the second failure doubles the wait
    c.now = 1300;
    a.links.due(c.now);
    await c.settle();
    expect(a.links.nextWake()).toBeNull();
    expect(a.links.pending(1)).toBe(0);
    expect(c.shards[1]!.log).toEqual(["0:d1", "0:d2"]);
    expect(a.calls.map((b) => b.chunks.map((x) => x.seq))).toEqual([[1], [1, 2], [1, 2]]);
  });

  test("a lost reply: the retry is skipped by the receiver, every entry applied once", async () => {
    const c = new Cluster(2);
    const a = c.shards[0]!;
    a.fates.push("lose");
    a.links.send(1, entry("d1"), true);
    a.links.send(1, entry("v1"), false);
    await c.settle();
    expect(c.shards[1]!.log).toEqual(["0:d1", "0:v1"]);
    a.links.send(1, entry("d2"), true);
    c.now += 100;
    a.links.due(c.now);
    await c.settle();
    expect(c.shards[1]!.log).toEqual(["0:d1", "0:v1", "0:d2"]);
    expect(c.shards[1]!.links.stats.duplicates).toBe(1);
    expect(a.links.pending(1)).toBe(0);
  });

  test("after a restart, unacknowledged chunks are sent again and seqs are never reused", async () => {
    const c = new Cluster(2);
    let a = c.shards[0]!;
    a.links.send(1, entry("d1"), true);
    a.links.send(1, entry("d2"), true);
    await c.settle();
    a.fates.push("lose");
    a.links.send(1, entry("d3"), true);
    await c.settle();
    // acknowledged 1..2 (outbox rows gone), 3 applied but not acknowledged, its retry due at 1100
    c.now = 1100;
    a = c.restart(0);
    expect(a.links.pending(1)).toBe(1);
    a.links.send(1, entry("d4"), true);
    await c.settle();
    expect(a.calls.map((b) => b.chunks.map((x) => x.seq))).toEqual([[3, 4]]);
    expect(c.shards[1]!.log).toEqual(["0:d1", "0:d2", "0:d3", "0:d4"]);
    // everything acknowledged, outbox empty: the next seq still follows the acknowledged one
    a = c.restart(0);
    expect(a.links.pending(1)).toBe(0);
    expect(a.links.send(1, entry("d5"), true)).toBe(5);
    await c.settle();
    expect(c.shards[1]!.log.at(-1)).toBe("0:d5");
  });

  test("a first send or receive restores the stored state itself", async () => {
    const c = new Cluster(2);
    const [a, b] = c.shards;
    a!.links.send(1, entry("d1"), true);
    await c.settle();
    const fresh = new Links(a!.host, MemoryStore.fromSnapshot(a!.store.snapshot()));
    expect(fresh.send(1, entry("d2"), true)).toBe(2);
    const receiver = new Links(b!.host, MemoryStore.fromSnapshot(b!.store.snapshot()));
    expect(receiver.receive({ from: 0, chunks: [{ seq: 1, entries: entry("d1") }], volatile: [] }, () => b!.log.push("again"))).toEqual({ applied: 1 });
    expect(b!.log).toEqual(["0:d1"]);
  });

  test("a restart keeps a retry time still to come (alarm), and retries at once when it passed", async () => {
    const c = new Cluster(2);
    let a = c.shards[0]!;
    a.fates.push("fail");
    a.links.send(1, entry("d1"), true);
    await c.settle();
    a = c.restart(0);
    await c.settle();
    expect(a.calls).toEqual([]);
    expect(a.wakes).toEqual([1100]);
    expect(a.links.nextWake()).toBe(1100);
    c.now = 1100;
    a = c.restart(0);
    await c.settle();
    expect(a.calls.length).toBe(1);
    expect(c.shards[1]!.log).toEqual(["0:d1"]);
  });

  test("flushedAll resolves once every target acknowledged what was sent before it, through a failure", async () => {
    const c = new Cluster(3);
    const a = c.shards[0]!;
    await a.links.flushedAll(); // nothing pending: at once
    a.fates.push("fail");
    a.links.send(1, entry("x"), true);
    a.links.send(2, entry("y"), true);
    let done = false;
    const all = a.links.flushedAll().then(() => (done = true));
    a.links.send(2, entry("later"), true);
    await c.settle();
    expect(done).toBe(false); // target 1 failed; target 2 acknowledged
    expect(a.links.pending(1)).toBe(1);
    c.now += 100;
    a.links.due(c.now);
    await c.settle();
    await all;
    expect(done).toBe(true);
    expect(a.links.whenAcked(2, 2)).toBeInstanceOf(Promise);
    await a.links.whenAcked(2, 2);
  });

  test("sending to itself or outside the namespace is a bug", () => {
    const c = new Cluster(2);
    expect(() => c.shards[0]!.links.send(0, entry("x"), true)).toThrow(RangeError);
    expect(() => c.shards[0]!.links.send(2, entry("x"), true)).toThrow(RangeError);
  });
});

describe("the safety alarm", () => {
  test("chunks left in the outbox wake the shard: the alarm calls again a link whose chunks waited CALL_TIMEOUT_MS", async () => {
    const c = new Cluster(2);
    const a = c.shards[0]!;
    a.fates.push("fail");
    a.links.send(1, entry("d1"), true);
    expect(a.wakes).toEqual([c.now + 30_000]);
    expect(a.links.nextWake()).toBe(c.now + 30_000);
    // the shard crashes before the call's failure is known: the restarted one finds the chunk and sends it
    const b = c.restart(0);
    await c.settle();
    expect(c.shards[1]!.log).toEqual(["0:d1"]);
    expect(b.links.pending(1)).toBe(0);
    expect(b.links.nextWake()).toBeNull();
  });
});

describe("the link interval", () => {
  test("a call leaves at once after a quiet spell; the next waits until minInterval after the last one started", async () => {
    let now = 1000;
    const waits: (number | undefined)[] = [];
    const laters: (() => void)[] = [];
    const receiver = new Links({ self: 1, k: 2, now: () => now, call: async () => ({ applied: 0 }), sync: async () => {}, wakeAt: () => {}, later: () => {}, log: () => {} }, new MemoryStore());
    const links = new Links(
      {
        self: 0,
        k: 2,
        now: () => now,
        call: async (_t, batch) => receiver.receive(batch, () => {}),
        sync: async () => {},
        wakeAt: () => {},
        later: (fn, ms) => {
          waits.push(ms);
          laters.push(fn);
        },
        log: () => {},
      },
      new MemoryStore(),
      { minInterval: 100 },
    );
    const run = async () => {
      while (laters.length) laters.shift()!();
      for (let i = 0; i < 5; i++) await Promise.resolve();
    };
    links.send(1, entry("a"), true);
    await run();
    expect(waits).toEqual([undefined]); // the first call: no wait
    now += 30;
    links.send(1, entry("b"), true);
    await run();
    expect(waits).toEqual([undefined, 70]); // 100 ms after the first call started
    now += 200;
    links.send(1, entry("c"), true);
    await run();
    expect(waits).toEqual([undefined, 70, undefined]); // a quiet spell: at once again
  });
});

describe("batches: one chunk per target for what an event sends", () => {
  test("durable entries sent in a batch are one chunk (one row) per target, in order; a volatile one between keeps its place", async () => {
    const c = new Cluster(3);
    const a = c.shards[0]!.links;
    const rowsBefore = c.shards[0]!.store.rowsWritten;
    a.batchBegin();
    a.send(1, entry("d1"), true);
    a.send(2, entry("x1"), true);
    a.send(1, entry("d2"), true);
    a.send(1, entry("v"), false); // stores d1, d2 first: the volatile entry follows them
    a.send(1, entry("d3"), true);
    a.batchBegin(); // nested: stored at the outer end
    a.send(2, entry("x2"), true);
    a.batchEnd();
    expect(a.pendingAll()).toBe(1); // only the chunk the volatile entry forced
    a.batchEnd();
    expect(a.pendingAll()).toBe(3); // [d1 d2] [d3] to 1, [x1 x2] to 2
    expect(c.shards[0]!.store.rowsWritten - rowsBefore).toBe(3);
    await c.settle();
    expect(c.shards[1]!.log).toEqual(["0:d1", "0:d2", "0:v", "0:d3"]);
    expect(c.shards[2]!.log).toEqual(["0:x1", "0:x2"]);
    expect(a.pendingAll()).toBe(0);
  });

  test("a wait for acknowledgements inside a batch stores what it gathered and waits for it", async () => {
    const c = new Cluster(2);
    const a = c.shards[0]!.links;
    a.batchBegin();
    a.send(1, entry("f"), true);
    let settled = false;
    void a.flushedAll().then(() => (settled = true));
    a.batchEnd();
    expect(a.pendingAll()).toBe(1);
    await tick();
    expect(settled).toBe(false);
    await c.settle();
    expect(settled).toBe(true);
    expect(c.shards[1]!.log).toEqual(["0:f"]);
  });

  test("a batch larger than a call's bytes is split into chunks that each fit, none lost, across a restart", async () => {
    const c = new Cluster(2);
    const a = c.shards[0]!.links;
    a.batchBegin();
    for (let i = 0; i < 3000; i++) a.send(1, encodeEntry({ kind: "interest", add: true, filter: `t/${i}/${"x".repeat(1000)}` }), true);
    a.batchEnd();
    expect(a.pendingAll()).toBeGreaterThan(1);
    const b = c.restart(0).links; // what was stored is what goes
    expect(b.pendingAll()).toBe(a.pendingAll());
    await c.settle();
    expect(c.shards[1]!.log.length).toBe(3000);
    expect(c.shards[1]!.log[2999]).toMatch(/^0:t\/2999\//);
  });
});
