// The growth coordinator (src/shards/grow.ts) against fake shards: the order of its steps, the
// waits for quiet links, and that a failure at any call resumes where it stopped.
import { describe, expect, test } from "vitest";
import { advanceGrowth, type GrowthCalls, type GrowthPlan, type PlanStore } from "../../src/shards/grow";
import { MoveOp, decodeAll, encodeEntry, type MoveEntry } from "../../src/shards/wire";

class FakeShard {
  begun = 0;
  ended = 0;
  pages: number;
  exportCalls = 0;
  pending = 0;
  sent = 0;
  constructor(pages: number) {
    this.pages = pages;
  }
}

class Fakes {
  readonly shards: FakeShard[];
  readonly log: string[] = [];
  plan: GrowthPlan | null = null;
  calls = 0;
  failAt = -1;
  /** what happens to the links after each status reading (a chunk still travelling, then applied) */
  onStatus: (i: number, s: FakeShard) => void = () => {};
  constructor(to: number, from: number, pages = 2) {
    this.shards = Array.from({ length: to }, (_, i) => new FakeShard(i < from ? pages : 0));
  }
  private step(what: string): void {
    if (this.calls++ === this.failAt) throw new Error(`call ${what} failed`);
    this.log.push(what);
  }
  readonly store: PlanStore = {
    load: () => this.plan,
    save: (p) => {
      this.plan = p === null ? null : { ...p };
    },
  };
  readonly api: GrowthCalls = {
    begin: async (i) => {
      this.step(`begin ${i}`);
      this.shards[i]!.begun++;
    },
    status: async (i) => {
      this.step(`status ${i}`);
      const s = this.shards[i]!;
      const reading = { pending: s.pending, sent: s.sent };
      this.onStatus(i, s);
      return reading;
    },
    exportPage: async (i) => {
      this.step(`export ${i}`);
      const s = this.shards[i]!;
      s.exportCalls++;
      if (s.pages > 0) {
        s.pages--;
        s.sent++;
      }
      return s.pages === 0;
    },
    end: async (i) => {
      this.step(`end ${i}`);
      this.shards[i]!.ended++;
      if (i === 0) this.plan = null; // shard 0's end clears the plan with the layout, in one event
    },
  };
}

/** Advances until complete, as the alarm would after each failure or wait; returns the rounds. */
async function run(f: Fakes, from: number, to: number): Promise<number> {
  for (let round = 1; round < 100; round++) {
    try {
      if (await advanceGrowth(f.store, from, to, f.api)) return round;
    } catch {
      // the alarm tries again
    }
  }
  throw new Error("never completed");
}

