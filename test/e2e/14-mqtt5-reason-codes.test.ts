// MQTT 5 reason codes: on every acknowledgement (§3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1, 3.9.3,
// 3.11.3), on the DISCONNECT the server sends when it closes a connection on purpose (§3.14.2.1),
// and CONNACK for what a CONNECT asks that the broker does not do (enhanced authentication).
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startBroker, connect, collect, end, type Broker } from "./harness";
import { RawClient, publishPacket } from "./raw";
import { inspectBroker, record } from "./inspect";
import { expectOnlyMarker } from "./marker";
import type { IConnectPacket, IDisconnectPacket, IPubackPacket, IPublishPacket, ISubackPacket, IUnsubackPacket } from "mqtt-packet";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker();
});
afterAll(() => broker.close());

const v5 = { protocolVersion: 5 as const };
const raw5 = (clientId: string, more: Partial<IConnectPacket> = {}) => RawClient.handshake(broker.url(), { clientId, clean: true, ...more }, 5);
const publish = publishPacket;

/** Waits for the server's DISCONNECT and the close that must follow it [MQTT-3.14.4-2]. */
async function disconnectedWith(client: RawClient): Promise<IDisconnectPacket> {
  const d = (await client.take("disconnect", 5000)) as IDisconnectPacket;
  await client.closed;
  expect(client.pending()).toEqual([]); // nothing after the DISCONNECT [MQTT-3.14.4-1]
  expect(d.properties?.sessionExpiryInterval).toBeUndefined(); // [MQTT-3.14.2-2]
  return d;
}

