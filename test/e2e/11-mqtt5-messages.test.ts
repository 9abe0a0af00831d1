// MQTT 5 message properties end to end: Message Expiry, Topic Aliases both ways, Subscription
// Identifiers, request/response, User Properties, Payload Format Indicator, Content Type. The
// validation rows (aliases out of range, Subscription Identifier from a client, Payload Format
// Indicator refusals) run in Node: test/unit/handler-rules.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startBroker, connect, collect, end, quietFor, type Broker } from "./harness";
import { RawClient, publishPacket } from "./raw";
import type { IPublishPacket, IDisconnectPacket, IPubackPacket } from "mqtt-packet";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker();
});
afterAll(() => broker.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const v5 = { protocolVersion: 5 as const };
const persistent = (clientId: string) => ({ ...v5, clientId, clean: false, properties: { sessionExpiryInterval: 300 } });
const publish = publishPacket;

describe("Message Expiry Interval", () => {
  test("[MQTT-3.3.2-5] a message queued for an offline session past its expiry is dropped; [MQTT-3.3.2-6] the rest is forwarded with the interval less the wait", async () => {
    const sub = await connect(broker.url(), persistent("exp-offline"));
    await sub.subscribeAsync("exp/offline", { qos: 1 });
    await end(sub);
    const pub = await connect(broker.url(), v5);
    await pub.publishAsync("exp/offline", "short", { qos: 1, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync("exp/offline", "long", { qos: 1, properties: { messageExpiryInterval: 30 } });
    await pub.publishAsync("exp/offline", "forever", { qos: 1 });
    const publishedAt = Date.now();
    await sleep(2100); // time has to pass for anything to expire
    const back = await connect(broker.url(), persistent("exp-offline"));
    const got = await collect(back, 2);
    const waited = Math.floor((Date.now() - publishedAt) / 1000);
    expect(got.map((m) => m.payload)).toEqual(["long", "forever"]);
    const interval = got[0]!.packet.properties!.messageExpiryInterval!;
    expect(interval).toBeLessThanOrEqual(30 - 2); // decremented by the ≥ 2 s it waited
    expect(interval).toBeGreaterThanOrEqual(30 - waited - 1);
    expect(got[1]!.packet.properties?.messageExpiryInterval).toBeUndefined();
    expect(await quietFor(back, 300)).toEqual([]);
    await end(back, pub);
  });

  test("[MQTT-3.3.2-5] a message waiting for a full in-flight window expires there too", async () => {
    const { client } = await RawClient.handshake(broker.url(), { clientId: "exp-window", clean: true, properties: { receiveMaximum: 1 } }, 5);
    client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "exp/window", qos: 1 }] });
    await client.take("suback");
    const pub = await connect(broker.url(), v5);
    await pub.publishAsync("exp/window", "first", { qos: 1 });
    await pub.publishAsync("exp/window", "expires-waiting", { qos: 1, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync("exp/window", "last", { qos: 1, properties: { messageExpiryInterval: 60 } });
    const first = (await client.take("publish")) as IPublishPacket;
    expect(first.payload.toString()).toBe("first");
    await sleep(1500);
    client.send({ cmd: "puback", messageId: first.messageId! });
    const next = (await client.take("publish")) as IPublishPacket;
    expect(next.payload.toString()).toBe("last");
    expect(next.properties!.messageExpiryInterval).toBeLessThanOrEqual(59);
    await client.end();
    await end(pub);
  });

  test("[MQTT-3.3.2-5] a retained message past its expiry is no longer sent; a live one carries the remaining interval", async () => {
    const pub = await connect(broker.url(), v5);
    await pub.publishAsync("exp/ret/short", "short", { qos: 1, retain: true, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync("exp/ret/long", "long", { qos: 1, retain: true, properties: { messageExpiryInterval: 30 } });
    await sleep(2100);
    const sub = await connect(broker.url(), v5);
    const got = collect(sub, 1);
    await sub.subscribeAsync("exp/ret/+", { qos: 1 });
    const [msg] = await got;
    expect(msg!.payload).toBe("long");
    expect(msg!.packet.retain).toBe(true);
    expect(msg!.packet.properties!.messageExpiryInterval).toBeLessThanOrEqual(28);
    expect(await quietFor(sub, 300)).toEqual([]);
    await end(sub, pub);
  });
});

describe("Topic Alias", () => {
  test("[MQTT-3.3.2-12] inbound aliases up to the Topic Alias Maximum we announce are accepted and resolved", async () => {
    const sub = await connect(broker.url(), v5);
    await sub.subscribeAsync("alias/in/#", { qos: 1 });
    const { client, connack } = await RawClient.handshake(broker.url(), { clientId: "alias-in", clean: true }, 5);
    const max = connack.properties!.topicAliasMaximum!;
    expect(max).toBeGreaterThan(0);
    const got = collect(sub, 4);
    client.send(publish("alias/in/a", "set 1", { topic: "alias/in/a", properties: { topicAlias: 1 } }));
    client.send(publish("", "use 1", { properties: { topicAlias: 1 } }));
    client.send(publish("alias/in/b", "set max", { properties: { topicAlias: max } }));
    client.send(publish("", "use max", { qos: 1, messageId: 5, properties: { topicAlias: max } }));
    expect(((await client.take("puback")) as IPubackPacket).reasonCode ?? 0).toBe(0);
    expect((await got).map((m) => `${m.topic}=${m.payload}`)).toEqual(["alias/in/a=set 1", "alias/in/a=use 1", "alias/in/b=set max", "alias/in/b=use max"]);
    // The alias is not forwarded: subscribers see the topic (they did not ask for aliases).
    expect((await got).every((m) => m.packet.properties?.topicAlias === undefined)).toBe(true);
    await client.end();
    await end(sub);
  });

  test("[MQTT-3.3.2-12] an alias can be re-pointed at another topic", async () => {
    const sub = await connect(broker.url(), v5);
    await sub.subscribeAsync("alias/re/#", { qos: 0 });
    const { client } = await RawClient.handshake(broker.url(), { clientId: "alias-re", clean: true }, 5);
    const got = collect(sub, 3);
    client.send(publish("alias/re/one", "1", { properties: { topicAlias: 3 } }));
    client.send(publish("alias/re/two", "2", { properties: { topicAlias: 3 } }));
    client.send(publish("", "3", { properties: { topicAlias: 3 } }));
    const all = await got;
    expect(all.map((m) => `${m.topic}=${m.payload}`)).toEqual(["alias/re/one=1", "alias/re/two=2", "alias/re/two=3"]);
    await client.end();
    await end(sub);
  });

  test("[MQTT-3.3.2-7] aliases do not carry over to a new connection", async () => {
    const a = await RawClient.handshake(broker.url(), { clientId: "alias-carry", clean: false, properties: { sessionExpiryInterval: 60 } }, 5);
    a.client.send(publish("alias/carry", "x", { properties: { topicAlias: 1 } }));
    a.client.send({ cmd: "disconnect", reasonCode: 0 });
    await a.client.closed;
    const b = await RawClient.handshake(broker.url(), { clientId: "alias-carry", clean: false, properties: { sessionExpiryInterval: 0 } }, 5);
    b.client.send(publish("", "y", { properties: { topicAlias: 1 } }));
    expect(((await b.client.take("disconnect")) as IDisconnectPacket).reasonCode).toBe(0x82);
    await b.client.closed;
  });

  test("[MQTT-3.1.2-29] outbound aliases stay within the client's Topic Alias Maximum and replace repeated topics", async () => {
    const { client } = await RawClient.handshake(broker.url(), { clientId: "alias-out", clean: true, properties: { topicAliasMaximum: 2 } }, 5);
    client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "alias/out/#", qos: 1 }] });
    await client.take("suback");
    const pub = await connect(broker.url(), v5);
    const topics = ["a", "a", "b", "c", "a", "c", "b"].map((t) => `alias/out/${t}`);
    for (const [i, t] of topics.entries()) await pub.publishAsync(t, `m${i}`, { qos: i % 2 ? 1 : 0 });
    const seen: { topic: string; alias?: number }[] = [];
    for (let i = 0; i < topics.length; i++) {
      const p = (await client.take("publish")) as IPublishPacket;
      if (p.qos > 0) client.send({ cmd: "puback", messageId: p.messageId! });
      seen.push({ topic: p.topic, alias: p.properties?.topicAlias });
    }
    expect(seen).toEqual([
      { topic: "alias/out/a", alias: 1 }, // first use: topic and alias
      { topic: "", alias: 1 }, // repeat: alias only
      { topic: "alias/out/b", alias: 2 },
      { topic: "alias/out/c", alias: undefined }, // no alias left: the full topic
      { topic: "", alias: 1 },
      { topic: "alias/out/c", alias: undefined },
      { topic: "", alias: 2 },
    ]);
    await client.end();
    await end(pub);
  });

  test("[MQTT-3.1.2-30] no Topic Alias Maximum from the client: no aliases are sent", async () => {
    const { client } = await RawClient.handshake(broker.url(), { clientId: "alias-none", clean: true }, 5);
    client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "alias/none", qos: 0 }] });
    await client.take("suback");
    const pub = await connect(broker.url(), v5);
    for (let i = 0; i < 3; i++) await pub.publishAsync("alias/none", `m${i}`, { qos: 0 });
    for (let i = 0; i < 3; i++) {
      const p = (await client.take("publish")) as IPublishPacket;
      expect(p.topic).toBe("alias/none");
      expect(p.properties?.topicAlias).toBeUndefined();
    }
    await client.end();
    await end(pub);
  });

  test("MQTT.js with topicAliasMaximum resolves our aliases back to the topics", async () => {
    const sub = await connect(broker.url(), { ...v5, properties: { topicAliasMaximum: 4 } });
    await sub.subscribeAsync("alias/js/#", { qos: 1 });
    const pub = await connect(broker.url(), { ...v5, autoUseTopicAlias: true, properties: {} });
    const got = collect(sub, 4);
    for (const t of ["x", "y", "x", "x"]) await pub.publishAsync(`alias/js/${t}`, t, { qos: 1 });
    const msgs = await got;
    expect(msgs.map((m) => m.topic)).toEqual(["alias/js/x", "alias/js/y", "alias/js/x", "alias/js/x"]);
    expect(msgs[2]!.packet.properties?.topicAlias).toBe(1); // it was aliased on the wire
    await end(sub, pub);
  });
});

