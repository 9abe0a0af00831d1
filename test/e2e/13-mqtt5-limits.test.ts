// MQTT 5 limits and what CONNACK announces: flow control (Receive Maximum both ways), Maximum
// Packet Size both ways, Server Keep Alive, Assigned Client Identifier, Response Information,
// Reason Strings, and CONNACK properties that match what the broker does.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startBroker, connect, collect, end, quietFor, type Broker } from "./harness";
import { RawClient, publishPacket } from "./raw";
import type { IConnackPacket, IDisconnectPacket, IPubackPacket, IPublishPacket, ISubackPacket } from "mqtt-packet";

const v5 = { protocolVersion: 5 as const };
const publish = publishPacket;

describe("defaults", () => {
  let broker: Broker;
  beforeAll(async () => {
    broker = await startBroker();
  });
  afterAll(() => broker.close());

  describe("CONNACK properties tell the truth", () => {
    let connack: IConnackPacket;
    let raw: RawClient;
    beforeAll(async () => {
      const r = await RawClient.handshake(broker.url(), { clientId: "connack-props", clean: true }, 5);
      connack = r.connack;
      raw = r.client;
    });
    afterAll(() => raw.end());

    test("the announced limits are the configured defaults", () => {
      expect(connack.reasonCode).toBe(0);
      expect(connack.properties).toMatchObject({ receiveMaximum: 1024, maximumPacketSize: 1048576, topicAliasMaximum: 64 });
      expect(connack.properties?.serverKeepAlive).toBeUndefined(); // MAX_KEEPALIVE 0: the client's value stands
      expect(connack.properties?.assignedClientIdentifier).toBeUndefined();
      expect(connack.properties?.responseInformation).toBeUndefined();
    });

    test("[MQTT-3.2.2-9] Maximum QoS absent (= 2): QoS 2 is really delivered as QoS 2", async () => {
      expect(connack.properties?.maximumQoS ?? 2).toBe(2);
      const sub = await connect(broker.url(), v5);
      await sub.subscribeAsync("truth/qos", { qos: 2 });
      const got = collect(sub, 1);
      raw.send(publish("truth/qos", "q2", { qos: 2, messageId: 1 }));
      await raw.take("pubrec");
      raw.send({ cmd: "pubrel", messageId: 1 });
      await raw.take("pubcomp");
      expect((await got)[0]!.packet.qos).toBe(2);
      await end(sub);
    });

    test("Retain Available: retained messages are really kept", async () => {
      expect(connack.properties?.retainAvailable ?? true).toBe(true);
      raw.send(publish("truth/retain", "kept", { qos: 1, messageId: 2, retain: true }));
      await raw.take("puback");
      const sub = await connect(broker.url(), v5);
      const got = collect(sub, 1);
      await sub.subscribeAsync("truth/retain", { qos: 1 });
      expect((await got)[0]!.packet.retain).toBe(true);
      await sub.publishAsync("truth/retain", "", { qos: 1, retain: true });
      await end(sub);
    });

    test("Wildcard, Subscription Identifier and Shared Subscription Available: each really works", async () => {
      expect(connack.properties?.wildcardSubscriptionAvailable ?? true).toBe(true);
      expect(connack.properties?.subscriptionIdentifiersAvailable ?? true).toBe(true);
      expect(connack.properties?.sharedSubscriptionAvailable ?? true).toBe(true);
      raw.send({
        cmd: "subscribe",
        messageId: 3,
        properties: { subscriptionIdentifier: 77 },
        subscriptions: [
          { topic: "truth/+/w", qos: 1 },
          { topic: "$share/truth/truth/s", qos: 1 },
        ],
      });
      expect(((await raw.take("suback")) as ISubackPacket).granted).toEqual([1, 1]);
      const pub = await connect(broker.url(), v5);
      await pub.publishAsync("truth/x/w", "wild", { qos: 0 });
      await pub.publishAsync("truth/s", "shared", { qos: 0 });
      const a = (await raw.take("publish")) as IPublishPacket;
      const b = (await raw.take("publish")) as IPublishPacket;
      expect([a.payload.toString(), a.properties?.subscriptionIdentifier]).toEqual(["wild", 77]);
      expect([b.payload.toString(), b.properties?.subscriptionIdentifier]).toEqual(["shared", 77]);
      await end(pub);
    });
  });

  test("[MQTT-3.2.2-16] an empty client id gets an Assigned Client Identifier, unique, that works as the client id", async () => {
    const a = await RawClient.handshake(broker.url(), { clientId: "", clean: true }, 5);
    const b = await RawClient.handshake(broker.url(), { clientId: "", clean: true }, 5);
    const idA = a.connack.properties!.assignedClientIdentifier!;
    const idB = b.connack.properties!.assignedClientIdentifier!;
    expect(idA.length).toBeGreaterThan(0);
    expect(idA).not.toBe(idB);
    // It is the session's id: No Local recognizes it, and a takeover by it reaches the connection.
    a.client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "assigned/t", qos: 0, nl: true }] });
    await a.client.take("suback");
    a.client.send(publish("assigned/t", "own"));
    await expect(a.client.take("publish", 300)).rejects.toThrow(/timed out/);
    const c = await RawClient.handshake(broker.url(), { clientId: idA, clean: true }, 5);
    expect(((await a.client.take("disconnect")) as IDisconnectPacket).reasonCode).toBe(0x8e);
    await Promise.all([b.client.end(), c.client.end()]);
  });

  test("[MQTT-3.1.2-31] Response Information is not sent when RESPONSE_INFORMATION_PREFIX is not configured", async () => {
    const { client, connack } = await RawClient.handshake(broker.url(), { clientId: "no-resp-info", clean: true, properties: { requestResponseInformation: true } }, 5);
    expect(connack.properties?.responseInformation).toBeUndefined();
    await client.end();
  });

  test("[MQTT-3.3.4-9] the client's Receive Maximum caps unacknowledged QoS 1/2 sends; the rest flows as acks arrive", async () => {
    const { client } = await RawClient.handshake(broker.url(), { clientId: "rm-client", clean: true, properties: { receiveMaximum: 2 } }, 5);
    client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "rm/t", qos: 2 }] });
    await client.take("suback");
    const pub = await connect(broker.url(), v5);
    for (let i = 0; i < 6; i++) await pub.publishAsync("rm/t", `m${i}`, { qos: (i % 2 ? 2 : 1) as 1 | 2 });
    const first = [(await client.take("publish")) as IPublishPacket, (await client.take("publish")) as IPublishPacket];
    expect(first.map((p) => p.payload.toString())).toEqual(["m0", "m1"]);
    await expect(client.take("publish", 400)).rejects.toThrow(/timed out/); // the window is full
    // [MQTT-3.3.4-10] other packets are not held back by a full window
    client.send({ cmd: "pingreq" });
    await client.take("pingresp", 1000);
    client.send({ cmd: "puback", messageId: first[0]!.messageId! }); // one slot frees …
    const third = (await client.take("publish")) as IPublishPacket;
    expect(third.payload.toString()).toBe("m2"); // … for exactly one more
    await expect(client.take("publish", 300)).rejects.toThrow(/timed out/);
    // QoS 2 holds its slot until PUBCOMP, not PUBREC
    client.send({ cmd: "pubrec", messageId: first[1]!.messageId! });
    await client.take("pubrel");
    await expect(client.take("publish", 300)).rejects.toThrow(/timed out/);
    client.send({ cmd: "pubcomp", messageId: first[1]!.messageId! });
    const rest: string[] = [];
    let last = third;
    for (let i = 0; i < 3; i++) {
      if (last.qos === 1) client.send({ cmd: "puback", messageId: last.messageId! });
      else client.send({ cmd: "pubrec", messageId: last.messageId!, reasonCode: 0x80 }); // a refusal frees the slot too
      last = (await client.take("publish")) as IPublishPacket;
      rest.push(last.payload.toString());
    }
    expect(rest).toEqual(["m3", "m4", "m5"]);
    await client.end();
    await end(pub);
  });

  test("[MQTT-3.1.2-27][MQTT-3.1.2-28] a PUBLISH larger than the client's Maximum Packet Size is dropped for it, as if delivered", async () => {
    const { client } = await RawClient.handshake(broker.url(), { clientId: "mps-client", clean: true, properties: { maximumPacketSize: 128, receiveMaximum: 1 } }, 5);
    client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "mps/t", qos: 1 }] });
    await client.take("suback");
    const big = await connect(broker.url(), v5); // an unlimited subscriber still gets everything
    await big.subscribeAsync("mps/t", { qos: 1 });
    const bigGot = collect(big, 3);
    const pub = await connect(broker.url(), v5);
    await pub.publishAsync("mps/t", "x".repeat(200), { qos: 1 });
    await pub.publishAsync("mps/t", "y".repeat(200), { qos: 0 });
    await pub.publishAsync("mps/t", "small", { qos: 1 });
    // Receive Maximum 1: had the big QoS 1 message taken the slot, "small" could not come.
    const p = (await client.take("publish")) as IPublishPacket;
    expect(p.payload.toString()).toBe("small");
    expect((await bigGot).map((m) => m.payload.length)).toEqual([200, 200, 5]);
    await expect(client.take("publish", 300)).rejects.toThrow(/timed out/);
    await client.end();
    await end(big, pub);
  });

  test("[MQTT-3.4.2-2] a Reason String is left out rather than exceed the client's Maximum Packet Size", async () => {
    const bad = Buffer.from([0xc3, 0x28]);
    const invalid = (client: RawClient) => client.send(publish("mps/reason", bad, { qos: 1, messageId: 1, properties: { payloadFormatIndicator: true } }));
    const roomy = await RawClient.handshake(broker.url(), { clientId: "mps-reason-roomy", clean: true }, 5);
    invalid(roomy.client);
    const withReason = (await roomy.client.take("puback")) as IPubackPacket;
    expect(withReason.reasonCode).toBe(0x99);
    const full = 2 + withReason.length!; // fixed header + remaining length (< 128 here)
    expect(withReason.properties?.reasonString).toBeTruthy();
    // A maximum that fits CONNACK and a bare PUBACK, but not the PUBACK with its reason string.
    const maximumPacketSize = 2 + roomy.connack.length!;
    expect(maximumPacketSize).toBeLessThan(full);
    const tight = await RawClient.handshake(broker.url(), { clientId: "mps-reason-tight", clean: true, properties: { maximumPacketSize } }, 5);
    invalid(tight.client);
    const bare = (await tight.client.take("puback")) as IPubackPacket;
    expect(bare.reasonCode).toBe(0x99);
    expect(bare.properties?.reasonString).toBeUndefined();
    await roomy.client.end();
    await tight.client.end();
  });

  test("Reason Strings explain refusals; [MQTT-3.1.2-32] Request Problem Information 0 keeps them off acknowledgements", async () => {
    const bad = Buffer.from([0xc3, 0x28]);
    const invalid = (client: RawClient) => client.send(publish("rs/t", bad, { qos: 1, messageId: 1, properties: { payloadFormatIndicator: true } }));
    const asks = await RawClient.handshake(broker.url(), { clientId: "rs-default", clean: true }, 5);
    invalid(asks.client);
    expect(((await asks.client.take("puback")) as IPubackPacket).properties?.reasonString).toMatch(/UTF-8/);
    const quiet = await RawClient.handshake(broker.url(), { clientId: "rs-off", clean: true, properties: { requestProblemInformation: false } }, 5);
    invalid(quiet.client);
    const ack = (await quiet.client.take("puback")) as IPubackPacket;
    expect(ack.reasonCode).toBe(0x99);
    expect(ack.properties?.reasonString).toBeUndefined();
    // A DISCONNECT may still explain itself
    quiet.client.send({ cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "$share/g/rs", qos: 0, nl: true }] });
    const d = (await quiet.client.take("disconnect")) as IDisconnectPacket;
    expect(d.reasonCode).toBe(0x82);
    expect(d.properties?.reasonString).toMatch(/No Local/);
    await asks.client.end();
  });
});

