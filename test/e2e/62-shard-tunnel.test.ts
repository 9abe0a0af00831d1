// A client that connects to a shard which is not its id's home (no ?client= hint, or a wrong one)
// is tunnelled to the home (issue 13, docs/scale-out.md): one session per id in the namespace,
// takeover across shards, its queue, will and keep-alive, all as on one object. The placement
// hint of another id puts a socket on a chosen shard, so every case here is deterministic.
import { afterAll, beforeAll, expect, test } from "vitest";
import type { MqttClient } from "mqtt";
import { startBroker, connect, collect, end, TEST_API_TOKEN, type Broker } from "./harness";
import { RawClient } from "./raw";
import WebSocket from "ws";
import { until } from "./marker";
import { home, shardName } from "../../src/shards/layout";

const K = 4;
let broker: Broker;
beforeAll(async () => {
  broker = await startBroker({ SHARDS: String(K), API_TOKEN: TEST_API_TOKEN, EVENTS: "none" });
});
afterAll(async () => broker?.close());

function idOn(shard: number, prefix: string): string {
  for (let i = 0; ; i++) if (home(`${prefix}${i}`, K) === shard) return `${prefix}${i}`;
}
/** a URL whose socket lands on `shard` whatever client id the CONNECT then carries */
const via = (namespace: string, shard: number) => `${broker.url(namespace)}?client=${encodeURIComponent(idOn(shard, "placer"))}`;

async function shardStats(namespace: string, shard: number): Promise<{ clients: { connected: number; total: number } }> {
  const objects = await broker.mf.getDurableObjectNamespace("BROKER");
  return (objects.get(objects.idFromName(shardName(namespace, shard))) as unknown as { stats(): Promise<{ clients: { connected: number; total: number } }> }).stats();
}

