import { defineConfig } from "vitest/config";
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";

/**
 * The e2e files the sharded run (E2E_SHARDS=4) cannot pass yet, each with why (docs/scale-out.md
 * §13: the list shrinks step by step and is empty at step 12).
 */
const SHARDED_SKIP: Record<string, string> = {
  // 60-shards sets SHARDS=4 itself: the `node` project already runs it sharded.
  "test/e2e/60-shards.test.ts": "sharded on its own (SHARDS=4 explicitly); run by the node project",
  "test/e2e/61-shard-crash.test.ts": "sharded on its own (SHARDS=4 explicitly)",
  "test/e2e/62-shard-tunnel.test.ts": "sharded on its own (SHARDS=4 explicitly)",
  "test/e2e/63-shard-review.test.ts": "sharded on its own (SHARDS=4 explicitly)",
  "test/e2e/64-shard-console.test.ts": "sharded on its own (SHARDS=4 explicitly)",
  "test/e2e/65-shard-operations.test.ts": "sharded on its own (SHARDS=4 explicitly)",
  "test/e2e/66-shard-fuzz.test.ts": "sharded on its own (SHARDS=4 explicitly)",
  "test/e2e/67-shard-growth.test.ts": "sets SHARDS itself (2, then 4; 1, then 4)",
  "test/e2e/49-events.test.ts": "asserts one object's billed-event counters for traffic that a sharded namespace spreads over objects",
  "test/e2e/58-bridge.test.ts": "at K > 1 a bridge's idle link reconnects within 5 s, a message published while the remote is down is not delivered, and a restart with changed rules times out (3 of 14 tests; not diagnosed)",
};
// Single tests the sharded run cannot pass yet are marked in their files: `test.skipIf(SHARDED)`
// under a `// sharded: <why>` comment (grep -rn "sharded:" test/e2e).

export default defineConfig({
  test: {
    projects: [
      {
        // Plain Node: pure logic, and real MQTT.js clients against the built worker in workerd.
        test: {
          name: "node",
          include: ["test/unit/**/*.test.ts", "test/model/**/*.test.ts", "test/e2e/**/*.test.ts"],
          environment: "node",
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      // The same end-to-end suite against namespaces of 4 shards (test/e2e/harness.ts reads
      // E2E_SHARDS; clients connect with the placement hint, so a reconnect finds its session):
      // `npm run test:sharded`. Not in `npm test`: run beside the K = 1 suite on two cores it
      // doubles the time and the load, and the timing-bound tests then miss their bounds.
      ...(process.env.E2E_SHARDED === "1"
        ? [
            {
              test: {
                name: "e2e-sharded",
                include: ["test/e2e/**/*.test.ts"],
                exclude: Object.keys(SHARDED_SKIP),
                environment: "node" as const,
                env: { E2E_SHARDS: "4" },
                testTimeout: 30_000,
                hookTimeout: 30_000,
              },
            },
          ]
        : []),
      // `npm run bench:growth`: how long a namespace pauses while SHARDS grows (bench/growth.test.ts)
      ...(process.env.BENCH_GROWTH === "1" ? [{ test: { name: "bench-growth", include: ["bench/growth.test.ts"], environment: "node" as const } }] : []),
      {
        // Inside workerd: the SQLite store and the Durable Object's entry points.
        plugins: [cloudflareTest({ main: "./src/index.ts", wrangler: { configPath: "./wrangler.toml" } })],
        test: {
          name: "workers",
          include: ["test/workers/**/*.test.ts"],
          // mqtt-packet pulls readable-stream (CommonJS) in; pre-bundle it as wrangler's esbuild does.
          deps: { optimizer: { ssr: { enabled: true, include: ["mqtt-packet"] } } },
        },
      },
    ],
  },
});
