// The namespace seen as one whatever number of shards it spans (issue 13): `$SYS`, the HTTP API
// (stats with per-shard figures, clients, retained, publish, disconnect) over 4 shards.
import { afterAll, beforeAll, expect, test } from "vitest";
import type { MqttClient } from "mqtt";
import { startBroker, connect, collect, end, apiPublish, TEST_API_TOKEN, type Broker } from "./harness";
import { home } from "../../src/shards/layout";

const K = 4;
let broker: Broker;
const clients: MqttClient[] = [];
beforeAll(async () => {
  broker = await startBroker({ SHARDS: String(K), API_TOKEN: TEST_API_TOKEN, SYS_INTERVAL: "1", EVENTS: "none" });
});
afterAll(async () => {
  await end(...clients);
  await broker?.close();
});

function idOn(shard: number, prefix: string): string {
  for (let i = 0; ; i++) if (home(`${prefix}${i}`, K) === shard) return `${prefix}${i}`;
}
async function on(ns: string, shard: number, prefix: string, opts = {}): Promise<MqttClient> {
  const id = idOn(shard, prefix);
  const c = await connect(`${broker.url(ns)}?client=${encodeURIComponent(id)}`, { clientId: id, ...opts });
  clients.push(c);
  return c;
}
async function api(path: string, method = "GET"): Promise<any> {
  const res = await fetch(broker.http(path), { method, headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
  expect(res.status).toBe(200);
  return res.json();
}

test("$SYS speaks for the namespace: clients connected on every shard", async () => {
  const ns = "ops-sys";
  await on(ns, 0, "a");
  await on(ns, 2, "b");
  await on(ns, 3, "c");
  const watcher = await on(ns, 1, "w");
  const seen: string[] = [];
  watcher.on("message", (topic, payload) => {
    if (topic === "$SYS/broker/clients/connected") seen.push(payload.toString());
  });
  await watcher.subscribeAsync("$SYS/broker/clients/connected");
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`$SYS said ${seen.join(",")}`)), 8000);
    const check = setInterval(() => {
      if (seen.includes("4")) {
        clearTimeout(timer);
        clearInterval(check);
        resolve();
      }
    }, 50);
  });
});

test("the API: stats summed with each shard's own figures; clients of every shard; retained once; publish and delete reach every shard", async () => {
  const ns = "ops-api";
  const subs = [await on(ns, 1, "s", { protocolVersion: 5 }), await on(ns, 2, "s", { protocolVersion: 5 }), await on(ns, 3, "s", { protocolVersion: 5 })];
  for (const s of subs) await s.subscribeAsync("api/#", { qos: 1 });
  const got = subs.map((s) => collect(s, 1));
  await apiPublish(broker, ns, { topic: "api/kept", payload: "hello", qos: 1, retain: true });
  for (const g of got) expect((await g)[0]!.payload).toBe("hello");

  const stats = await api(`/api/${ns}/stats`);
  expect(stats.clients.connected).toBe(3);
  expect(stats.subscriptions).toBe(3);
  expect(stats.retained).toBe(1); // every shard keeps it; the namespace has one
  expect(stats.shards.map((s: { shard: number }) => s.shard)).toEqual([0, 1, 2, 3]);
  expect(stats.shards.map((s: { connected: number }) => s.connected)).toEqual([0, 1, 1, 1]);
  for (const s of stats.shards) expect(s.events.websocketMessages + s.events.rpc).toBeGreaterThan(0);

  const { clients: listed } = await api(`/api/${ns}/clients`);
  expect(listed.map((c: { clientId: string }) => c.clientId).sort()).toEqual(subs.map((s) => s.options.clientId).sort());
  const retained = await api(`/api/${ns}/retained?filter=api/%23`);
  expect(retained.messages.map((m: { topic: string }) => m.topic)).toEqual(["api/kept"]);

  // removed on every shard: a new subscriber on any shard gets nothing retained
  expect((await api(`/api/${ns}/retained?topic=api/kept`, "DELETE")).deleted).toBe(true);
  for (let shard = 0; shard < K; shard++) {
    const late = await on(ns, shard, "late");
    const quiet = new Promise<string[]>((resolve) => {
      const seen: string[] = [];
      late.on("message", (t) => seen.push(t));
      setTimeout(() => resolve(seen), 300);
    });
    await late.subscribeAsync("api/#", { qos: 1 });
    expect(await quiet).toEqual([]);
  }
});
