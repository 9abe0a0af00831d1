// MQTT 5 reason codes that need the real Worker: the QoS 2 flows both ways, the DISCONNECT the
// server sends on a timer (keep-alive) or a takeover, and how MQTT.js sees a refused CONNECT.
// The reason-code tables themselves (SUBACK, UNSUBACK, PUBACK/PUBREC/PUBCOMP codes, DISCONNECT
// for malformed and forbidden packets, CONNACK refusals) run in Node: test/unit/protocol-rules.test.ts
// and test/unit/handler-rules.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startBroker, connect, collect, end, type Broker } from "./harness";
import { RawClient, publishPacket } from "./raw";
import { inspectBroker, record } from "./inspect";
import { expectOnlyMarker } from "./marker";
import type { IConnectPacket, IDisconnectPacket, IPubackPacket, IPublishPacket } from "mqtt-packet";

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

});

describe("CONNECT refusals", () => {
  test("MQTT.js sees the refusal as a connection error with reason 0x8C", async () => {
    await expect(connect(broker.url(), { ...v5, properties: { authenticationMethod: "KERBEROS" } })).rejects.toMatchObject({ code: 0x8c });
  });

});