describe("Subscription Identifiers", () => {
  test("[MQTT-3.3.4-3][MQTT-3.3.4-4] one copy carries the identifiers of every matching subscription", async () => {
    const sub = await connect(broker.url(), v5);
    await sub.subscribeAsync("sid/+", { qos: 1, properties: { subscriptionIdentifier: 1 } });
    await sub.subscribeAsync("sid/#", { qos: 0, properties: { subscriptionIdentifier: 268435455 } });
    await sub.subscribeAsync("sid/x", { qos: 0 }); // no identifier
    const pub = await connect(broker.url(), v5);
    const got = collect(sub, 2);
    await pub.publishAsync("sid/x", "both", { qos: 1 });
    await pub.publishAsync("sid/x/y", "one", { qos: 1 });
    const [both, one] = await got;
    const ids = ([] as number[]).concat(both!.packet.properties!.subscriptionIdentifier as number | number[]);
    expect(ids.sort((a, b) => a - b)).toEqual([1, 268435455]);
    expect(both!.packet.qos).toBe(1); // one copy at the highest QoS [MQTT-3.3.4-2]
    expect(one!.packet.properties!.subscriptionIdentifier).toBe(268435455);
    expect(await quietFor(sub, 300)).toEqual([]);
    await end(sub, pub);
  });

  test("a subscription without an identifier gets none; re-subscribing replaces the identifier [MQTT-3.8.4-3]", async () => {
    const sub = await connect(broker.url(), v5);
    await sub.subscribeAsync("sid2/t", { qos: 0 });
    const pub = await connect(broker.url(), v5);
    let got = collect(sub, 1);
    await pub.publishAsync("sid2/t", "none", { qos: 0 });
    expect((await got)[0]!.packet.properties?.subscriptionIdentifier).toBeUndefined();
    await sub.subscribeAsync("sid2/t", { qos: 0, properties: { subscriptionIdentifier: 42 } });
    got = collect(sub, 1);
    await pub.publishAsync("sid2/t", "42", { qos: 0 });
    expect((await got)[0]!.packet.properties?.subscriptionIdentifier).toBe(42);
    await end(sub, pub);
  });

  test("retained messages sent on subscribe carry the identifier", async () => {
    const pub = await connect(broker.url(), v5);
    await pub.publishAsync("sid3/r", "kept", { qos: 1, retain: true });
    const sub = await connect(broker.url(), v5);
    const got = collect(sub, 1);
    await sub.subscribeAsync("sid3/#", { qos: 1, properties: { subscriptionIdentifier: 9 } });
    expect((await got)[0]!.packet.properties?.subscriptionIdentifier).toBe(9);
    await pub.publishAsync("sid3/r", "", { qos: 1, retain: true });
    await end(sub, pub);
  });

  test("stored with the subscription: messages queued while offline arrive with the identifiers", async () => {
    const sub = await connect(broker.url(), persistent("sid-offline"));
    await sub.subscribeAsync("sid4/#", { qos: 1, properties: { subscriptionIdentifier: 7 } });
    await sub.subscribeAsync("sid4/+/z", { qos: 1, properties: { subscriptionIdentifier: 8 } });
    await end(sub);
    const pub = await connect(broker.url(), v5);
    await pub.publishAsync("sid4/a", "a", { qos: 1 });
    await pub.publishAsync("sid4/b/z", "bz", { qos: 1 });
    const back = await connect(broker.url(), persistent("sid-offline"));
    const got = await collect(back, 2);
    expect(got.map((m) => m.payload)).toEqual(["a", "bz"]);
    expect(got[0]!.packet.properties?.subscriptionIdentifier).toBe(7);
    expect(([] as number[]).concat(got[1]!.packet.properties!.subscriptionIdentifier as number[]).sort()).toEqual([7, 8]);
    await end(back, pub);
  });

  test("a message re-sent with DUP after reconnect keeps its identifier; so does one that waited for the window", async () => {
    const props = { sessionExpiryInterval: 300, receiveMaximum: 1 };
    const a = await RawClient.handshake(broker.url(), { clientId: "sid-dup", clean: true, properties: props }, 5);
    a.client.send({ cmd: "subscribe", messageId: 1, properties: { subscriptionIdentifier: 5 }, subscriptions: [{ topic: "sid5/t", qos: 1 }] });
    await a.client.take("suback");
    const pub = await connect(broker.url(), v5);
    await pub.publishAsync("sid5/t", "in-flight", { qos: 1 });
    await pub.publishAsync("sid5/t", "queued", { qos: 1 });
    const first = (await a.client.take("publish")) as IPublishPacket;
    expect(first.properties?.subscriptionIdentifier).toBe(5);
    await a.client.destroy(); // no PUBACK
    const b = await RawClient.handshake(broker.url(), { clientId: "sid-dup", clean: false, properties: props }, 5);
    const again = (await b.client.take("publish")) as IPublishPacket;
    expect(again.dup).toBe(true);
    expect(again.payload.toString()).toBe("in-flight");
    expect(again.properties?.subscriptionIdentifier).toBe(5);
    b.client.send({ cmd: "puback", messageId: again.messageId! });
    const queued = (await b.client.take("publish")) as IPublishPacket;
    expect(queued.payload.toString()).toBe("queued");
    expect(queued.properties?.subscriptionIdentifier).toBe(5);
    b.client.send({ cmd: "puback", messageId: queued.messageId! });
    b.client.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    await b.client.closed;
    await end(pub);
  });

});

