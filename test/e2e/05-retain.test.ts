// Retained messages: stored, replaced, deleted, delivered to new subscriptions with RETAIN set.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startBroker, connect, collect, quietFor, end, apiPublish, TEST_API_TOKEN, SHARDED, type Broker } from "./harness";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker({ API_TOKEN: TEST_API_TOKEN });
});
afterAll(() => broker.close());

let seq = 0;
const fresh = (name: string) => `r${++seq}-${name}`;

describe.each([4, 5] as const)("protocol %i", (protocolVersion) => {
  const client = () => connect(broker.url(), { protocolVersion });

  test("a new subscription gets the retained message with RETAIN set [MQTT-3.3.1-6]", async () => {
    const topic = fresh("basic");
    const pub = await client();
    await pub.publishAsync(topic, "kept", { qos: 1, retain: true });
    const sub = await client();
    const got = collect(sub, 1);
    await sub.subscribeAsync(topic, { qos: 1 });
    const [m] = await got;
    expect(m!.payload).toBe("kept");
    expect(m!.packet.retain).toBe(true);
    expect(m!.packet.qos).toBe(1);
    await end(pub, sub);
  });

  // sharded: the two retained copies may still be crossing to the subscriber's shard when it subscribes: they then reach the new subscription live, before its retained "new" (the class of the other retained marks here)
  test.skipIf(SHARDED)("a retained message is replaced by the next one on its topic [MQTT-3.3.1-5]", async () => {
    const topic = fresh("replace");
    const pub = await client();
    await pub.publishAsync(topic, "old", { qos: 1, retain: true });
    await pub.publishAsync(topic, "new", { qos: 1, retain: true });
    const sub = await client();
    const got = quietFor(sub, 800);
    await sub.subscribeAsync(topic);
    expect(await got).toEqual([`${topic}=new`]);
    await end(pub, sub);
  });

  // sharded: the QoS 0 retained replacement crosses shards with no acknowledgement to wait for: a subscriber on another shard subscribing at once can still read the older copy (seen in the sharded run of 2026-11-28)
  test.skipIf(SHARDED)("a retained QoS 0 message replaces and is kept too [MQTT-3.3.1-7]", async () => {
    const topic = fresh("qos0");
    const pub = await client();
    await pub.publishAsync(topic, "one", { qos: 1, retain: true });
    await pub.publishAsync(topic, "zero", { qos: 0, retain: true });
    const sub = await client();
    const got = collect(sub, 1);
    await sub.subscribeAsync(topic, { qos: 1 });
    const [m] = await got;
    expect(m!.payload).toBe("zero");
    expect(m!.packet.qos).toBe(0);
    await end(pub, sub);
  });

  test("an empty retained payload deletes the retained message, and is still forwarded live [MQTT-3.3.1-10, 3.3.1-11]", async () => {
    const topic = fresh("delete");
    const pub = await client();
    await pub.publishAsync(topic, "soon-gone", { qos: 1, retain: true });
    const live = await client();
    const liveGot = collect(live, 2);
    await live.subscribeAsync(topic, { qos: 1 });
    await pub.publishAsync(topic, "", { qos: 1, retain: true });
    const liveMsgs = await liveGot;
    expect(liveMsgs.map((m) => m.payload)).toEqual(["soon-gone", ""]);
    const later = await client();
    const laterGot = quietFor(later, 800);
    await later.subscribeAsync(topic);
    expect(await laterGot).toEqual([]);
    await end(pub, live, later);
  });

  test("live forwarding clears RETAIN [MQTT-3.3.1-9]; MQTT 5 Retain As Published keeps it [MQTT-3.3.1-13]", async () => {
    const topic = fresh("live");
    const sub = await client();
    await sub.subscribeAsync(topic, { qos: 1 });
    const rap = protocolVersion === 5 ? await client() : undefined;
    await rap?.subscribeAsync(topic, { qos: 1, rap: true });
    const pub = await client();
    const got = collect(sub, 1);
    const gotRap = rap ? collect(rap, 1) : undefined;
    await pub.publishAsync(topic, "now", { qos: 1, retain: true });
    const [m] = await got;
    expect(m!.payload).toBe("now");
    expect(m!.packet.retain).toBe(false);
    if (gotRap) expect((await gotRap)[0]!.packet.retain).toBe(true);
    await end(sub, pub, rap);
  });

  test("retained delivery uses min(retained QoS, granted QoS)", async () => {
    const topic = fresh("minqos");
    const pub = await client();
    await pub.publishAsync(topic, "two", { qos: 2, retain: true });
    const subs = await Promise.all([client(), client(), client()]);
    const got = subs.map((s) => collect(s, 1));
    await Promise.all(subs.map((s, q) => s.subscribeAsync(topic, { qos: q as 0 | 1 | 2 })));
    expect((await Promise.all(got)).map((m) => m[0]!.packet.qos)).toEqual([0, 1, 2]);
    await end(pub, ...subs);
  });

  test("a wildcard subscription gets every matching retained message, `a/#` includes `a` [MQTT-4.7.1-2]", async () => {
    const r = fresh("wild");
    const pub = await client();
    for (const t of [r, `${r}/x`, `${r}/x/y`, `${r}x`, `${r}/😀`, `${r}/日本`]) await pub.publishAsync(t, `at ${t}`, { qos: 1, retain: true });
    const hash = await client();
    const hashGot = quietFor(hash, 1000);
    await hash.subscribeAsync(`${r}/#`);
    expect((await hashGot).sort()).toEqual([r, `${r}/x`, `${r}/x/y`, `${r}/😀`, `${r}/日本`].map((t) => `${t}=at ${t}`).sort());
    const plus = await client();
    const plusGot = quietFor(plus, 1000);
    await plus.subscribeAsync(`${r}/+`);
    expect((await plusGot).sort()).toEqual([`${r}/x`, `${r}/😀`, `${r}/日本`].map((t) => `${t}=at ${t}`).sort());
    await end(pub, hash, plus);
  });

  test("retained $ topics are not sent to a # subscription [MQTT-4.7.2-1]", async () => {
    const topic = `$${fresh("dollar")}/status`;
    // MQTT clients may not publish to `$` topics (README "Authentication, ACLs and limits"): the operator's API can
    await apiPublish(broker, "default", { topic, payload: "hidden", qos: 1, retain: true });
    const wild = await client();
    const got = quietFor(wild, 1000);
    await wild.subscribeAsync("#");
    expect((await got).filter((m) => m.startsWith(topic))).toEqual([]);
    const exact = await client();
    const exactGot = collect(exact, 1);
    await exact.subscribeAsync(`${topic.split("/")[0]}/#`);
    expect((await exactGot)[0]!.payload).toBe("hidden");
    await end(wild, exact);
  });

  // sharded: the retained publish can reach the subscriber's shard after its first SUBSCRIBE and arrive live (retain 0) instead of as retained (flaky)
  test.skipIf(SHARDED)("subscribing again to the same filter re-sends retained messages (retain handling 0) [MQTT-3.8.4-3]", async () => {
    const topic = fresh("resub");
    const pub = await client();
    await pub.publishAsync(topic, "again", { qos: 1, retain: true });
    const sub = await client();
    const got = collect(sub, 2);
    await sub.subscribeAsync(topic, { qos: 1 });
    await sub.subscribeAsync(topic, { qos: 1 });
    expect((await got).map((m) => `${m.payload}:${m.packet.retain}`)).toEqual(["again:true", "again:true"]);
    await end(pub, sub);
  });
});

