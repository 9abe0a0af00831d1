// Presence and lifecycle events end to end (docs/events.md): a monitor subscribed to `$events/#`
// sees every client connect and disconnect, with the reason of each kind of end; session expiry;
// subscription events only when switched on; ACLs; clients cannot publish there; the retained
// presence view across a restart. Also: success PUBACK/PUBREC carry no Reason String.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { MqttClient } from "mqtt";
import { startBroker, connect, end, TEST_API_TOKEN, type Broker } from "./harness";
import { RawClient, publishPacket } from "./raw";
import { expectOnlyMarker, expectOnlyMarkerAll, until } from "./marker";
import { objectUptime, record, sleep } from "./inspect";

interface Event {
  topic: string;
  qos: number;
  body: Record<string, unknown>;
}

/** A client subscribed to `filter` whose received events are parsed as they arrive. */
async function monitor(url: string, filter = "$events/#", opts: Parameters<typeof connect>[1] = {}): Promise<{ client: MqttClient; events: Event[]; got: string[] }> {
  const client = await connect(url, { protocolVersion: 5, ...opts });
  const events: Event[] = [];
  client.on("message", (topic, payload, packet) => {
    if (topic.startsWith("$events/") && !topic.startsWith("$events/presence/")) events.push({ topic, qos: packet.qos, body: JSON.parse(payload.toString()) });
  });
  const got = record(client);
  await client.subscribeAsync(filter, { qos: 1 });
  return { client, events, got };
}

/** Waits for the event on `topic` for `clientId` (the n-th one, from 1). */
async function eventOf(events: Event[], topic: string, n = 1): Promise<Event> {
  await until(() => events.filter((e) => e.topic === topic).length >= n, `event #${n} on ${topic} (got ${JSON.stringify(events.map((e) => e.topic))})`, 8000);
  return events.filter((e) => e.topic === topic)[n - 1]!;
}

/** The SUBACK codes for one filter (MQTT.js rejects a refusal, with the packet). */
function suback(client: MqttClient, filter: string): Promise<number[] | undefined> {
  return client.subscribeAsync(filter, { qos: 1 }).then(
    (granted) => granted.map((g) => g.qos),
    (e: { packet?: { granted: number[] } }) => e.packet?.granted,
  );
}

let broker: Broker;
let mon: Awaited<ReturnType<typeof monitor>>;
const url = () => broker.url("ev");

beforeAll(async () => {
  broker = await startBroker({ API_TOKEN: TEST_API_TOKEN });
  mon = await monitor(url(), "$events/#", { clientId: "monitor" });
  await mon.client.subscribeAsync("marker/#", { qos: 1 });
});
afterAll(async () => {
  await end(mon.client);
  await broker.close();
});