describe("request/response", () => {
  test("[MQTT-3.3.2-15][MQTT-3.3.2-16] Response Topic and Correlation Data are forwarded unchanged, both ways", async () => {
    const responder = await connect(broker.url(), v5);
    await responder.subscribeAsync("rpc/square", { qos: 1 });
    responder.on("message", (_t, payload, packet) => {
      const n = Number(payload.toString());
      const { responseTopic, correlationData } = packet.properties!;
      responder.publish(responseTopic!, String(n * n), { qos: 1, properties: { correlationData } });
    });
    const requester = await connect(broker.url(), v5);
    await requester.subscribeAsync("rpc/replies/requester-1", { qos: 1 });
    const got = collect(requester, 2);
    const ids = [Buffer.from([0xde, 0xad]), Buffer.from("req-2\u0000bin")];
    await requester.publishAsync("rpc/square", "7", { qos: 1, properties: { responseTopic: "rpc/replies/requester-1", correlationData: ids[0] } });
    await requester.publishAsync("rpc/square", "12", { qos: 1, properties: { responseTopic: "rpc/replies/requester-1", correlationData: ids[1] } });
    const replies = await got;
    expect(replies.map((r) => r.payload).sort()).toEqual(["144", "49"]);
    const byPayload = new Map(replies.map((r) => [r.payload, Buffer.from(r.packet.properties!.correlationData!)]));
    expect(byPayload.get("49")).toEqual(ids[0]);
    expect(byPayload.get("144")).toEqual(ids[1]);
    await end(responder, requester);
  });
});

