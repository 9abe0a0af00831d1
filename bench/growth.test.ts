// Raising SHARDS under a namespace that holds sessions (docs/scale-out.md §9): how long the
// namespace refuses sockets while its sessions move. `npm run bench:growth` (BENCH_GROWTH_SESSIONS,
// default 5000: persistent sessions made at one object, each with a subscription and one queued
// QoS 1 message; then SHARDS=4, and the time from the restart until shard 0 serves again).
import { expect, test } from "vitest";
import { startBroker, connect, end } from "../test/e2e/harness";
import { shardStub, inspectShard } from "../test/e2e/inspect";
import { until } from "../test/e2e/marker";
import { home } from "../src/shards/layout";

test("growth from 1 to 4 shards", async () => {
  const n = Number(process.env.BENCH_GROWTH_SESSIONS ?? 5000);
  const vars: Record<string, string> = { EVENTS: "none" };
  const b = await startBroker(vars);
  try {
    const ns = "growth";
    for (let i = 0; i < n; i += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, n - i) }, async (_, j) => {
          const id = `dev-${i + j}`;
          const c = await connect(b.url(ns), { clientId: id, clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } });
          await c.subscribeAsync(`dev/${id}/cmd`, { qos: 1 });
          await end(c);
        }),
      );
    }
    const pub = await connect(b.url(ns), { clientId: "pub" });
    for (let i = 0; i < n; i++) await pub.publishAsync(`dev/dev-${i}/cmd`, "x".repeat(100), { qos: 1 });
    await end(pub);
    vars.SHARDS = "4";
    const t0 = Date.now();
    await b.restart();
    const restarted = Date.now() - t0;
    const stub = await shardStub<{ shardLayout(): Promise<{ growing: string | null }> }>(b, ns, 0);
    await until(async () => (await stub.shardLayout()).growing === null, "the growth to end", 600_000);
    const total = Date.now() - t0;
    const moved = Array.from({ length: n }, (_, i) => home(`dev-${i}`, 4)).filter((h) => h !== 0).length;
    let sessions = 0;
    for (let i = 0; i < 4; i++) sessions += (await inspectShard(b, ns, i)).sessions.length;
    expect(sessions).toBe(n);
    console.log(`growth 1 → 4 shards: ${n} sessions (${moved} moved, one queued message each) in ${total} ms from the restart (runtime restart ${restarted} ms)`);
  } finally {
    await b.close();
  }
}, 1_800_000);
