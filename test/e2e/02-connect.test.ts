// CONNECT and CONNACK through the real Worker: success per protocol version, client identifiers,
// the CONNECT deadline, session takeover. The refusal table (protocol levels, what may come
// before CONNECT, a second CONNECT, CONNECT properties and wills that are refused) runs in Node:
// test/unit/protocol-rules.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import mqtt, { type IClientOptions, type IConnackPacket, type IDisconnectPacket, type MqttClient } from "mqtt";
import { startBroker, connect, collect, end, type Broker } from "./harness";
import { RawClient } from "./raw";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker();
});
afterAll(() => broker.close());

const uid = (p: string) => `${p}-${Math.random().toString(16).slice(2, 10)}`;

/** Connects an MQTT.js client and returns it with its CONNACK. */
function connectWithAck(opts: IClientOptions): Promise<{ client: MqttClient; connack: IConnackPacket }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(broker.url(), { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
    client.once("connect", (connack) => resolve({ client, connack }));
    client.once("error", (e) => {
      client.end(true);
      reject(e);
    });
  });
}

describe("CONNACK on success", () => {
  test("MQTT 3.1.1: return code 0, no session present [MQTT-3.2.2-1]", async () => {
    const raw = await RawClient.open(broker.url(), 4);
    const ack = (await raw.connect({ clientId: uid("ok4") })) as IConnackPacket;
    expect(ack.returnCode).toBe(0);
    expect(ack.sessionPresent).toBe(false);
    raw.close();
  });

  test("MQTT 3.1 (MQIsdp, level 3) is accepted", async () => {
    const raw = await RawClient.open(broker.url(), 3);
    const ack = (await raw.connect({ clientId: uid("ok3") })) as IConnackPacket;
    expect(ack.returnCode).toBe(0);
    raw.send({ cmd: "pingreq" });
    expect((await raw.next()).cmd).toBe("pingresp");
    raw.close();
  });

  test("MQTT 5: reason code 0 and the server's limits as properties", async () => {
    const { client, connack } = await connectWithAck({ protocolVersion: 5, clientId: uid("ok5") });
    expect(connack.reasonCode).toBe(0);
    expect(connack.sessionPresent).toBe(false);
    expect(connack.properties).toMatchObject({
      receiveMaximum: 1024,
      maximumPacketSize: 1024 * 1024,
      topicAliasMaximum: 64,
      retainAvailable: true,
      wildcardSubscriptionAvailable: true,
      sharedSubscriptionAvailable: true,
    });
    expect(connack.properties?.assignedClientIdentifier).toBeUndefined();
    await end(client);
  });
});

describe("client identifiers", () => {
  test("MQTT 3.1.1: empty client id with clean session gets a generated id [MQTT-3.1.3-6]", async () => {
    const a = await RawClient.connect(broker.url(), { protocolVersion: 4, clientId: "" });
    const b = await RawClient.connect(broker.url(), { protocolVersion: 4, clientId: "" });
    // two anonymous clients are two sessions: neither took the other over
    a.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "anon/t", qos: 0 }] });
    await a.next("suback");
    b.send({ cmd: "publish", topic: "anon/t", payload: Buffer.from("hi"), qos: 0, retain: false, dup: false });
    const msg = await a.next("publish");
    expect(msg.payload.toString()).toBe("hi");
    expect(a.isClosed || b.isClosed).toBe(false);
    a.close();
    b.close();
  });

  test("MQTT 5: empty client id → Assigned Client Identifier [MQTT-3.2.2-16]", async () => {
    const { client, connack } = await connectWithAck({ protocolVersion: 5, clientId: "" });
    expect(connack.reasonCode).toBe(0);
    const assigned = connack.properties?.assignedClientIdentifier;
    expect(assigned).toBeTypeOf("string");
    expect(assigned!.length).toBeGreaterThan(0);
    // the assigned id is the session's id: connecting with it takes the session over
    const closed = new Promise<void>((r) => client.once("close", () => r()));
    const again = await connect(broker.url(), { protocolVersion: 5, clientId: assigned });
    await closed;
    await end(again);
  });

});

describe("the CONNECT deadline", () => {
  test("a socket that sends no CONNECT is closed after CONNECT_TIMEOUT", async () => {
    const quick = await startBroker({ CONNECT_TIMEOUT: "1" });
    try {
      const raw = await RawClient.open(quick.url(), 4);
      const closed = await Promise.race([raw.closeFrame, new Promise<null>((r) => setTimeout(() => r(null), 4000))]);
      expect(closed).not.toBeNull();
      expect(closed!.at).toBeGreaterThanOrEqual(900);
      expect(closed!.at).toBeLessThan(3000);
      expect(closed!.reason).toMatch(/CONNECT/);
      // a client that connects in time stays
      const ok = await RawClient.connect(quick.url(), { clientId: "in-time" });
      const quiet = await ok.quietFor(1500);
      expect(quiet).toEqual([]);
      expect(ok.isClosed).toBe(false);
      ok.close();
    } finally {
      await quick.close();
    }
  });
});

describe("session takeover [MQTT-3.1.4-3]", () => {
  test("MQTT 3.1.1: the old connection is closed and its will is published", async () => {
    const id = uid("take4");
    const watcher = await connect(broker.url());
    await watcher.subscribeAsync("takeover4/will");
    const old = await connect(broker.url(), { clientId: id, will: { topic: "takeover4/will", payload: Buffer.from("old-gone"), qos: 1, retain: false } });
    const oldClosed = new Promise<void>((r) => old.once("close", () => r()));
    const will = collect(watcher, 1);
    const fresh = await connect(broker.url(), { clientId: id });
    await oldClosed;
    expect((await will)[0]!.payload).toBe("old-gone");
    // the new connection holds the session and works
    await fresh.subscribeAsync("takeover4/echo");
    const echo = collect(fresh, 1);
    await watcher.publishAsync("takeover4/echo", "fresh");
    expect((await echo)[0]!.payload).toBe("fresh");
    await end(watcher, fresh);
  });

  test("MQTT 5: the old client gets DISCONNECT 0x8E, then its will is published", async () => {
    const id = uid("take5");
    const watcher = await connect(broker.url(), { protocolVersion: 5 });
    await watcher.subscribeAsync("takeover5/will");
    const old = await connect(broker.url(), { protocolVersion: 5, clientId: id, will: { topic: "takeover5/will", payload: Buffer.from("old-gone"), qos: 0, retain: false } });
    const disconnect = new Promise<IDisconnectPacket>((r) => old.once("disconnect", r));
    const oldClosed = new Promise<void>((r) => old.once("close", () => r()));
    const will = collect(watcher, 1);
    const fresh = await connect(broker.url(), { protocolVersion: 5, clientId: id });
    expect((await disconnect).reasonCode).toBe(0x8e);
    await oldClosed;
    expect((await will)[0]!.payload).toBe("old-gone");
    expect(fresh.connected).toBe(true);
    await end(watcher, fresh);
  });

  test("takeover of a raw MQTT 5 connection: exactly one DISCONNECT 0x8E, then the close", async () => {
    const id = uid("take-raw");
    const old = await RawClient.connect(broker.url(), { protocolVersion: 5, clientId: id });
    const fresh = await RawClient.connect(broker.url(), { protocolVersion: 5, clientId: id });
    await old.closedWithin(2000);
    expect(old.packets.map((p) => [p.cmd, (p as IDisconnectPacket).reasonCode])).toEqual([["disconnect", 0x8e]]);
    expect(fresh.isClosed).toBe(false);
    fresh.close();
  });
});