describe("User Properties, Payload Format Indicator, Content Type", () => {
  test("[MQTT-3.3.2-17][MQTT-3.3.2-18][MQTT-3.3.2-4][MQTT-3.3.2-20] forwarded unchanged, user property order and repeats kept", async () => {
    const sub = await connect(broker.url(), v5);
    await sub.subscribeAsync("props/#", { qos: 1 });
    const pub = await connect(broker.url(), v5);
    const got = collect(sub, 2);
    const userProperties = { z: "last-key-first", a: ["1", "2", "1"], "ключ": "значение" };
    await pub.publishAsync("props/a", "{\"ok\":true}", {
      qos: 1,
      properties: { userProperties, payloadFormatIndicator: true, contentType: "application/json; charset=utf-8" },
    });
    await pub.publishAsync("props/b", Buffer.from([0xff, 0x00]), { qos: 0, properties: { payloadFormatIndicator: false, contentType: "application/octet-stream" } });
    const [a, b] = await got;
    expect(a!.packet.properties!.userProperties).toEqual(userProperties);
    expect(Object.keys(a!.packet.properties!.userProperties!)).toEqual(Object.keys(userProperties));
    expect(a!.packet.properties!.payloadFormatIndicator).toBe(true);
    expect(a!.packet.properties!.contentType).toBe("application/json; charset=utf-8");
    expect(b!.packet.properties!.payloadFormatIndicator).toBe(false);
    expect(b!.packet.properties!.contentType).toBe("application/octet-stream");
    await end(sub, pub);
  });

  test("properties survive a stored queue (offline session) unchanged", async () => {
    const sub = await connect(broker.url(), persistent("props-offline"));
    await sub.subscribeAsync("props2/t", { qos: 1 });
    await end(sub);
    const pub = await connect(broker.url(), v5);
    const correlationData = Buffer.from([1, 2, 3, 0, 255]);
    await pub.publishAsync("props2/t", "q", {
      qos: 1,
      properties: { userProperties: { a: ["x", "y"] }, contentType: "text/plain", payloadFormatIndicator: true, responseTopic: "props2/reply", correlationData },
    });
    const back = await connect(broker.url(), persistent("props-offline"));
    const p = (await collect(back, 1))[0]!.packet.properties!;
    expect(p.userProperties).toEqual({ a: ["x", "y"] });
    expect(p.contentType).toBe("text/plain");
    expect(p.payloadFormatIndicator).toBe(true);
    expect(p.responseTopic).toBe("props2/reply");
    expect(Buffer.from(p.correlationData!)).toEqual(correlationData);
    await end(back, pub);
  });

});