async function api(path: string, method = "GET"): Promise<{ status: number; body: any }> {
  const res = await fetch(broker.http(path), { method, headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
  return { status: res.status, body: await res.json() };
}

const persistent = (clientId: string) => ({ clientId, clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 } });

test("one session per id: connections on every shard take it over in turn, and it lives at the id's home", async () => {
  const ns = "tun-takeover";
  const id = idOn(1, "dev");
  const clients: MqttClient[] = [];
  for (const shard of [0, 2, 3, 1, 2]) {
    const c = await connect(via(ns, shard), persistent(id));
    clients.push(c);
  }
  await until(() => clients.slice(0, -1).every((c) => !c.connected), "every older connection taken over");
  expect(clients.at(-1)!.connected).toBe(true);
  for (let shard = 0; shard < K; shard++) expect((await shardStats(ns, shard)).clients.total).toBe(shard === 1 ? 1 : 0);
  const listed = await api(`/api/${ns}/clients`);
  expect(listed.body.clients.map((c: { clientId: string; status: string }) => [c.clientId, c.status])).toEqual([[id, "online"]]);
  await end(...clients);
});

test("a tunnelled persistent session gets its queue at its next connection, through any shard", async () => {
  const ns = "tun-queue";
  const id = idOn(1, "dev");
  const first = await connect(via(ns, 3), persistent(id));
  await first.subscribeAsync("q/#", { qos: 1 });
  await end(first);
  const pub = await connect(via(ns, 2), { clientId: idOn(2, "pub") });
  for (let i = 0; i < 5; i++) await pub.publishAsync("q/x", `m${i}`, { qos: 1 });
  const back = await connect(via(ns, 0), persistent(id));
  const got = await collect(back, 5);
  expect(got.map((m) => m.payload)).toEqual(["m0", "m1", "m2", "m3", "m4"]);
  // live messages too, both ways through the tunnel (the PUBACKs go back through it)
  const live = collect(back, 1);
  await pub.publishAsync("q/y", "live", { qos: 2 });
  expect((await live)[0]!.payload).toBe("live");
  await end(pub, back);
});

test("the will of a tunnelled client whose socket is lost goes out from its home", async () => {
  const ns = "tun-will";
  const watcher = await connect(via(ns, 2), { clientId: idOn(2, "w") });
  await watcher.subscribeAsync("status/#", { qos: 1 });
  const id = idOn(1, "dev");
  const device = await connect(via(ns, 3), { clientId: id, will: { topic: `status/${id}`, payload: Buffer.from("offline"), qos: 1, retain: true } });
  const will = collect(watcher, 1, 10_000);
  (device as unknown as { stream: { destroy(): void } }).stream.destroy();
  const got = await will;
  expect(got[0]!.topic).toBe(`status/${id}`);
  expect(got[0]!.payload).toBe("offline");
  await end(watcher, device);
});

test("a CONNECT split over several frames (MQTT.js's own socket) is read and tunnelled", async () => {
  const ns = "tun-frames";
  const id = idOn(1, "dev");
  const c = await connect(via(ns, 0), { clientId: id, createWebsocket: undefined });
  await c.subscribeAsync("f/#", { qos: 1 });
  const got = collect(c, 1);
  await c.publishAsync("f/x", "through", { qos: 1 });
  expect((await got)[0]!.payload).toBe("through");
  expect((await shardStats(ns, 1)).clients.connected).toBe(1);
  expect((await shardStats(ns, 0)).clients.connected).toBe(0);
  await end(c);
});

test("keep-alive: a silent tunnelled client is cut by its home within 1.5 x keep-alive (and a bound)", async () => {
  const ns = "tun-keepalive";
  const raw = await RawClient.open(via(ns, 2), 4);
  const connack = await raw.connect({ clientId: idOn(1, "dev"), keepalive: 1 });
  expect(connack).toMatchObject({ cmd: "connack", returnCode: 0 });
  const closed = await raw.closed;
  expect(closed.at).toBeGreaterThanOrEqual(1400);
  expect(closed.at).toBeLessThan(5000);
});

test("the API disconnects a tunnelled client by id", async () => {
  const ns = "tun-api";
  const id = idOn(3, "dev");
  const c = await connect(via(ns, 0), { clientId: id, protocolVersion: 5 });
  const gone = new Promise<number | undefined>((resolve) => c.once("disconnect", (p) => resolve(p.reasonCode)));
  const res = await api(`/api/${ns}/clients/${id}`, "DELETE");
  expect(res).toMatchObject({ status: 200, body: { disconnected: id } });
  expect(await gone).toBe(0x98); // administrative action, as on one object
  await end(c);
});

test("takeover from one shard to another with in-flight and queued messages: re-sent with DUP, then the queue, in order", async () => {
  const ns = "tun-inflight";
  const id = idOn(1, "dev");
  // a raw client that never acknowledges: its window (Receive Maximum 2) holds two in flight, the rest queue
  const first = await RawClient.connect(via(ns, 3), { clientId: id, clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 600, receiveMaximum: 2 } });
  first.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "inf/#", qos: 1 }] } as never);
  await first.next("suback");
  const pub = await connect(via(ns, 2), { clientId: idOn(2, "pub") });
  for (let i = 0; i < 5; i++) await pub.publishAsync("inf/x", `m${i}`, { qos: 1 });
  const firstTwo = [await first.next("publish"), await first.next("publish")];
  expect(firstTwo.map((p) => String(p.payload))).toEqual(["m0", "m1"]);
  // the same id from a third shard takes the session over; the old socket is closed (0x8E)
  const second = await RawClient.connect(via(ns, 0), { clientId: id, clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 600 } });
  const disconnect = await first.next("disconnect");
  expect(disconnect.reasonCode).toBe(0x8e);
  const got: { payload: string; dup: boolean }[] = [];
  for (let i = 0; i < 5; i++) {
    const p = await second.next("publish");
    got.push({ payload: String(p.payload), dup: p.dup });
    second.send({ cmd: "puback", messageId: p.messageId, reasonCode: 0 } as never);
  }
  expect(got).toEqual([
    { payload: "m0", dup: true },
    { payload: "m1", dup: true },
    { payload: "m2", dup: false },
    { payload: "m3", dup: false },
    { payload: "m4", dup: false },
  ]);
  await end(pub);
  second.ws.close();
});

test("a shard that only ever heard its peers (retained copies) serves after a restart: its data came from this layout", async () => {
  const b = await startBroker({ SHARDS: String(K) });
  try {
    const ns = "quiet-shard";
    const pub = await connect(`${b.url(ns)}?client=${idOn(0, "p")}`, { clientId: idOn(0, "p") });
    await pub.publishAsync("kept/x", "copy", { qos: 1, retain: true });
    await end(pub);
    // shard 2 got the retained copy over its link, and no socket yet
    await until(async () => {
      const objects = await b.mf.getDurableObjectNamespace("BROKER");
      const st = await (objects.get(objects.idFromName(shardName(ns, 2))) as unknown as { stats(): Promise<{ retained: number }> }).stats();
      return st.retained === 1;
    }, "the copy reached shard 2");
    await b.restart();
    const id = idOn(2, "late");
    const late = await connect(`${b.url(ns)}?client=${id}`, { clientId: id });
    const got = collect(late, 1);
    await late.subscribeAsync("kept/#", { qos: 1 });
    expect((await got)[0]!.payload).toBe("copy");
    await end(late);
  } finally {
    await b.close();
  }
});

test("a text frame from a tunnelled MQTT 5 client is answered by its home as on one object: DISCONNECT 0x81, closed", async () => {
  const raw = await RawClient.open(via("tun-text", 0), 5);
  await raw.connect({ clientId: idOn(2, "dev"), protocolVersion: 5 });
  raw.sendBytes("not mqtt");
  const disconnect = await raw.next("disconnect");
  expect(disconnect.reasonCode).toBe(0x81);
  await raw.closed;
});