describe("configured limits", () => {
  let broker: Broker;
  beforeAll(async () => {
    broker = await startBroker({
      RECEIVE_MAXIMUM: "2",
      MAX_PACKET_SIZE: "512",
      TOPIC_ALIAS_MAXIMUM: "3",
      MAX_KEEPALIVE: "1",
      MAX_SESSION_EXPIRY: "100",
      RESPONSE_INFORMATION_PREFIX: "replies/",
    });
  });
  afterAll(() => broker.close());

  test("CONNACK announces the configured Receive Maximum, Maximum Packet Size, Topic Alias Maximum and the capped Session Expiry", async () => {
    const { client, connack } = await RawClient.handshake(broker.url(), { clientId: "cfg-connack", clean: true, keepalive: 1, properties: { sessionExpiryInterval: 1000 } }, 5);
    expect(connack.properties).toMatchObject({ receiveMaximum: 2, maximumPacketSize: 512, topicAliasMaximum: 3, sessionExpiryInterval: 100 });
    await client.end();
  });

  test("[MQTT-3.2.2-21][MQTT-3.2.2-22] Server Keep Alive: a longer or zero keep-alive is replaced by MAX_KEEPALIVE, and enforced", async () => {
    for (const [keepalive, expected] of [
      [60, 1],
      [0, 1],
      [1, undefined],
    ] as const) {
      const { client, connack } = await RawClient.handshake(broker.url(), { clientId: `ska-${keepalive}`, clean: true, keepalive }, 5);
      expect(connack.properties?.serverKeepAlive).toBe(expected);
      await client.end();
    }
    // Asked for 60 s, told 1 s: silent for longer than 1.5 s, it is disconnected with 0x8D.
    const { client } = await RawClient.handshake(broker.url(), { clientId: "ska-enforced", clean: true, keepalive: 60 }, 5);
    const since = Date.now();
    const d = (await client.take("disconnect", 5000)) as IDisconnectPacket;
    expect(d.reasonCode).toBe(0x8d);
    expect(Date.now() - since).toBeGreaterThanOrEqual(1200); // 1.5 × 1 s, not 60 s
    await client.closed;
  });

  test("Response Information is RESPONSE_INFORMATION_PREFIX + client id, only when requested", async () => {
    const asked = await RawClient.handshake(broker.url(), { clientId: "resp-info", clean: true, keepalive: 1, properties: { requestResponseInformation: true } }, 5);
    expect(asked.connack.properties?.responseInformation).toBe("replies/resp-info");
    const notAsked = await RawClient.handshake(broker.url(), { clientId: "resp-info-2", clean: true, keepalive: 1 }, 5);
    expect(notAsked.connack.properties?.responseInformation).toBeUndefined();
    await asked.client.end();
    await notAsked.client.end();
  });

  test("[MQTT-3.3.2-12] aliases up to the configured maximum work; one above gets 0x94", async () => {
    const sub = await connect(broker.url(), { ...v5, keepalive: 1 });
    await sub.subscribeAsync("cfg/alias", { qos: 0 });
    const { client } = await RawClient.handshake(broker.url(), { clientId: "cfg-alias", clean: true, keepalive: 1 }, 5);
    const got = collect(sub, 1);
    client.send(publish("cfg/alias", "3", { properties: { topicAlias: 3 } }));
    await got;
    client.send(publish("cfg/alias", "4", { properties: { topicAlias: 4 } }));
    expect(((await client.take("disconnect")) as IDisconnectPacket).reasonCode).toBe(0x94);
    await client.closed;
    await end(sub);
  });

  test("a client exceeding our Receive Maximum with QoS 2 gets DISCONNECT 0x93; the excess message is not delivered", async () => {
    const sub = await connect(broker.url(), { ...v5, keepalive: 1 });
    await sub.subscribeAsync("cfg/rm", { qos: 2 });
    const got = collect(sub, 3);
    const { client } = await RawClient.handshake(broker.url(), { clientId: "cfg-rm", clean: true, keepalive: 1 }, 5);
    for (const id of [1, 2]) {
      client.send(publish("cfg/rm", `m${id}`, { qos: 2, messageId: id }));
      await client.take("pubrec"); // no PUBREL: still unacknowledged for the broker
    }
    // QoS 1 is acknowledged at once, so it never counts against the maximum
    client.send(publish("cfg/rm", "q1", { qos: 1, messageId: 9 }));
    await client.take("puback");
    client.send(publish("cfg/rm", "m3", { qos: 2, messageId: 3 }));
    const d = (await client.take("disconnect")) as IDisconnectPacket;
    expect(d.reasonCode).toBe(0x93);
    await client.closed;
    expect((await got).map((m) => m.payload).sort()).toEqual(["m1", "m2", "q1"]);
    expect(await quietFor(sub, 300)).toEqual([]); // no m3
    await end(sub);
  });

  test("a packet larger than our Maximum Packet Size gets DISCONNECT 0x95 and is not routed", async () => {
    const sub = await connect(broker.url(), { ...v5, keepalive: 1 });
    await sub.subscribeAsync("cfg/mps", { qos: 0 });
    const { client } = await RawClient.handshake(broker.url(), { clientId: "cfg-mps", clean: true, keepalive: 1 }, 5);
    const got = collect(sub, 1);
    client.send(publish("cfg/mps", "x".repeat(400)));
    expect((await got)[0]!.payload.length).toBe(400); // just under: fine
    client.send(publish("cfg/mps", "x".repeat(600)));
    expect(((await client.take("disconnect")) as IDisconnectPacket).reasonCode).toBe(0x95);
    await client.closed;
    expect(await quietFor(sub, 300)).toEqual([]);
    await end(sub);
  });
});

