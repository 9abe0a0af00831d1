// Limits end to end (src/config.ts): topic length and levels, subscriptions per client,
// connections per namespace, retained messages and bytes, inbound publish rate, connect
// timeout, packet size, and the Origin allow-list.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { MqttClient } from "mqtt";
import { startBroker, connect, collect, end, SHARDED, type Broker } from "./harness";
import WebSocket from "ws";
import { RawClient } from "./raw";
import { closedWithin, inspectBroker, record, uncaught } from "./inspect";
import { expectOnlyMarker } from "./marker";
import { encode } from "../packets";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker({
    MAX_TOPIC_LENGTH: "40",
    MAX_TOPIC_LEVELS: "4",
    MAX_SUBSCRIPTIONS: "3",
    MAX_CONNECTIONS: "4",
    MAX_RETAINED_MESSAGES: "3",
    MAX_RETAINED_BYTES: "100",
    MAX_PUBLISH_RATE: "20",
    PUBLISH_BURST: "40",
    CONNECT_TIMEOUT: "1",
    MAX_PACKET_SIZE: "2048",
    ALLOWED_ORIGINS: "https://app.example.com, https://admin.example.com",
  });
});
afterAll(() => broker.close());

async function pubCode(c: MqttClient, topic: string, payload: string | Buffer, retain = false): Promise<number | "ok"> {
  try {
    await c.publishAsync(topic, payload, { qos: 1, retain });
    return "ok";
  } catch (e) {
    return (e as { code: number }).code;
  }
}

async function subCodes(c: MqttClient, filters: string[]): Promise<number[]> {
  return c.subscribeAsync(filters, { qos: 1 }).then(
    (g) => g.map((x) => x.qos as number),
    (e: { packet: { granted: number[] } }) => e.packet.granted,
  );
}

describe.each([
  [4, { filter: 0x80, quota: 0x80 }],
  [5, { filter: 0x8f, quota: 0x97 }],
] as const)("protocol %i", (protocolVersion, codes) => {
  test("topic length and levels", async () => {
    const c = await connect(broker.url("topics"), { protocolVersion });
    expect(await subCodes(c, ["a/b/c/d", "a/b/c/d/e", "x".repeat(41), "a/+/c/#"])).toEqual([1, codes.filter, codes.filter, 1]);
    // a publish over the limits is not routed: MQTT 5 says 0x90, 3.1.1 acknowledges and drops
    const got = collect(c, 1);
    expect(await pubCode(c, "a/b/c/d/e", "deep")).toBe(protocolVersion === 5 ? 0x90 : "ok");
    expect(await pubCode(c, "a/" + "x".repeat(40), "long")).toBe(protocolVersion === 5 ? 0x90 : "ok");
    expect(await pubCode(c, "a/b/c/d", "fine")).toBe("ok");
    expect((await got).map((m) => m.payload)).toEqual(["fine"]);
    expect(c.connected).toBe(true);
    await end(c);
  });

  test("subscriptions per client", async () => {
    const c = await connect(broker.url("subs"), { protocolVersion });
    expect(await subCodes(c, ["s/1", "s/2", "s/3", "s/4"])).toEqual([1, 1, 1, codes.quota]);
    expect(await subCodes(c, ["s/3"])).toEqual([1]); // re-subscribing is no new subscription
    await c.unsubscribeAsync("s/1");
    expect(await subCodes(c, ["s/4"])).toEqual([1]);
    await end(c);
  });
});

// sharded: the limit is counted per shard, not per namespace
test.skipIf(SHARDED).each([
  [4, 3],
  [5, 0x97],
] as const)("connections per namespace (protocol %i: CONNACK %i)", async (protocolVersion, code) => {
  const ns = `conns-${protocolVersion}`;
  const clients = await Promise.all([1, 2, 3, 4].map((i) => connect(broker.url(ns), { protocolVersion, clientId: `c${i}` })));
  await expect(connect(broker.url(ns), { protocolVersion, clientId: "c5" })).rejects.toMatchObject({ code });
  // taking over a session does not add a connection
  const again = await connect(broker.url(ns), { protocolVersion, clientId: "c4" });
  expect(again.connected).toBe(true);
  // another namespace has its own count
  const elsewhere = await connect(broker.url(`${ns}-other`), { protocolVersion });
  await end(...clients, again, elsewhere);
});

test.each([4, 5] as const)("retained messages and bytes per namespace (protocol %i)", async (protocolVersion) => {
  const ns = `retained-${protocolVersion}`;
  const quota = protocolVersion === 5 ? 0x97 : "ok";
  const c = await connect(broker.url(ns), { protocolVersion });
  const live = await connect(broker.url(ns), { protocolVersion });
  await live.subscribeAsync("r/#", { qos: 1 });
  const liveGot = record(live);
  expect(await pubCode(c, "r/1", "a", true)).toBe("ok");
  expect(await pubCode(c, "r/2", "b", true)).toBe("ok");
  expect(await pubCode(c, "r/3", "c", true)).toBe("ok");
  expect(await pubCode(c, "r/4", "d", true)).toBe(quota); // a fourth message
  expect(await pubCode(c, "r/1", "replaced", true)).toBe("ok"); // replacing is fine
  expect(await pubCode(c, "r/2", "x".repeat(95), true)).toBe(quota); // over 100 bytes in total
  expect(await pubCode(c, "r/3", "", true)).toBe("ok"); // deleting frees a slot
  expect(await pubCode(c, "r/4", "d", true)).toBe("ok");
  const state = await inspectBroker(broker, ns);
  expect(state.retained).toEqual({ count: 3, bytes: "replaced".length + 1 + 1 });
  expect(state.problems).toEqual([]);
  // a refused retained publish is not delivered live either: the live subscriber got the accepted ones only
  const accepted = ["r/1=a", "r/2=b", "r/3=c", "r/1=replaced", "r/3=", "r/4=d"];
  await expectOnlyMarker(liveGot, (m) => c.publishAsync("r/marker", m, { qos: 1 }), accepted);
  // and a later subscriber gets exactly the stored three
  const sub = await connect(broker.url(ns), { protocolVersion });
  const got = collect(sub, 3);
  await sub.subscribeAsync("r/#");
  expect((await got).map((m) => m.topic).sort()).toEqual(["r/1", "r/2", "r/4"]);
  await end(c, live, sub);
});

