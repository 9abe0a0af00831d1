// Nothing lost, nothing twice: the reliability defects of the review, as real clients over real
// WebSockets see them against the worker in workerd (test/model has the same on the core, and a
// model that searches for more).
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type * as mqttPacket from "mqtt-packet";
import { startBroker, connect, collect, end, SHARDED, type Broker } from "./harness";
import { RawClient } from "./raw";
import { inspectBroker, record, sleep } from "./inspect";
import { expectOnlyMarker } from "./marker";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker({ ACL_DEFAULT: JSON.stringify({ subscribe: ["ok/#", "t/#", "sh/#", "ret/#", "q/#"] }), MAX_QUEUED_MESSAGES: "3", MAX_SESSIONS: "20", MAX_PUBLISH_RATE: "0" });
});
afterAll(() => broker.close());

const persistent = (clientId: string, more: Partial<mqttPacket.IConnectPacket> = {}) =>
  RawClient.connect(broker.url(), { protocolVersion: 5, clientId, clean: false, properties: { sessionExpiryInterval: 3600 }, ...more });

async function subscribe(c: RawClient, topic: string, qos: 0 | 1 | 2 = 1): Promise<void> {
  c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic, qos }] });
  await c.next("suback");
}

const publishes = async (c: RawClient, n: number) => {
  const got: mqttPacket.IPublishPacket[] = [];
  for (let i = 0; i < n; i++) got.push((await c.take("publish")) as mqttPacket.IPublishPacket);
  return got;
};
const text = (p: mqttPacket.IPublishPacket) => Buffer.from(p.payload as Buffer).toString();

// sharded: a lost member's unacknowledged shared message is re-routed only to members on its own shard
test.skipIf(SHARDED)("a shared member's unacknowledged QoS 1 message goes to the other member, and again after a restart", async () => {
  const a = await persistent("share-a");
  await subscribe(a, "$share/g/sh/x");
  const b = await persistent("share-b");
  await subscribe(b, "$share/g/sh/x");
  const pub = await connect(broker.url());
  await pub.publishAsync("sh/x", "m1", { qos: 1 });
  expect(text((await publishes(a, 1))[0]!)).toBe("m1"); // A holds it, unacknowledged
  await a.destroy();
  const [atB] = await publishes(b, 1); // re-routed to B, who does not acknowledge either
  expect([text(atB!), atB!.dup]).toEqual(["m1", false]);
  expect((await inspectBroker(broker)).problems).toEqual([]);

  await broker.restart();
  const b2 = await persistent("share-b");
  const [again] = await publishes(b2, 1);
  expect([text(again!), again!.dup, again!.messageId]).toEqual(["m1", true, atB!.messageId]);
  b2.send({ cmd: "puback", messageId: again!.messageId! });
  expect((await inspectBroker(broker)).problems).toEqual([]);
  await Promise.all([b2.end(), end(pub)]);
});

test("an offline session queues only what it may read, with or without a restart in between", async () => {
  for (const restart of [false, true]) {
    const id = `acl-offline-${restart}`;
    const s = await persistent(id);
    await subscribe(s, "#"); // broader than the read ACL: judged per message
    await s.destroy();
    if (restart) await broker.restart();
    const pub = await connect(broker.url());
    for (let i = 0; i < 3; i++) await pub.publishAsync(`secret/${i}`, "no", { qos: 1 });
    await pub.publishAsync("ok/1", "yes", { qos: 1 });
    const back = await persistent(id);
    const [m] = await publishes(back, 1);
    expect(`${m!.topic}=${text(m!)}`).toBe("ok/1=yes"); // not refused as "queue full" behind unreadable ones
    await Promise.all([back.end(), end(pub)]);
  }
});

test("expired messages do not fill an offline queue ahead of a fresh one", async () => {
  const s = await persistent("expiry-q");
  await subscribe(s, "q/t");
  await s.destroy();
  const pub = await connect(broker.url(), { protocolVersion: 5 });
  for (let i = 0; i < 3; i++) await pub.publishAsync("q/t", `old${i}`, { qos: 1, properties: { messageExpiryInterval: 1 } });
  await sleep(1100); // the Message Expiry passes: a deadline, not an event to await
  await pub.publishAsync("q/t", "fresh", { qos: 1 });
  const back = await persistent("expiry-q");
  const [m] = await publishes(back, 1);
  expect(text(m!)).toBe("fresh");
  expect(await back.quietFor(200)).toEqual([]);
  await Promise.all([back.end(), end(pub)]);
});

