// Review of the shard node (src/shards/node.ts) in plain Node: two nodes over MemoryStore, calls
// held until the test lets them through, so the order of acknowledgements is chosen.
import { describe, expect, test } from "vitest";
import { ShardNode, type ShardHost } from "../../src/shards/node";
import type { LinkAck, LinkBatch } from "../../src/shards/peer";
import { MemoryStore } from "../../src/storage/memory-store";
import { decodeAll, TunnelOp } from "../../src/shards/wire";

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Held {
  target: number;
  batch: LinkBatch;
  answer(): void;
}

class Pair {
  readonly nodes: ShardNode[] = [];
  readonly held: Held[] = [];
  readonly closed: { id: string; code: number }[] = [];
  private laters: (() => void)[] = [];

  constructor(
    readonly k = 2,
    host: Partial<ShardHost> = {},
  ) {
    for (let self = 0; self < k; self++) {
      const store = new MemoryStore();
      const shardHost: ShardHost = {
        deliverForwarded: () => {},
        hasSharedMember: () => false,
        retainedForwarded: () => {},
        tunnelAtHome: () => {},
        peerLost: () => {},
        ...host,
      };
      const node: ShardNode = new ShardNode(
        self,
        k,
        store,
        {
          self,
          k,
          now: () => 1000,
          sync: () => Promise.resolve(),
          wakeAt: () => {},
          later: (fn) => this.laters.push(fn),
          log: () => {},
          call: (target, batch) =>
            new Promise<LinkAck>((resolve) => {
              this.held.push({ target, batch, answer: () => resolve(this.nodes[target]!.receive(batch)) });
            }),
          onFailure: (target) => node.linkFailed(target),
        },
        shardHost,
      );
      node.restore();
      this.nodes.push(node);
    }
  }

  /** runs the later events (link flushes) until none is left */
  async run(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      await tick();
      const fns = this.laters;
      if (fns.length === 0) return;
      this.laters = [];
      for (const fn of fns) fn();
    }
  }

  /** lets the oldest held call through */
  async answerOne(): Promise<void> {
    this.held.shift()!.answer();
    await this.run();
  }
}

describe("SUBACK wait (interestSettled)", () => {
  test("an older announcement's acknowledgement does not settle a newer one still in flight", async () => {
    const pair = new Pair();
    const node = pair.nodes[0]!;
    node.localInterest("a", true);
    const first = node.interestSettled();
    expect(first).not.toBeNull();
    await pair.run(); // the call carrying "a" leaves and is held
    node.localInterest("b", true); // goes in the next call, after the first is answered
    const second = node.interestSettled();
    expect(second).not.toBeNull();
    await pair.answerOne(); // "a" acknowledged; the call carrying "b" is now held
    await first;
    expect(pair.held.length).toBe(1);
    // a second local subscriber to "b": nothing new to announce, but "b" itself is not acknowledged
    node.localInterest("b", true);
    expect(node.interestSettled()).not.toBeNull();
    await pair.answerOne();
    await second;
    expect(node.interestSettled()).toBeNull();
  });
});

describe("tunnels", () => {
  test("frames for a tunnel the entrance no longer has (its shard restarted) end the connection at the home", async () => {
    const atHome: { from: number; op: TunnelOp; id: string }[] = [];
    const pair = new Pair(2, { tunnelAtHome: (from, e) => void atHome.push({ from, op: e.op, id: e.id }) });
    // shard 0 is the home of a tunnel whose entrance, shard 1, lost it (a crash: sockets and memory gone)
    pair.nodes[0]!.tunnelOut(1, "1.lost", 7, new Uint8Array([0x30, 0]));
    await pair.run();
    await pair.answerOne();
    while (pair.held.length > 0) await pair.answerOne();
    expect(atHome).toEqual([{ from: 1, op: TunnelOp.Close, id: "1.lost" }]);
  });
});
