// Publish/subscribe through the real Worker: QoS in both directions, wildcards, the $ rule,
// overlapping subscriptions, UNSUBSCRIBE, mixed protocol versions. SUBACK/UNSUBACK/PUBACK codes
// and the topic names that close the connection run in Node: test/unit/handler-rules.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { IPublishPacket } from "mqtt";
import { startBroker, connect, collect, end, apiPublish, TEST_API_TOKEN, type Broker } from "./harness";
import { record } from "./inspect";
import { expectOnlyMarker, expectOnlyMarkerAll } from "./marker";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker({ API_TOKEN: TEST_API_TOKEN });
});
afterAll(() => broker.close());

const VERSIONS = [4, 5] as const;
let seq = 0;
/** A fresh topic prefix per test, so tests sharing the broker never see each other's messages. */
const fresh = (name: string) => `t${++seq}-${name}`;

describe.each(VERSIONS)("protocol %i", (protocolVersion) => {
  test("every QoS pair: delivered once at min(published QoS, granted QoS) [MQTT-3.8.4-8]", async () => {
    const root = fresh("qos");
    const subs = await Promise.all([0, 1, 2].map(() => connect(broker.url(), { protocolVersion })));
    const granted = await Promise.all(subs.map((s, q) => s.subscribeAsync(`${root}/#`, { qos: q as 0 | 1 | 2 })));
    expect(granted.map((g) => g[0]!.qos)).toEqual([0, 1, 2]);
    const pub = await connect(broker.url(), { protocolVersion });
    const all = subs.map((s) => record(s));
    const got = subs.map((s) => collect(s, 3));
    for (const q of [0, 1, 2] as const) await pub.publishAsync(`${root}/p${q}`, `m${q}`, { qos: q });
    const received = (await Promise.all(got)).map((msgs) => msgs.map((m) => `${m.payload}@${m.packet.qos}`));
    expect(received).toEqual([
      ["m0@0", "m1@0", "m2@0"], // granted 0
      ["m0@0", "m1@1", "m2@1"], // granted 1
      ["m0@0", "m1@1", "m2@2"], // granted 2
    ]);
    // and nothing twice: before a marker on the same path, each got exactly the three
    const three = [0, 1, 2].map((q) => `${root}/p${q}=m${q}`);
    await expectOnlyMarkerAll(all, (m) => pub.publishAsync(`${root}/marker`, m, { qos: 1 }), [three, three, three]);
    await end(pub, ...subs);
  });

  test("messages keep their order and their bytes, including a large binary payload", async () => {
    const topic = fresh("order");
    const sub = await connect(broker.url(), { protocolVersion });
    await sub.subscribeAsync(topic, { qos: 1 });
    const pub = await connect(broker.url(), { protocolVersion });
    const big = Buffer.alloc(200 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    const got = collect(sub, 21);
    for (let i = 0; i < 20; i++) pub.publish(topic, `n${i}`, { qos: (i % 2) as 0 | 1 });
    await pub.publishAsync(topic, big, { qos: 1 });
    const msgs = await got;
    expect(msgs.slice(0, 20).map((m) => m.payload)).toEqual(Array.from({ length: 20 }, (_, i) => `n${i}`));
    expect(Buffer.compare(msgs[20]!.packet.payload as Buffer, big)).toBe(0);
    await end(pub, sub);
  });

  test("wildcards: + is one level (empty allowed), # is the rest and the parent [MQTT-4.7.1-2, 4.7.1-3]", async () => {
    const r = fresh("wild");
    const plus = await connect(broker.url(), { protocolVersion });
    const hash = await connect(broker.url(), { protocolVersion });
    const plusPlus = await connect(broker.url(), { protocolVersion });
    await plus.subscribeAsync(`${r}/+/c`);
    await hash.subscribeAsync(`${r}/a/#`);
    await plusPlus.subscribeAsync("+/+");
    const pub = await connect(broker.url(), { protocolVersion });
    const [gotPlus, gotHash, gotPlusPlus] = [record(plus), record(hash), record(plusPlus)];
    for (const t of [`${r}/a/c`, `${r}//c`, `${r}/a/b/c`, `${r}/a`, `${r}/a/`, `${r}/x/c/d`, `/${r}`]) await pub.publishAsync(t, "m", { qos: 1 });
    // one marker each, on a topic that only that filter matches
    await expectOnlyMarker(gotPlus, (m) => pub.publishAsync(`${r}/marker/c`, m, { qos: 1 }), [`${r}/a/c=m`, `${r}//c=m`]);
    await expectOnlyMarker(gotHash, (m) => pub.publishAsync(`${r}/a/marker/x`, m, { qos: 1 }), [`${r}/a/c=m`, `${r}/a/b/c=m`, `${r}/a=m`, `${r}/a/=m`]);
    await expectOnlyMarker(gotPlusPlus, (m) => pub.publishAsync(`${r}/marker`, m, { qos: 1 }), [`${r}/a=m`, `/${r}=m`]);
    await end(plus, hash, plusPlus, pub);
  });

  test("$ topics are not matched by # or +/... but by $-filters [MQTT-4.7.2-1]", async () => {
    const wild = await connect(broker.url(), { protocolVersion });
    const plusLevel = await connect(broker.url(), { protocolVersion });
    const dollar = await connect(broker.url(), { protocolVersion });
    await wild.subscribeAsync("#");
    await plusLevel.subscribeAsync("+/dollar-test");
    await dollar.subscribeAsync("$test/#");
    const quiet = [wild, plusLevel].map((c) => record(c));
    const got = collect(dollar, 1);
    // MQTT clients may not publish to `$` topics (README "Authentication, ACLs and limits"): the operator's API can
    await apiPublish(broker, "default", { topic: "$test/dollar-test", payload: "d", qos: 1 });
    expect((await got)[0]!.topic).toBe("$test/dollar-test");
    // the same path without the `$`: both filters match the marker, and nothing came before it
    await expectOnlyMarkerAll(quiet, (m) => apiPublish(broker, "default", { topic: "test/dollar-test", payload: m, qos: 1 }));
    await end(wild, plusLevel, dollar);
  });

  test("overlapping subscriptions of one client deliver one copy at the highest QoS [MQTT-3.3.5-1]", async () => {
    const r = fresh("overlap");
    const sub = await connect(broker.url(), { protocolVersion });
    await sub.subscribeAsync({ [`${r}/#`]: { qos: 0 }, [`${r}/+`]: { qos: 2 }, [`${r}/x`]: { qos: 1 } });
    const pub = await connect(broker.url(), { protocolVersion });
    const got = record(sub);
    const packets: IPublishPacket[] = [];
    sub.on("message", (_t, _p, packet) => packets.push(packet));
    // MQTT.js hands a QoS 2 message over at PUBREL: a QoS 1 one right behind it (a shard's link
    // away, at K > 1) could be handed over first, so "two" leaves once "one" arrived
    const first = new Promise((r) => sub.once("message", r));
    await pub.publishAsync(`${r}/x`, "one", { qos: 2 });
    await first;
    await pub.publishAsync(`${r}/x`, "two", { qos: 1 });
    await expectOnlyMarker(got, (m) => pub.publishAsync(`${r}/x`, m, { qos: 0 }), [`${r}/x=one`, `${r}/x=two`]);
    expect(packets.slice(0, 2).map((p) => p.qos)).toEqual([2, 1]);
    await end(sub, pub);
  });

  test("a publisher receives its own message when subscribed (no No Local unless asked)", async () => {
    const topic = fresh("self");
    const c = await connect(broker.url(), { protocolVersion });
    await c.subscribeAsync(topic, { qos: 1 });
    const got = collect(c, 1);
    await c.publishAsync(topic, "me", { qos: 1 });
    expect((await got)[0]!.payload).toBe("me");
    await end(c);
  });

  test("UNSUBSCRIBE stops delivery; UNSUBACK answers with the same packet id [MQTT-3.10.4-4, 3.10.4-5]", async () => {
    const r = fresh("unsub");
    const sub = await connect(broker.url(), { protocolVersion });
    await sub.subscribeAsync([`${r}/a`, `${r}/b`], { qos: 1 });
    const pub = await connect(broker.url(), { protocolVersion });
    const first = collect(sub, 2);
    await pub.publishAsync(`${r}/a`, "1", { qos: 1 });
    await pub.publishAsync(`${r}/b`, "1", { qos: 1 });
    await first;
    await sub.unsubscribeAsync(`${r}/a`);
    const after = record(sub);
    await pub.publishAsync(`${r}/a`, "2", { qos: 1 });
    await pub.publishAsync(`${r}/b`, "2", { qos: 1 });
    await expectOnlyMarker(after, (m) => pub.publishAsync(`${r}/b`, m, { qos: 1 }), [`${r}/b=2`]);
    await end(sub, pub);
  });

});

describe("mixed protocol versions", () => {
  test.each([
    [4, 5],
    [5, 4],
  ] as const)("a protocol %i publisher reaches a protocol %i subscriber", async (pubVersion, subVersion) => {
    const topic = fresh("mixed");
    const sub = await connect(broker.url(), { protocolVersion: subVersion });
    await sub.subscribeAsync(topic, { qos: 2 });
    const pub = await connect(broker.url(), { protocolVersion: pubVersion });
    const got = collect(sub, 2);
    await pub.publishAsync(topic, "q1", { qos: 1 });
    await pub.publishAsync(topic, "q2", { qos: 2 });
    expect((await got).map((m) => `${m.payload}@${m.packet.qos}`)).toEqual(["q1@1", "q2@2"]);
    await end(sub, pub);
  });

  test("MQTT 5 publish properties reach MQTT 5 subscribers [MQTT-3.3.2-17, 3.3.2-20]", async () => {
    const topic = fresh("props");
    const sub = await connect(broker.url(), { protocolVersion: 5 });
    await sub.subscribeAsync(topic, { qos: 1 });
    const pub = await connect(broker.url(), { protocolVersion: 5 });
    const got = collect(sub, 1);
    await pub.publishAsync(topic, "p", {
      qos: 1,
      properties: { contentType: "text/plain", userProperties: { a: "1" }, responseTopic: "reply/here", correlationData: Buffer.from([1, 2, 3]) },
    });
    const props = (await got)[0]!.packet.properties!;
    expect(props.contentType).toBe("text/plain");
    expect(props.userProperties).toEqual({ a: "1" });
    expect(props.responseTopic).toBe("reply/here");
    expect(Buffer.from(props.correlationData!)).toEqual(Buffer.from([1, 2, 3]));
    await end(sub, pub);
  });

});