test("2,500 retained QoS 1 messages all reach a new subscriber, paced by its window", async () => {
  // 2,500 publishes in well under a second (one frame per 250 of them): beyond the default
  // MAX_PUBLISH_RATE, which is off in this file
  const pub = await connect(broker.url());
  const topics = Array.from({ length: 2500 }, (_, i) => `ret/${String(i).padStart(4, "0")}`);
  for (let i = 0; i < topics.length; i += 250) await Promise.all(topics.slice(i, i + 250).map((t) => pub.publishAsync(t, t, { qos: 1, retain: true })));
  const sub = await connect(broker.url(), { protocolVersion: 5, properties: { receiveMaximum: 100 } });
  const got = collect(sub, 2500, 20_000);
  await sub.subscribeAsync("ret/#", { qos: 1 });
  const messages = await got;
  expect(new Set(messages.map((m) => m.payload)).size).toBe(2500);
  expect(messages.every((m) => m.packet.retain && m.packet.qos === 1)).toBe(true);
  const seen = record(sub);
  await expectOnlyMarker(seen, (marker) => pub.publishAsync("ret/zz-marker", marker, { qos: 1 }));
  await end(pub, sub);
});

describe("reconnect re-sends", () => {
  test("each once, with DUP, never more than the new Receive Maximum outstanding", async () => {
    const s = await persistent("resend", { properties: { sessionExpiryInterval: 3600, receiveMaximum: 10 } });
    await subscribe(s, "t/r");
    const pub = await connect(broker.url());
    for (let i = 0; i < 6; i++) await pub.publishAsync("t/r", `m${i}`, { qos: 1 });
    expect((await publishes(s, 6)).map(text)).toEqual(["m0", "m1", "m2", "m3", "m4", "m5"]);
    await s.destroy(); // none acknowledged
    const back = await persistent("resend", { properties: { sessionExpiryInterval: 3600, receiveMaximum: 2 } });
    const first = await publishes(back, 2);
    expect(first.map((p) => [text(p), p.dup])).toEqual([
      ["m0", true],
      ["m1", true],
    ]);
    expect(await back.quietFor(300)).toEqual([]); // the window is full
    // each acknowledgement lets exactly one more re-send out
    const rest: string[] = [];
    const window = first;
    for (let i = 0; i < 4; i++) {
      back.send({ cmd: "puback", messageId: window.shift()!.messageId! });
      const [q] = await publishes(back, 1);
      rest.push(`${text(q!)}${q!.dup ? "+dup" : ""}`);
      window.push(q!);
    }
    expect(rest).toEqual(["m2+dup", "m3+dup", "m4+dup", "m5+dup"]);
    expect(await back.quietFor(200)).toEqual([]); // nothing twice
    await Promise.all([back.end(), end(pub)]);
  });

  test("a message too large for the new Maximum Packet Size is dropped without sending queued ones twice", async () => {
    const s = await persistent("resend-big", { properties: { sessionExpiryInterval: 3600, receiveMaximum: 2 } });
    await subscribe(s, "t/big");
    const pub = await connect(broker.url());
    await pub.publishAsync("t/big", "x".repeat(1000), { qos: 1 });
    await pub.publishAsync("t/big", "small1", { qos: 1 });
    await pub.publishAsync("t/big", "small2", { qos: 1 }); // waits for the window
    await publishes(s, 2);
    await s.destroy();
    const back = await persistent("resend-big", { properties: { sessionExpiryInterval: 3600, receiveMaximum: 2, maximumPacketSize: 500 } });
    const got = await publishes(back, 2);
    expect(got.map((p) => [text(p), p.dup])).toEqual([
      ["small1", true],
      ["small2", false],
    ]);
    expect(await back.quietFor(300)).toEqual([]);
    await Promise.all([back.end(), end(pub)]);
  });
});

// sharded: the limit is counted per shard, not per namespace
test.skipIf(SHARDED)("MAX_SESSIONS: a new persistent session over the limit is refused, existing ones come back", async () => {
  const before = (await inspectBroker(broker)).sessions.filter((s) => s.persistent).length;
  const ids: string[] = [];
  for (let i = before; i < 20; i++) {
    const id = `fill-${i}`;
    ids.push(id);
    await (await persistent(id)).end();
  }
  const { connack, client } = await RawClient.handshake(broker.url(), { clientId: "one-too-many", clean: false, properties: { sessionExpiryInterval: 60 } }, 5);
  expect(connack.reasonCode).toBe(0x97);
  await client.closed;
  const v3 = await RawClient.handshake(broker.url(), { clientId: "one-too-many-v3", clean: false }, 4);
  expect(v3.connack.returnCode).toBe(3);
  const again = await persistent(ids[0]!);
  await again.end();
  const clean = await RawClient.connect(broker.url(), { protocolVersion: 5, clientId: "clean-one", clean: true });
  await clean.end();
  expect((await inspectBroker(broker)).problems).toEqual([]);
});
