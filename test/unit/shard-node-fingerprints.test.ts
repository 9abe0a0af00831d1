// Exact filters as fingerprints through the shard node (src/shards/node.ts): what goes on the
// link, what the receiver stores and reloads after a restart, strings stored or sent before
// fingerprints, and the count of copies that matched nobody. Plain Node, MemoryStore.
import { describe, expect, test } from "vitest";
import { ShardNode, type ShardHost } from "../../src/shards/node";
import type { LinkAck, LinkBatch } from "../../src/shards/peer";
import { MemoryStore } from "../../src/storage/memory-store";
import { fingerprint } from "../../src/shards/fingerprint";
import { decodeAll, encodeEntry } from "../../src/shards/wire";

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** K nodes; calls go through at once; every batch sent is kept */
class Cluster {
  readonly nodes: ShardNode[] = [];
  readonly stores: MemoryStore[] = [];
  readonly sent: LinkBatch[] = [];
  private laters: (() => void)[] = [];

  constructor(
    readonly k: number,
    private readonly host: Partial<ShardHost> = {},
  ) {
    for (let self = 0; self < k; self++) this.stores.push(new MemoryStore());
    for (let self = 0; self < k; self++) this.nodes.push(this.start(self));
  }

  /** a node for shard `self` over its store (again: a restart) */
  start(self: number): ShardNode {
    const node: ShardNode = new ShardNode(
      self,
      this.k,
      this.stores[self]!,
      {
        self,
        k: this.k,
        now: () => 1000,
        sync: () => Promise.resolve(),
        wakeAt: () => {},
        later: (fn) => this.laters.push(fn),
        log: () => {},
        call: (target, batch) => {
          this.sent.push(batch);
          return Promise.resolve<LinkAck>(this.nodes[target]!.receive(batch));
        },
      },
      { deliverForwarded: () => 1, hasSharedMember: () => false, retainedForwarded: () => {}, tunnelAtHome: () => {}, peerLost: () => {}, moveArrived: () => {}, ...this.host },
    );
    node.restore(false);
    this.nodes[self] = node;
    return node;
  }

  async run(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      await tick();
      const fns = this.laters;
      if (fns.length === 0) return;
      this.laters = [];
      for (const fn of fns) fn();
    }
  }
}

const fps = (store: MemoryStore) => {
  const out: [number, number][] = [];
  store.loadInterestFps((peer, fp) => out.push([peer, fp]));
  return out;
};
const targets = (node: ShardNode, topic: string) => Array.from(node.interest.shards.subarray(0, node.interest.targets(topic)));

describe("fingerprints between shards", () => {
  test("an exact filter goes as a 5-byte fingerprint, is stored as one, and routes after a restart; a wildcard stays a string", async () => {
    const c = new Cluster(3);
    const filter = "devices/0123456789abcdef-a-rather-long-device-id/cmd";
    c.nodes[1]!.localInterest(filter, true);
    c.nodes[1]!.localInterest("fleet/+/x", true);
    await c.run();
    const entries = c.sent.filter((b) => b.from === 1).flatMap((b) => b.chunks.flatMap((ch) => decodeAll(ch.entries)));
    expect(entries).toContainEqual({ kind: "fingerprint", add: true, fp: fingerprint(filter) });
    expect(entries).toContainEqual({ kind: "interest", add: true, filter: "fleet/+/x" });
    expect(encodeEntry({ kind: "fingerprint", add: true, fp: fingerprint(filter) }).byteLength).toBe(5);
    for (const peer of [0, 2]) {
      expect(fps(c.stores[peer]!)).toEqual([[1, fingerprint(filter)]]);
      expect(c.stores[peer]!.loadInterest()).toEqual([{ peer: 1, filter: "fleet/+/x" }]);
      expect(targets(c.nodes[peer]!, filter)).toEqual([1]);
    }
    // a restart reloads the view from storage alone
    const again = c.start(0);
    expect(targets(again, filter)).toEqual([1]);
    expect(targets(again, "fleet/9/x")).toEqual([1]);
    expect(targets(again, "devices/other/cmd")).toEqual([]);
    // the last local subscription goes: withdrawn everywhere, and from storage
    c.nodes[1]!.localInterest(filter, false);
    await c.run();
    expect(fps(c.stores[0]!)).toEqual([]);
    expect(targets(c.nodes[0]!, filter)).toEqual([]);
  });

  test("exact filters stored as strings before fingerprints are moved to fingerprints at start", () => {
    const c = new Cluster(2);
    const store = c.stores[0]!;
    store.addInterest(1, "a/b");
    store.addInterest(1, "a/#");
    store.addInterest(1, "$share/g/a/b");
    const node = c.start(0);
    expect(store.loadInterest()).toEqual([
      { peer: 1, filter: "$share/g/a/b" },
      { peer: 1, filter: "a/#" },
    ]);
    expect(fps(store)).toEqual([[1, fingerprint("a/b")]]);
    expect(targets(node, "a/b")).toEqual([1]);
    expect(node.interest.sizes()).toMatchObject({ exactPairs: 1, wildPairs: 1, sharedPairs: 1 });
    expect(targets(c.start(0), "a/b")).toEqual([1]); // and again, from the fingerprint
  });

  test("an exact filter announced as a string (a shard not yet updated) is kept as its fingerprint", () => {
    const c = new Cluster(2);
    c.nodes[0]!.receive({ from: 1, chunks: [{ seq: 1, entries: encodeEntry({ kind: "interest", add: true, filter: "x/y" }) }], volatile: [] });
    expect(fps(c.stores[0]!)).toEqual([[1, fingerprint("x/y")]]);
    expect(c.stores[0]!.loadInterest()).toEqual([]);
    c.nodes[0]!.receive({ from: 1, chunks: [{ seq: 2, entries: encodeEntry({ kind: "fingerprint", add: false, fp: fingerprint("x/y") }) }], volatile: [] });
    expect(fps(c.stores[0]!)).toEqual([]);
    expect(c.nodes[0]!.interest.hasAny()).toBe(false);
  });

  test("an ordinary copy that matched no session here is counted; a group's copy is not", () => {
    let matched = 0;
    const c = new Cluster(2, { deliverForwarded: () => matched, hasSharedMember: () => true });
    const publish = (seq: number, share: string | null) =>
      c.nodes[0]!.receive({
        from: 1,
        chunks: [{ seq, entries: encodeEntry({ kind: "publish", topic: "t", payload: new Uint8Array(1), qos: 1, retain: false, origin: null, share, version: 0 }) }],
        volatile: [],
      });
    publish(1, null);
    expect(c.nodes[0]!.figures().forwardedUnmatched).toBe(1);
    matched = 2;
    publish(2, null);
    matched = 0;
    publish(3, "$share/g/t");
    expect(c.nodes[0]!.figures().forwardedUnmatched).toBe(1);
  });
});
