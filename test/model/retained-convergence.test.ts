// Retained messages over several shards (every shard keeps every one, the newest version wins):
// random retained publishes, clears and API removals on 3 shards whose clocks disagree, the
// copies delivered link by link in a random interleaving (FIFO per link). Once every copy is
// delivered, every shard must hold the same retained messages.
import fc from "fast-check";
import { expect, test } from "vitest";
import { BrokerCore, type Runtime } from "../../src/broker/core";
import * as admin from "../../src/broker/admin";
import { DEFAULTS } from "../../src/config";
import { Authenticator } from "../../src/auth/authenticator";
import { MemoryStore } from "../../src/storage/memory-store";
import { ShardNode } from "../../src/shards/node";
import type { LinkAck } from "../../src/shards/peer";
import { fnv1a64, jump } from "../../src/shards/layout";

const K = 3;
const TOPICS = ["a", "b"] as const;

type Op =
  | { op: "publish"; shard: number; topic: string; payload: string }
  | { op: "apiDelete"; topic: string }
  | { op: "deliver"; from: number; to: number }
  | { op: "advance"; ms: number };

const shard = fc.integer({ min: 0, max: K - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant("publish" as const), shard, topic: fc.constantFrom(...TOPICS), payload: fc.constantFrom("", "p1", "p2", "p3") }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("apiDelete" as const), topic: fc.constantFrom(...TOPICS) }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant("deliver" as const), from: shard, to: shard }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 30 }) }) },
);

function cluster(skews: number[]) {
  let base = 1_000_000;
  const shards = skews.map((skew, self) => {
    const now = () => base + skew;
    const store = new MemoryStore();
    const runtime: Runtime = { now, wakeAt: () => {}, rearm: () => {}, later: () => {}, log: () => {} };
    const core = new BrokerCore(store, { ...DEFAULTS, SYS_INTERVAL: 0, SHARDS: K }, runtime, Authenticator.open());
    const node = new ShardNode(self, K, store, { self, k: K, now, sync: () => Promise.resolve(), wakeAt: () => {}, later: () => {}, log: () => {}, call: () => new Promise<LinkAck>(() => {}) }, core);
    core.joinShards(node);
    core.restore([]);
    return { core, store, node };
  });
  /** per link (from, to): chunks delivered so far */
  const delivered = shards.map(() => shards.map(() => 0));
  const deliverOne = (from: number, to: number): boolean => {
    if (from === to) return false;
    const next = shards[from]!.store.loadChunks().find((c) => c.target === to && c.seq > delivered[from]![to]!);
    if (!next) return false;
    delivered[from]![to] = next.seq;
    shards[to]!.node.receive({ from, chunks: [{ seq: next.seq, entries: next.entries }], volatile: [] });
    return true;
  };
  return {
    shards,
    advance: (ms: number) => void (base += ms),
    deliverOne,
    deliverAll() {
      for (let moved = true; moved; ) {
        moved = false;
        for (let f = 0; f < K; f++) for (let t = 0; t < K; t++) while (deliverOne(f, t)) moved = true;
      }
    },
  };
}

const state = (store: MemoryStore) =>
  store
    .retainedWithPrefix("")
    .map((m) => `${m.topic}=${new TextDecoder().decode(m.payload)}`)
    .sort();

test("every shard ends with the same retained messages, whatever the clocks and the order copies arrive in", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -20, max: 20 }), { minLength: K, maxLength: K }), fc.array(opArb, { minLength: 1, maxLength: 40 }), (skews, ops) => {
      const c = cluster(skews);
      for (const o of ops) {
        if (o.op === "publish") c.shards[o.shard]!.core.publish({ topic: o.topic, payload: new TextEncoder().encode(o.payload), qos: 0, retain: true });
        else if (o.op === "apiDelete") {
          // as the API does (api/namespace.ts): the topic's shard makes the version, every other shard uses it
          const first = jump(fnv1a64(o.topic), K);
          const { version } = admin.removeRetained(c.shards[first]!.core, o.topic, null);
          c.shards.forEach((s, i) => i !== first && admin.removeRetained(s.core, o.topic, version));
        }
        else if (o.op === "deliver") c.deliverOne(o.from, o.to);
        else c.advance(o.ms);
      }
      c.deliverAll();
      const first = state(c.shards[0]!.store);
      for (const s of c.shards) expect(state(s.store)).toEqual(first);
    }),
    { numRuns: 300 },
  );
});