describe("acknowledgements", () => {
  test("PUBACK: 0x00 Success with subscribers, 0x10 No matching subscribers without", async () => {
    const sub = await connect(broker.url(), v5);
    await sub.subscribeAsync("rc/puback/has", { qos: 1 });
    const { client } = await raw5("rc-puback");
    client.send(publish("rc/puback/has", "x", { qos: 1, messageId: 1 }));
    expect(((await client.take("puback")) as IPubackPacket).reasonCode ?? 0).toBe(0x00);
    client.send(publish("rc/puback/none", "x", { qos: 1, messageId: 2 }));
    expect(((await client.take("puback")) as IPubackPacket).reasonCode).toBe(0x10);
    await client.end();
    await end(sub);
  });

  test("PUBREC: 0x00 and 0x10; PUBCOMP 0x00; a repeated PUBLISH before PUBREL is acknowledged again [MQTT-4.3.3-10]", async () => {
    const sub = await connect(broker.url(), v5);
    await sub.subscribeAsync("rc/pubrec/has", { qos: 2 });
    const got = collect(sub, 1);
    const { client } = await raw5("rc-pubrec");
    client.send(publish("rc/pubrec/has", "x", { qos: 2, messageId: 1 }));
    expect(((await client.take("pubrec")) as IPubackPacket).reasonCode ?? 0).toBe(0x00);
    client.send(publish("rc/pubrec/has", "x", { qos: 2, messageId: 1, dup: true }));
    expect(((await client.take("pubrec")) as IPubackPacket).reasonCode ?? 0).toBeLessThan(0x80);
    client.send({ cmd: "pubrel", messageId: 1 });
    expect(((await client.take("pubcomp")) as IPubackPacket).reasonCode ?? 0).toBe(0x00);
    expect((await got).length).toBe(1);
    client.send(publish("rc/pubrec/none", "x", { qos: 2, messageId: 2 }));
    expect(((await client.take("pubrec")) as IPubackPacket).reasonCode).toBe(0x10);
    client.send({ cmd: "pubrel", messageId: 2 });
    expect(((await client.take("pubcomp")) as IPubackPacket).reasonCode ?? 0).toBe(0x00);
    await client.end();
    await end(sub);
  });

  test("PUBCOMP 0x92 for a PUBREL with an unknown packet id; PUBREL 0x92 for a PUBREC with one", async () => {
    const { client } = await raw5("rc-0x92");
    client.send({ cmd: "pubrel", messageId: 4242 });
    expect(((await client.take("pubcomp")) as IPubackPacket).reasonCode).toBe(0x92);
    client.send({ cmd: "pubrec", messageId: 4243 });
    expect(((await client.take("pubrel")) as IPubackPacket).reasonCode).toBe(0x92);
    // PUBREL after a completed exchange is unknown too
    client.send(publish("rc/x", "x", { qos: 2, messageId: 7 }));
    await client.take("pubrec");
    client.send({ cmd: "pubrel", messageId: 7 });
    expect(((await client.take("pubcomp")) as IPubackPacket).reasonCode ?? 0).toBe(0x00);
    client.send({ cmd: "pubrel", messageId: 7 });
    expect(((await client.take("pubcomp")) as IPubackPacket).reasonCode).toBe(0x92);
    await client.end();
  });

  test("PUBREL 0x00 for our own QoS 2 send", async () => {
    const { client } = await raw5("rc-pubrel");
    client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "rc/rel", qos: 2 }] });
    await client.take("suback");
    const pub = await connect(broker.url(), v5);
    await pub.publishAsync("rc/rel", "x", { qos: 2 });
    const p = (await client.take("publish")) as IPublishPacket;
    client.send({ cmd: "pubrec", messageId: p.messageId! });
    expect(((await client.take("pubrel")) as IPubackPacket).reasonCode ?? 0).toBe(0x00);
    client.send({ cmd: "pubcomp", messageId: p.messageId! });
    await client.end();
    await end(pub);
  });

  test("[MQTT-3.9.3-1] SUBACK: the granted QoS per filter in order, 0x8F for an invalid filter", async () => {
    const { client } = await raw5("rc-suback");
    client.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [
        { topic: "rc/s/0", qos: 0 },
        { topic: "rc/s/1", qos: 1 },
        { topic: "rc/s/2", qos: 2 },
        { topic: "rc/#/bad", qos: 1 },
        { topic: "rc/s+", qos: 1 },
        { topic: "rc/+/#", qos: 2 },
      ],
    });
    const ack = (await client.take("suback")) as ISubackPacket;
    expect(ack.messageId).toBe(1);
    expect(ack.granted).toEqual([0, 1, 2, 0x8f, 0x8f, 2]);
    await client.end();
  });

  test("[MQTT-3.11.3-1] UNSUBACK: 0x00 Success, 0x11 No subscription existed, 0x8F for an invalid filter", async () => {
    const { client } = await raw5("rc-unsuback");
    client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "rc/u/a", qos: 1 }, { topic: "$share/g/rc/u/b", qos: 1 }] });
    await client.take("suback");
    client.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["rc/u/a", "rc/u/never", "$share/g/rc/u/b", "rc/#/bad", "rc/u/a"] });
    const ack = (await client.take("unsuback")) as IUnsubackPacket;
    expect(ack.messageId).toBe(2);
    expect(ack.granted).toEqual([0x00, 0x11, 0x00, 0x8f, 0x11]);
    await client.end();
  });
});