describe("MQTT 5 retain options", () => {
  test("retain handling 1 sends retained messages only for a new subscription, 2 never [MQTT-3.3.1-10, 3.3.1-11]", async () => {
    const topic = fresh("rh");
    const pub = await connect(broker.url(), { protocolVersion: 5 });
    await pub.publishAsync(topic, "r", { qos: 1, retain: true });
    const rh1 = await connect(broker.url(), { protocolVersion: 5 });
    const got1 = quietFor(rh1, 1000);
    await rh1.subscribeAsync(topic, { qos: 1, rh: 1 });
    await rh1.subscribeAsync(topic, { qos: 1, rh: 1 });
    expect(await got1).toEqual([`${topic}=r`]);
    const rh2 = await connect(broker.url(), { protocolVersion: 5 });
    const got2 = quietFor(rh2, 800);
    await rh2.subscribeAsync(topic, { qos: 1, rh: 2 });
    expect(await got2).toEqual([]);
    await end(pub, rh1, rh2);
  });

  test("retained messages keep their MQTT 5 properties", async () => {
    const topic = fresh("props");
    const pub = await connect(broker.url(), { protocolVersion: 5 });
    await pub.publishAsync(topic, "{}", { qos: 1, retain: true, properties: { contentType: "application/json", userProperties: { v: "1" } } });
    const sub = await connect(broker.url(), { protocolVersion: 5 });
    const got = collect(sub, 1);
    await sub.subscribeAsync(topic);
    const props = (await got)[0]!.packet.properties;
    expect(props?.contentType).toBe("application/json");
    expect(props?.userProperties).toEqual({ v: "1" });
    await end(pub, sub);
  });

  test("a shared subscription gets no retained messages (MQTT 5 §4.8.2)", async () => {
    const topic = fresh("shared");
    const pub = await connect(broker.url(), { protocolVersion: 5 });
    await pub.publishAsync(topic, "r", { qos: 1, retain: true });
    const sub = await connect(broker.url(), { protocolVersion: 5 });
    const got = quietFor(sub, 800);
    await sub.subscribeAsync(`$share/g/${topic}`, { qos: 1 });
    expect(await got).toEqual([]);
    await end(pub, sub);
  });
});
