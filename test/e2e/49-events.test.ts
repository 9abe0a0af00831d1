// The billed-event counters (stats `events`) after a known sequence: frames received, the
// upgrade, RPC calls, an alarm run, and a wake-up from hibernation, whose totals carry over.
import { afterAll, beforeAll, expect, test } from "vitest";
import { startBroker, TEST_API_TOKEN, type Broker } from "./harness";
import { RawClient } from "./raw";
import { sleep } from "./inspect";
import type { NamespaceStats } from "../../src/broker/stats";

let broker: Broker;
beforeAll(async () => {
  // CONNECT_TIMEOUT=1: the socket's CONNECT-timeout alarm runs 1 s after it opened (see 09-durability).
  // EVENTS_SAVE_INTERVAL=0: the totals are saved in every event, so a hibernation loses none.
  broker = await startBroker({ CONNECT_TIMEOUT: "1", API_TOKEN: TEST_API_TOKEN, EVENTS_SAVE_INTERVAL: "0" });
});
afterAll(() => broker.close());

/** through the HTTP API (the Worker calls the object's `stats` RPC method: counted as one RPC) */
async function httpStats(namespace: string): Promise<NamespaceStats> {
  const res = await fetch(broker.http(`/api/${namespace}/stats`), { headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as NamespaceStats;
}

/**
 * Through the Durable Object's RPC, as a Worker holding the binding would. Read only after the
 * wait: a Miniflare stub that called the object seems to keep it from hibernating (here, locally).
 */
async function rpcStats(namespace: string): Promise<NamespaceStats> {
  const ns = await broker.mf.getDurableObjectNamespace("BROKER");
  const stub = ns.get(ns.idFromName(namespace)) as unknown as { stats(): Promise<NamespaceStats> };
  return JSON.parse(JSON.stringify(await stub.stats())) as NamespaceStats;
}

test("frames, upgrades, RPC calls and alarm runs are counted; a wake-up from hibernation adds one and keeps the totals", async () => {
  const s0 = await httpStats("ev");
  expect(s0.events).toMatchObject({ websocketMessages: 0, http: 0, rpc: 1, wakeups: 0 }); // a new object: not a wake-up

  const { client } = await RawClient.handshake(broker.url("ev"), { clientId: "ev-1", keepalive: 0 });
  // A socket that never sends CONNECT: its CONNECT timeout is the one alarm (1 s after it opened).
  const silent = await RawClient.open(broker.url("ev"));
  const N = 5;
  for (let i = 0; i < N; i++) client.send({ cmd: "pingreq" });
  for (let i = 0; i < N; i++) await client.take("pingresp");
  const s1 = await httpStats("ev");
  expect(s1.events.rowsWritten).toBeGreaterThan(s0.events.rowsWritten); // at least the saved totals' row
  expect(s1.events.websocketMessages - s0.events.websocketMessages).toBe(1 + N); // CONNECT, then N PINGREQ frames
  expect(s1.events.http - s0.events.http).toBe(2); // the WebSocket upgrades
  expect(s1.events.rpc - s0.events.rpc).toBe(1); // this stats call
  expect(s1.events.since).toBe(s0.events.since);
  expect(s1.events.awakeMs).toBeGreaterThan(s0.events.awakeMs);

  // The silent socket's CONNECT-timeout alarm runs at 1 s and closes it; then nothing for longer
  // than the ≈10 s the object needs to hibernate (the connected client, keep-alive 0, arms no alarm).
  await silent.closed;
  const idleFrom = Date.now();
  await sleep(12_000);
  const s2 = await rpcStats("ev");
  expect(s2.uptime).toBeLessThan((Date.now() - idleFrom) / 1000 - 5); // it did hibernate
  expect(s2.events.wakeups - s1.events.wakeups).toBe(1);
  expect(s2.events.alarms - s0.events.alarms).toBe(1); // the silent socket's CONNECT timeout, and no other
  expect(s2.events.rpc - s1.events.rpc).toBe(1);
  expect(s2.events.websocketMessages).toBe(s1.events.websocketMessages);
  expect(s2.events.http).toBe(s1.events.http);
  expect(s2.events.since).toBe(s0.events.since);
  expect(s2.events.awakeMs).toBeGreaterThanOrEqual(s1.events.awakeMs);
  expect(s2.events.rowsWritten).toBeGreaterThan(s1.events.rowsWritten);
  console.log(`events: ${JSON.stringify(s2.events)}`);

  // the socket survived the hibernation, and its frames count in the new life
  client.send({ cmd: "pingreq" });
  await client.take("pingresp");
  expect((await rpcStats("ev")).events.websocketMessages).toBe(s2.events.websocketMessages + 1);
  await client.end();
}, 40_000);