describe("server DISCONNECT reason codes", () => {
  test("0x8D Keep Alive timeout [MQTT-3.1.2-24]: silent for 1.5 × the keep-alive", async () => {
    const { client } = await raw5("rc-0x8d", { keepalive: 1 });
    const since = Date.now();
    const d = await disconnectedWith(client);
    expect(d.reasonCode).toBe(0x8d);
    expect(Date.now() - since).toBeGreaterThanOrEqual(1200); // 1.5 s after CONNECT, not 1 s
    expect(Date.now() - since).toBeLessThan(5000);
  });

  test("keep-alive is kept by any packet, not only PINGREQ", async () => {
    const { client } = await raw5("rc-alive", { keepalive: 1 });
    for (let i = 0; i < 8; i++) {
      await new Promise((r) => setTimeout(r, 300));
      client.send(publish("rc/alive", "tick"));
    }
    expect(client.pending()).toEqual([]); // 2.4 s without a DISCONNECT
    await client.end();
  });

  test("0x8E Session taken over [MQTT-3.1.4-3]: the old connection is told and closed", async () => {
    const old = await raw5("rc-0x8e");
    const fresh = await raw5("rc-0x8e");
    expect(fresh.connack.reasonCode).toBe(0);
    expect((await disconnectedWith(old.client)).reasonCode).toBe(0x8e);
    await fresh.client.end();
  });

  test("0x8E with a delayed will: the takeover cancels it [MQTT-3.1.2-26]", async () => {
    const w = await connect(broker.url(), v5);
    await w.subscribeAsync("rc/takeover-will", { qos: 0 });
    const will = { topic: "rc/takeover-will", payload: Buffer.from("will"), qos: 0 as const, retain: false, properties: { willDelayInterval: 1 } };
    const props = { sessionExpiryInterval: 60 };
    const old = await raw5("rc-0x8e-will", { will, properties: props });
    const fresh = await RawClient.handshake(broker.url(), { clientId: "rc-0x8e-will", clean: false, properties: props }, 5);
    expect((await disconnectedWith(old.client)).reasonCode).toBe(0x8e);
    const got = record(w);
    const session = (await inspectBroker(broker)).sessions.find((x) => x.clientId === "rc-0x8e-will");
    expect(session).toMatchObject({ connected: true, will: null }); // cancelled, not merely late
    // past the 1 s delay, the marker on the will's topic is the only message
    await expectOnlyMarker(got, (m) => w.publishAsync("rc/takeover-will", m), [], { quietMs: 1600 });
    fresh.client.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    await fresh.client.closed;
    await end(w);
  });

  test("0x81 Malformed Packet: reserved header flags that are not 0010 on SUBSCRIBE [MQTT-3.8.1-1]", async () => {
    const { client } = await raw5("rc-0x81");
    client.sendBytes([0x80, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61, 0x00]); // SUBSCRIBE with flags 0000
    expect((await disconnectedWith(client)).reasonCode).toBe(0x81);
  });

  test("0x81 Malformed Packet: a text WebSocket frame [MQTT-6.0.0-1]", async () => {
    const { client } = await raw5("rc-0x81-text");
    client.ws.send("not binary");
    expect((await disconnectedWith(client)).reasonCode).toBe(0x81);
  });

  test("0x82 Protocol Error: a second CONNECT [MQTT-3.1.0-2]", async () => {
    const { client } = await raw5("rc-0x82");
    client.send({ cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clean: true, clientId: "rc-0x82", keepalive: 0 } as IConnectPacket);
    const d = await disconnectedWith(client);
    expect(d.reasonCode).toBe(0x82);
    expect(d.properties?.reasonString).toBeTruthy();
  });

  test("0x82 Protocol Error: an AUTH packet without an Authentication Method at CONNECT [MQTT-4.12.0-7]", async () => {
    const { client } = await raw5("rc-auth");
    client.send({ cmd: "auth", reasonCode: 0x19, properties: { authenticationMethod: "SCRAM-SHA-1" } });
    expect((await disconnectedWith(client)).reasonCode).toBe(0x82);
  });

  test("0x82 Protocol Error: DISCONNECT raising a Session Expiry of 0 (§3.14.2.2.2)", async () => {
    const { client } = await raw5("rc-expiry");
    client.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 10 } });
    expect((await disconnectedWith(client)).reasonCode).toBe(0x82);
  });
});

describe("CONNECT refusals", () => {
  test("[MQTT-4.12.0-1] an Authentication Method without configured enhanced authentication: CONNACK 0x8C", async () => {
    const { client, connack } = await raw5("rc-0x8c", { properties: { authenticationMethod: "SCRAM-SHA-256", authenticationData: Buffer.from("client-first") } });
    expect(connack.reasonCode).toBe(0x8c);
    expect(connack.sessionPresent).toBe(false); // [MQTT-3.2.2-6]
    expect(connack.properties?.authenticationMethod).toBeUndefined();
    await client.closed; // [MQTT-3.2.2-7]
  });

  test("MQTT.js sees the refusal as a connection error with reason 0x8C", async () => {
    await expect(connect(broker.url(), { ...v5, properties: { authenticationMethod: "KERBEROS" } })).rejects.toMatchObject({ code: 0x8c });
  });

  test.each([
    ["Receive Maximum 0", { receiveMaximum: 0 }],
    ["Maximum Packet Size 0", { maximumPacketSize: 0 }],
  ])("a CONNECT with %s is a Protocol Error: CONNACK 0x82", async (_name, properties) => {
    const { client, connack } = await raw5(`rc-connect-${Object.keys(properties)[0]}`, { properties });
    expect(connack.reasonCode).toBe(0x82);
    await client.closed;
  });
});