describe("MIN_KEEPALIVE: fewer PINGREQs, each a billed wake-up", () => {
  let broker: Broker;
  beforeAll(async () => {
    broker = await startBroker({ MIN_KEEPALIVE: "2" });
  });
  afterAll(() => broker.close());

  test("an MQTT 5 keep-alive below the minimum is raised by Server Keep Alive; 0 and longer ones stand", async () => {
    for (const [keepalive, expected] of [
      [1, 2],
      [0, undefined],
      [2, undefined],
      [60, undefined],
    ] as const) {
      const { client, connack } = await RawClient.handshake(broker.url(), { clientId: `min-ka-${keepalive}`, clean: true, keepalive }, 5);
      expect(connack.properties?.serverKeepAlive).toBe(expected);
      await client.end();
    }
  });

  test("the raised keep-alive is the one enforced: asked 1 s, told 2 s, closed after 3 s of silence, not 1.5 s", async () => {
    const { client } = await RawClient.handshake(broker.url(), { clientId: "min-ka-enforced", clean: true, keepalive: 1 }, 5);
    const since = Date.now();
    const d = (await client.take("disconnect", 6000)) as IDisconnectPacket;
    expect(d.reasonCode).toBe(0x8d);
    expect(Date.now() - since).toBeGreaterThanOrEqual(2900); // 1.5 × 2 s
    await client.closed;
  });

  test("an MQTT 3.1.1 client cannot be told: its own keep-alive stands and is enforced", async () => {
    const { client, connack } = await RawClient.handshake(broker.url(), { clientId: "min-ka-v4", clean: true, keepalive: 1 }, 4);
    expect(connack.returnCode).toBe(0);
    const since = Date.now();
    await client.closed;
    const elapsed = Date.now() - since;
    expect(elapsed).toBeGreaterThanOrEqual(1400);
    expect(elapsed).toBeLessThan(2900);
  });
});