describe("connected and disconnected, one end at a time", () => {
  test.each([5, 4] as const)("MQTT %i: the shapes, and a normal DISCONNECT", async (protocolVersion) => {
    const id = `normal-v${protocolVersion}`;
    const before = Date.now();
    const c = await connect(url(), {
      clientId: id,
      protocolVersion,
      keepalive: 30,
      clean: protocolVersion === 4 ? false : true,
      properties: protocolVersion === 5 ? { sessionExpiryInterval: 120 } : undefined,
    });
    const connected = await eventOf(mon.events, `$events/clients/${id}/connected`);
    expect(connected.qos).toBe(1);
    expect(connected.body).toEqual({
      event: "connected",
      clientId: id,
      username: null,
      protocolVersion,
      keepalive: 30,
      sessionExpiry: protocolVersion === 5 ? 120 : 7 * 24 * 3600, // MQTT 3.1.1 persistent: MAX_SESSION_EXPIRY
      cleanStart: protocolVersion === 5,
      sessionPresent: false,
      time: expect.any(Number),
    });
    expect(connected.body.time).toBeGreaterThanOrEqual(before - 1000);
    expect(connected.body.time).toBeLessThanOrEqual(Date.now() + 1000);
    await c.endAsync(); // with DISCONNECT
    const disconnected = await eventOf(mon.events, `$events/clients/${id}/disconnected`);
    expect(disconnected.body).toEqual({
      event: "disconnected",
      clientId: id,
      username: null,
      protocolVersion,
      keepalive: 30,
      sessionExpiry: protocolVersion === 5 ? 120 : 7 * 24 * 3600,
      time: expect.any(Number),
      reason: "normal disconnect",
      reasonCode: 0,
      willPublished: false,
      willDelayed: false,
    });
    expect(disconnected.body.time).toBeGreaterThanOrEqual(connected.body.time as number);
  });

  test("DISCONNECT with will (0x04): the will is published and the event says so", async () => {
    const c = await connect(url(), { clientId: "with-will", protocolVersion: 5, will: { topic: "marker/will", payload: Buffer.from("bye"), qos: 1, retain: false } });
    await eventOf(mon.events, "$events/clients/with-will/connected");
    c.end(false, { reasonCode: 0x04 });
    const e = await eventOf(mon.events, "$events/clients/with-will/disconnected");
    expect(e.body).toMatchObject({ reason: "disconnect with will", reasonCode: 4, willPublished: true, willDelayed: false });
    await until(() => mon.got.includes("marker/will=bye"), "the will");
  });

  test("keep-alive expired: a raw client that stops pinging", async () => {
    const raw = await RawClient.connect(url(), { clientId: "silent", keepalive: 1, protocolVersion: 5 });
    const e = await eventOf(mon.events, "$events/clients/silent/disconnected");
    expect(e.body).toMatchObject({ reason: "keep-alive expired", reasonCode: 0x8d, keepalive: 1 });
    await raw.closed;
  });

  test("socket lost: the stream destroyed, the will goes out", async () => {
    const raw = await RawClient.connect(url(), { clientId: "lost", protocolVersion: 4, will: { topic: "marker/lost", payload: Buffer.from("gone"), qos: 0, retain: false } });
    await eventOf(mon.events, "$events/clients/lost/connected");
    await raw.destroy();
    const e = await eventOf(mon.events, "$events/clients/lost/disconnected");
    expect(e.body).toMatchObject({ reason: "socket lost", reasonCode: null, willPublished: true, protocolVersion: 4 });
  });

  test("protocol error: a malformed packet, its reason code in the event", async () => {
    const raw = await RawClient.connect(url(), { clientId: "broken", protocolVersion: 5 });
    raw.sendBytes([0x30, 0x02, 0xff, 0xff]); // PUBLISH whose topic length runs past its end
    const e = await eventOf(mon.events, "$events/clients/broken/disconnected");
    expect(e.body).toMatchObject({ reason: "protocol error", reasonCode: 0x81 });
    expect((await raw.next("disconnect")).reasonCode).toBe(0x81); // the client was told the same code
  });

  test("takeover: the old connection's event, then the new one's", async () => {
    const first = await connect(url(), { clientId: "twin", protocolVersion: 5 });
    await eventOf(mon.events, "$events/clients/twin/connected");
    first.on("error", () => {});
    const second = await connect(url(), { clientId: "twin", protocolVersion: 5 });
    const e = await eventOf(mon.events, "$events/clients/twin/disconnected");
    expect(e.body).toMatchObject({ reason: "takeover", reasonCode: 0x8e });
    await eventOf(mon.events, "$events/clients/twin/connected", 2);
    const order = mon.events.filter((x) => x.topic.startsWith("$events/clients/twin/")).map((x) => x.body.event);
    expect(order).toEqual(["connected", "disconnected", "connected"]);
    await end(first, second);
  });

  test("administrative disconnect through the HTTP API", async () => {
    const c = await connect(url(), { clientId: "dev/7", protocolVersion: 5 });
    c.on("error", () => {});
    await eventOf(mon.events, "$events/clients/dev%2F7/connected"); // a `/` in the id is escaped in the topic
    const res = await fetch(broker.http(`/api/ev/clients/${encodeURIComponent("dev/7")}`), { method: "DELETE", headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
    expect(res.status).toBe(200);
    const e = await eventOf(mon.events, "$events/clients/dev%2F7/disconnected");
    expect(e.body).toMatchObject({ clientId: "dev/7", reason: "administrative disconnect", reasonCode: 0x98 });
    await end(c);
  });

  test("a session that expires: $events/sessions/<id>/expired", async () => {
    const c = await connect(url(), { clientId: "short", protocolVersion: 5, properties: { sessionExpiryInterval: 1 } });
    await c.endAsync();
    const e = await eventOf(mon.events, "$events/sessions/short/expired");
    expect(e.body).toEqual({ event: "expired", clientId: "short", username: null, protocolVersion: 5, time: expect.any(Number) });
    const disconnected = await eventOf(mon.events, "$events/clients/short/disconnected");
    // about 1 s after the disconnection (the expiry counts from the event's start, a few ms before its time stamp)
    expect(e.body.time as number).toBeGreaterThanOrEqual((disconnected.body.time as number) + 900);
  });
});

describe("what is not published", () => {
  test("subscription events are off by default", async () => {
    const c = await connect(url(), { clientId: "quiet-sub", protocolVersion: 5 });
    await eventOf(mon.events, "$events/clients/quiet-sub/connected");
    mon.got.length = 0;
    await c.subscribeAsync("a/b");
    await c.unsubscribeAsync("a/b");
    await expectOnlyMarker(mon.got, (m) => c.publishAsync("marker/m", m, { qos: 1 }));
    await end(c);
  });

  test("a `#` subscriber gets no event; a client cannot publish to $events (PUBACK 0x87, QoS 0 dropped)", async () => {
    const all = await connect(url(), { clientId: "everything", protocolVersion: 5 });
    const got = record(all);
    await all.subscribeAsync("#", { qos: 1 });
    const forger = await connect(url(), { clientId: "forger", protocolVersion: 5 });
    mon.got.length = 0;
    const acks: { reasonCode?: number; properties?: Record<string, unknown> }[] = [];
    forger.on("packetreceive", (p) => {
      if (p.cmd === "puback") acks.push(p as { reasonCode?: number });
    });
    await forger.publishAsync("$events/clients/x/connected", "{}", { qos: 0 });
    await forger.publishAsync("$events/clients/x/connected", "{}", { qos: 1 }).catch(() => {});
    await until(() => acks.length === 1, "the PUBACK");
    expect(acks[0]!.reasonCode).toBe(0x87);
    const c = await connect(url(), { clientId: "seen-by-monitor-only", protocolVersion: 4 });
    await eventOf(mon.events, "$events/clients/seen-by-monitor-only/connected");
    await expectOnlyMarker(got, (m) => forger.publishAsync("marker/m", m, { qos: 1 }));
    expect(mon.got.filter((m) => m.startsWith("$events/clients/x/"))).toEqual([]);
    const api = await fetch(broker.http("/api/ev/publish"), {
      method: "POST",
      headers: { "content-type": "application/json", Authorization: `Bearer ${TEST_API_TOKEN}` },
      body: JSON.stringify({ topic: "$events/clients/x/connected", payload: "{}" }),
    });
    expect(api.status).toBe(400);
    expect(((await api.json()) as { error: string }).error).toMatch(/\$events topics belong to the broker/);
    await end(all, forger, c);
  });
});

describe("ACLs", () => {
  let aclBroker: Broker;
  beforeAll(async () => {
    // everything but `$` topics, and of the events only the connected ones
    aclBroker = await startBroker({ ACL_DEFAULT: JSON.stringify({ subscribe: ["#", "$events/clients/+/connected"] }) });
  });
  afterAll(() => aclBroker.close());

  test("events outside the subscribe ACL: SUBACK refuses them, a broader filter gets only what the ACL allows, `#` gets none", async () => {
    const v5 = await connect(aclBroker.url(), { clientId: "no-rights-5", protocolVersion: 5 });
    const v4 = await connect(aclBroker.url(), { clientId: "no-rights-4", protocolVersion: 4 });
    expect(await suback(v5, "$events/sessions/#")).toEqual([0x87]);
    expect(await suback(v4, "$events/clients/+/disconnected")).toEqual([0x80]);
    const everything = record(v4);
    await v4.subscribeAsync("#", { qos: 1 });
    // `$events/#` overlaps the ACL: granted, each event checked against it
    const broad = await monitor(aclBroker.url(), "$events/#", { clientId: "broad" });
    await broad.client.subscribeAsync("marker/#", { qos: 1 });
    const c = await connect(aclBroker.url(), { clientId: "acl-dev", protocolVersion: 5, properties: { sessionExpiryInterval: 1 } });
    await c.endAsync();
    await until(() => broad.got.length > 0);
    // after the session's expiry: the disconnected and expired events were kept from both
    await expectOnlyMarkerAll([everything, broad.got], (m) => v5.publishAsync("marker/m", m, { qos: 1 }), [[], [broad.got[0]!]], { quietMs: 1500 });
    expect(broad.events.map((e) => e.topic)).toEqual(["$events/clients/acl-dev/connected"]);
    await end(v5, v4, broad.client);
  });
});

describe("EVENTS=all with PRESENCE_RETAINED", () => {
  let b: Broker;
  beforeAll(async () => {
    b = await startBroker({ EVENTS: "all", PRESENCE_RETAINED: "true" });
  });
  afterAll(() => b.close());

  test("subscription events when switched on", async () => {
    const m = await monitor(b.url("subs"), "$events/subscriptions/#");
    const c = await connect(b.url("subs"), { clientId: "subber", protocolVersion: 4 });
    await c.subscribeAsync({ "a/+": { qos: 1 }, "b/#": { qos: 2 } });
    await c.unsubscribeAsync(["a/+", "never/subscribed"]);
    const s = await eventOf(m.events, "$events/subscriptions/subber/subscribed");
    expect(s.body).toEqual({ event: "subscribed", clientId: "subber", username: null, subscriptions: [{ filter: "a/+", qos: 1 }, { filter: "b/#", qos: 2 }], time: expect.any(Number) });
    const u = await eventOf(m.events, "$events/subscriptions/subber/unsubscribed");
    expect(u.body).toEqual({ event: "unsubscribed", clientId: "subber", username: null, filters: ["a/+"], time: expect.any(Number) });
    await end(c, m.client);
  });

  test("a late subscriber sees every session's presence, also after a restart", async () => {
    const ns = "presence";
    const persistentMonitor = await monitor(b.url(ns), "$events/clients/+/disconnected", { clientId: "pmon", clean: false, properties: { sessionExpiryInterval: 300 } });
    const online = await connect(b.url(ns), { clientId: "p-online", protocolVersion: 5, properties: { sessionExpiryInterval: 300 } });
    const away = await connect(b.url(ns), { clientId: "p-away", protocolVersion: 4, clean: false });
    const passing = await connect(b.url(ns), { clientId: "p-passing", protocolVersion: 5 }); // its session ends with its connection
    await end(away, passing);
    await eventOf(persistentMonitor.events, "$events/clients/p-passing/disconnected");

    // the retained presence a new subscriber gets (in topic order), and nothing else before a marker
    const presenceIs = async (expected: string[]): Promise<void> => {
      const late = await connect(b.url(ns), { clientId: "late", protocolVersion: 5 });
      const got = record(late);
      await late.subscribeAsync(["$events/presence/+", "marker/#"], { qos: 1 });
      await expectOnlyMarker(got, (m) => late.publishAsync("marker/m", m, { qos: 1 }), expected);
      await end(late);
    };
    await presenceIs(["$events/presence/late=online", "$events/presence/p-away=offline", "$events/presence/p-online=online", "$events/presence/pmon=online"]);

    for (const c of [online, persistentMonitor.client]) c.on("error", () => {});
    await b.restart(); // every connection dies with the runtime, without DISCONNECT
    online.end(true);
    persistentMonitor.client.end(true);
    // still there; the connections the restart cut are offline; "late"'s ended session left no entry
    await presenceIs(["$events/presence/late=online", "$events/presence/p-away=offline", "$events/presence/p-online=offline", "$events/presence/pmon=offline"]);

    // the monitor's session kept the disconnected events of the restart for it (QoS 1, offline queue)
    const back = await monitor(b.url(ns), "$events/clients/+/disconnected", { clientId: "pmon", clean: false, properties: { sessionExpiryInterval: 300 } });
    const e = await eventOf(back.events, "$events/clients/p-online/disconnected");
    expect(e.body).toMatchObject({ reason: "server restart", reasonCode: null, keepalive: 0 });
    await end(back.client);
  });
});

describe("across hibernation", () => {
  // CONNECT_TIMEOUT=1: the last alarm comes about 1 s after the last connect, so the object
  // hibernates about 10 s later (see 09-durability).
  let hb: Broker;
  beforeAll(async () => {
    hb = await startBroker({ CONNECT_TIMEOUT: "1" });
  });
  afterAll(() => hb.close());

  test("a wake neither repeats nor loses events", async () => {
    const m = await monitor(hb.url("hib"), "$events/#", { clientId: "hmon", keepalive: 0 });
    await m.client.subscribeAsync("marker/#", { qos: 1 });
    const dev = await RawClient.connect(hb.url("hib"), { clientId: "hdev", protocolVersion: 5, keepalive: 0 });
    await eventOf(m.events, "$events/clients/hdev/connected");
    const idleFrom = Date.now();
    await sleep(12_500); // no events for longer than the object needs to hibernate
    m.got.length = 0;
    await dev.destroy(); // wakes the object: the socket's close is its first event
    const e = await eventOf(m.events, "$events/clients/hdev/disconnected");
    expect(e.body).toMatchObject({ reason: "socket lost", reasonCode: null, keepalive: 0 });
    const entry = m.got.find((x) => x.startsWith("$events/clients/hdev/disconnected="))!;
    await expectOnlyMarker(m.got, (marker) => m.client.publishAsync("marker/m", marker, { qos: 1 }), [entry]);
    // it did hibernate: the object that answered was constructed after the idle time began
    expect(await objectUptime(hb, "hib")).toBeLessThan((Date.now() - idleFrom) / 1000 - 5);
    await end(m.client);
  }, 30_000);
});

describe("Paho interop: success acknowledgements carry no Reason String", () => {
  test("PUBACK 0x10 / 0x00 and PUBREC 0x10 / 0x00 without properties; an error keeps its Reason String", async () => {
    const raw = await RawClient.connect(url(), { clientId: "acks", protocolVersion: 5 });
    raw.send(publishPacket("nobody/listens", "x", { qos: 1, messageId: 1 }));
    const a1 = await raw.next("puback");
    raw.send(publishPacket("nobody/listens", "x", { qos: 2, messageId: 2 }));
    const r1 = await raw.next("pubrec");
    raw.send({ cmd: "pubrel", messageId: 2 });
    await raw.next("pubcomp");
    expect([a1.reasonCode, r1.reasonCode]).toEqual([0x10, 0x10]);
    expect([a1.properties, r1.properties]).toEqual([undefined, undefined]);

    raw.send({ cmd: "subscribe", messageId: 3, subscriptions: [{ topic: "echo", qos: 2 }] });
    await raw.next("suback");
    raw.send(publishPacket("echo", "x", { qos: 1, messageId: 4 }));
    const a2 = await raw.next("puback");
    expect(a2.reasonCode ?? 0).toBe(0);
    expect(a2.properties).toBeUndefined();

    raw.send(publishPacket("$events/x", "x", { qos: 1, messageId: 5 }));
    const refused = await raw.next("puback");
    expect(refused.reasonCode).toBe(0x87);
    expect(refused.properties?.reasonString).toMatch(/not authorized/);
    raw.close();
  });

  test("the bytes: a success PUBACK is at most packet id + reason code + empty property length", async () => {
    const raw = await RawClient.connect(url(), { clientId: "acks-bytes", protocolVersion: 5 });
    const frames = raw.frames.length;
    raw.send(publishPacket("nobody/listens", "x", { qos: 1, messageId: 9 }));
    const ack = await raw.next("puback");
    expect(ack.messageId).toBe(9);
    await until(() => raw.frames.length > frames);
    expect(raw.frames[raw.frames.length - 1]).toBeLessThanOrEqual(6); // 0x40, length, id (2), 0x10, property length 0
    raw.close();
  });
});