test("inbound publish rate: MQTT 5 DISCONNECT 0x96; others unaffected", async () => {
  const steady = await connect(broker.url("rate"), { protocolVersion: 5 });
  const flood = await RawClient.open(broker.url("rate"), 5);
  flood.sendBytes(encode({ cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clientId: "flood", clean: true, keepalive: 0 }, 5));
  expect((await flood.next()).cmd).toBe("connack");
  const one = encode({ cmd: "publish", topic: "rate/x", payload: Buffer.from("x"), qos: 0, retain: false, dup: false }, 5);
  flood.sendBytes(Uint8Array.from(Array.from({ length: 60 }, () => [...one]).flat()));
  const d = (await flood.next()) as { cmd: string; reasonCode?: number };
  expect(d).toMatchObject({ cmd: "disconnect", reasonCode: 0x96 });
  expect(await closedWithin(flood, 2000)).not.toBe("open");
  for (let i = 0; i < 10; i++) await steady.publishAsync("rate/y", "y", { qos: 1 });
  expect(steady.connected).toBe(true);
  await end(steady);
});

test("inbound publish rate: MQTT 3.1.1 closes the connection", async () => {
  const flood = await RawClient.open(broker.url("rate"), 4);
  flood.sendBytes(encode({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clientId: "flood4", clean: true, keepalive: 0 }, 4));
  expect((await flood.next()).cmd).toBe("connack");
  const one = encode({ cmd: "publish", topic: "rate/x", payload: Buffer.from("x"), qos: 0, retain: false, dup: false }, 4);
  flood.sendBytes(Uint8Array.from(Array.from({ length: 60 }, () => [...one]).flat()));
  expect(await closedWithin(flood, 2000)).not.toBe("open");
  expect(flood.packets).toEqual([]); // nothing after the CONNACK
});

test("a socket that sends no CONNECT is closed after CONNECT_TIMEOUT", async () => {
  const started = Date.now();
  const silent = await RawClient.open(broker.url("timeout"));
  const code = await closedWithin(silent, 5000);
  expect(code).not.toBe("open");
  const elapsed = Date.now() - started;
  expect(elapsed).toBeGreaterThanOrEqual(900);
  expect(silent.packets).toEqual([]);
  // a half-sent CONNECT does not keep it open either
  const partial = await RawClient.open(broker.url("timeout"));
  partial.sendBytes(encode({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clientId: "slow", clean: true, keepalive: 0 }, 4).slice(0, 5));
  expect(await closedWithin(partial, 5000)).not.toBe("open");
});

test.each([4, 5] as const)("packets over MAX_PACKET_SIZE end the connection (protocol %i)", async (v) => {
  const c = await RawClient.open(broker.url("size"), v);
  c.sendBytes(encode({ cmd: "connect", protocolId: "MQTT", protocolVersion: v, clientId: `big-${v}`, clean: true, keepalive: 0 }, v));
  expect((await c.next()).cmd).toBe("connack");
  c.sendBytes(encode({ cmd: "publish", topic: "big", payload: Buffer.alloc(3000), qos: 0, retain: false, dup: false }, v));
  if (v === 5) expect(await c.next()).toMatchObject({ cmd: "disconnect", reasonCode: 0x95 });
  expect(await closedWithin(c, 2000)).not.toBe("open");
});

describe("Origin allow-list", () => {
  const openWithOrigin = (origin: string) =>
    new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(broker.url(), "mqtt", { headers: { Origin: origin } });
      ws.once("open", () => resolve(ws));
      ws.once("error", reject);
    });

  const get = (origin?: string) =>
    fetch(`http://127.0.0.1:${broker.port}/mqtt`, { headers: origin ? { Origin: origin } : {} }).then(async (r) => ({ status: r.status, body: await r.text() }));

  test("a browser page from another origin gets 403 with a message", async () => {
    const r = await get("https://evil.example.net");
    expect(r.status).toBe(403);
    expect(r.body).toMatch(/origin not allowed: https:\/\/evil.example.net/);
    await expect(openWithOrigin("https://evil.example.net")).rejects.toThrow(/403/);
  });

  test("listed origins and clients without Origin connect", async () => {
    expect((await get("https://admin.example.com")).status).toBe(426); // allowed, then asks for the upgrade
    const ws = await openWithOrigin("https://app.example.com");
    ws.terminate();
    const plain = await connect(broker.url());
    await end(plain);
  });
});

test("AUTH_MODE=none is said loudly in the logs", () => {
  expect(broker.logs.join("")).toMatch(/AUTH_MODE=none: ANY client may connect/);
});

test("nothing escaped to the runtime", () => {
  expect(uncaught(broker)).toEqual([]);
});