describe("advanceGrowth", () => {
  test("begins every shard, waits for quiet links, exports each old shard to its end, settles, ends shard 0 last", async () => {
    const f = new Fakes(4, 2);
    const rounds = await run(f, 2, 4);
    expect(f.plan).toBeNull();
    const first = (prefix: string) => f.log.findIndex((l) => l.startsWith(prefix));
    const last = (prefix: string) => f.log.map((l) => l.startsWith(prefix)).lastIndexOf(true);
    expect(last("begin")).toBeLessThan(first("status"));
    expect(last("export")).toBeLessThan(first("end"));
    expect(f.log.filter((l) => l.startsWith("export")).sort()).toEqual(["export 0", "export 0", "export 1", "export 1"]);
    expect(f.log.slice(-4)).toEqual(["end 1", "end 2", "end 3", "end 0"]);
    expect(f.shards.map((s) => s.begun)).toEqual([1, 1, 1, 1]);
    expect(f.shards.map((s) => s.ended)).toEqual([1, 1, 1, 1]);
    expect(rounds).toBe(4); // one export page a call (2 shards × 2 pages), and settle needs a second quiet reading
  });

  test("drain waits while any shard has chunks unacknowledged; nothing is exported before", async () => {
    const f = new Fakes(3, 1, 1);
    f.shards[2]!.pending = 1;
    expect(await advanceGrowth(f.store, 1, 3, f.api)).toBe(false);
    expect(f.plan?.phase).toBe("drain");
    expect(f.log.some((l) => l.startsWith("export"))).toBe(false);
    f.shards[2]!.pending = 0;
    expect(await advanceGrowth(f.store, 1, 3, f.api)).toBe(false); // exported, first settle reading
    expect(f.plan?.phase).toBe("settle");
    expect(await advanceGrowth(f.store, 1, 3, f.api)).toBe(true);
  });

  test("settle: a chunk numbered between two readings, or pending at the first, means not yet quiet", async () => {
    const f = new Fakes(2, 1, 1);
    let applied = 0;
    // shard 1 applies what shard 0 sent after shard 0 was read, and sends an announcement back
    f.onStatus = (i, s) => {
      if (i === 1 && f.plan?.phase === "settle" && applied++ === 0) s.sent++;
    };
    expect(await advanceGrowth(f.store, 1, 2, f.api)).toBe(false);
    expect(await advanceGrowth(f.store, 1, 2, f.api)).toBe(false); // the announcement changed shard 1's count
    expect(await advanceGrowth(f.store, 1, 2, f.api)).toBe(true);
    const g = new Fakes(2, 1, 1);
    await advanceGrowth(g.store, 1, 2, g.api); // first reading: quiet
    g.shards[1]!.pending = 1;
    expect(await advanceGrowth(g.store, 1, 2, g.api)).toBe(false);
    g.shards[1]!.pending = 0;
    expect(await advanceGrowth(g.store, 1, 2, g.api)).toBe(false); // the last reading was not idle: read twice again
    expect(await advanceGrowth(g.store, 1, 2, g.api)).toBe(true);
  });

  test("a failure at any call resumes where it stopped: every shard ends once, each old shard's export completes", async () => {
    const clean = new Fakes(3, 2);
    await run(clean, 2, 3);
    const total = clean.calls;
    for (let failAt = 0; failAt < total; failAt++) {
      const f = new Fakes(3, 2);
      f.failAt = failAt;
      await run(f, 2, 3);
      expect(f.plan, `failure at call ${failAt}`).toBeNull();
      expect(f.shards.every((s) => s.begun >= 1 && s.ended >= 1 && s.pages === 0), `failure at call ${failAt}`).toBe(true);
      expect(f.log.at(-1)).toBe("end 0");
      // no export before every shard began, no end before every export completed
      const lastBegin = f.log.map((l) => l.startsWith("begin")).lastIndexOf(true);
      expect(f.log.findIndex((l) => l.startsWith("export"))).toBeGreaterThan(lastBegin);
      const lastExport = f.log.map((l) => l.startsWith("export")).lastIndexOf(true);
      expect(f.log.findIndex((l) => l.startsWith("end"))).toBeGreaterThan(lastExport);
    }
  });

  test("a plan for another growth is not mixed with this one once sessions moved; before, it starts over towards the new number", async () => {
    // lowered below the plan's K once sessions moved: refused (they would be hidden)
    const f = new Fakes(4, 2);
    f.plan = { from: 2, to: 4, phase: "export" };
    await expect(advanceGrowth(f.store, 2, 3, f.api)).rejects.toThrow(/set SHARDS back to 4/);
    expect(f.log).toEqual([]);
    // raised again once sessions moved: it starts over towards the new number, the earlier growth's new shard exporting too
    const h = new Fakes(4, 2);
    h.plan = { from: 2, to: 3, phase: "export" };
    h.shards[2]!.pages = 1;
    await run(h, 2, 4);
    expect(h.shards.map((s) => s.begun)).toEqual([1, 1, 1, 1]);
    expect(h.shards.map((s) => s.pages)).toEqual([0, 0, 0, 0]);
    expect(h.shards[3]!.exportCalls).toBe(0);
    const g = new Fakes(4, 2);
    g.plan = { from: 2, to: 3, phase: "drain" };
    await run(g, 2, 4);
    expect(g.shards.map((s) => s.begun)).toEqual([1, 1, 1, 1]);
    expect(g.shards.map((s) => s.ended)).toEqual([1, 1, 1, 1]);
  });
});

describe("move entries on the wire", () => {
  test("a session, a delivery with its message and properties, and a retained copy round-trip", () => {
    const entries: MoveEntry[] = [
      { kind: "move", op: MoveOp.Session, clientId: "dév-1", meta: JSON.stringify({ subs: [{ filter: "a/+" }] }), msg: null },
      {
        kind: "move",
        op: MoveOp.Delivery,
        clientId: "dév-1",
        meta: '{"qos":2,"state":1}',
        msg: { kind: "publish", topic: "a/b", payload: new Uint8Array([1, 2, 3]), qos: 2, retain: false, properties: { userProperties: { k: "v" }, correlationData: Buffer.from("c") }, expiresAt: 1_800_000_000_000, origin: null, share: null, version: 0 },
      },
      { kind: "move", op: MoveOp.Retained, clientId: "", meta: "", msg: { kind: "publish", topic: "r", payload: new Uint8Array(70_000), qos: 1, retain: true, origin: null, share: null, version: 123 * 256 + 1 } },
    ];
    const bytes = Buffer.concat(entries.map((e) => encodeEntry(e)));
    const back = decodeAll(bytes) as MoveEntry[];
    expect(back.map((e) => [e.op, e.clientId, e.meta, e.msg?.topic ?? null, e.msg?.version ?? null])).toEqual(entries.map((e) => [e.op, e.clientId, e.meta, e.msg?.topic ?? null, e.msg?.version ?? null]));
    expect([...back[1]!.msg!.payload]).toEqual([1, 2, 3]);
    expect(back[1]!.msg!.properties?.userProperties).toEqual({ k: "v" });
    expect(Buffer.from(back[1]!.msg!.properties!.correlationData!).toString()).toBe("c");
    expect(back[1]!.msg!.expiresAt).toBe(1_800_000_000_000);
    expect(back[2]!.msg!.payload.byteLength).toBe(70_000);
  });

  test("a malformed move entry throws WireError", () => {
    const good = encodeEntry({ kind: "move", op: MoveOp.Session, clientId: "x", meta: "{}", msg: null });
    const badOp = Uint8Array.from(good);
    badOp[1] = 9;
    expect(() => decodeAll(badOp)).toThrow(/bad move op/);
    const badFlag = Uint8Array.from(good);
    badFlag[badFlag.length - 1] = 2;
    expect(() => decodeAll(badFlag)).toThrow(/bad move flag/);
    expect(() => decodeAll(good.subarray(0, good.length - 1))).toThrow();
  });
});
