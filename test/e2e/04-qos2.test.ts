// QoS 2 and packet identifiers, driven byte by byte with a raw client: exactly-once inbound,
// the outbound PUBLISH/PUBREC/PUBREL/PUBCOMP flow, and ids never reused while in flight.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { IDisconnectPacket, IPublishPacket, IPubrelPacket } from "mqtt-packet";
import { startBroker, connect, collect, quietFor, end, type Broker } from "./harness";
import { RawClient, publishPacket } from "./raw";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker();
});
afterAll(() => broker.close());

let seq = 0;
const fresh = (name: string) => `q${++seq}-${name}`;

const publish = (topic: string, payload: string, qos: 0 | 1 | 2, messageId?: number, dup = false): IPublishPacket =>
  publishPacket(topic, payload, { qos, messageId, dup });

describe.each([4, 5] as const)("protocol %i", (protocolVersion) => {
  test("inbound QoS 2: a retransmitted PUBLISH (DUP) before PUBREL is not delivered twice [MQTT-4.3.3-10]", async () => {
    const topic = fresh("once");
    const sub = await connect(broker.url(), { protocolVersion });
    await sub.subscribeAsync(topic, { qos: 2 });
    const raw = await RawClient.connect(broker.url(), { protocolVersion });

    const first = collect(sub, 1);
    raw.send(publish(topic, "exactly-once", 2, 10));
    expect((await raw.next("pubrec")).messageId).toBe(10);
    expect((await first).map((m) => m.payload)).toEqual(["exactly-once"]);

    // the client did not see the PUBREC (as far as it knows): it sends the PUBLISH again, with DUP
    const quiet = quietFor(sub, 800);
    raw.send(publish(topic, "exactly-once", 2, 10, true));
    expect((await raw.next("pubrec")).messageId).toBe(10);
    raw.send(publish(topic, "exactly-once", 2, 10, true));
    expect((await raw.next("pubrec")).messageId).toBe(10);
    raw.send({ cmd: "pubrel", messageId: 10 });
    const comp = await raw.next("pubcomp");
    expect(comp.messageId).toBe(10);
    expect((comp as { reasonCode?: number }).reasonCode ?? 0).toBe(0);
    expect(await quiet).toEqual([]);

    // after PUBCOMP the id is free: the same id now carries a new message [MQTT-4.3.3-12]
    const again = collect(sub, 1);
    raw.send(publish(topic, "new-message", 2, 10));
    expect((await raw.next("pubrec")).messageId).toBe(10);
    expect((await again).map((m) => m.payload)).toEqual(["new-message"]);
    raw.send({ cmd: "pubrel", messageId: 10 });
    await raw.next("pubcomp");
    raw.close();
    await end(sub);
  });

  test("inbound QoS 2: several exchanges in flight at once, released in any order", async () => {
    const topic = fresh("interleaved");
    const sub = await connect(broker.url(), { protocolVersion });
    await sub.subscribeAsync(topic, { qos: 2 });
    const raw = await RawClient.connect(broker.url(), { protocolVersion });
    const got = collect(sub, 3);
    for (const id of [1, 2, 3]) raw.send(publish(topic, `m${id}`, 2, id));
    for (const id of [1, 2, 3]) expect((await raw.next("pubrec")).messageId).toBe(id);
    for (const id of [3, 1, 2]) raw.send({ cmd: "pubrel", messageId: id });
    for (const id of [3, 1, 2]) expect((await raw.next("pubcomp")).messageId).toBe(id);
    expect((await got).map((m) => m.payload)).toEqual(["m1", "m2", "m3"]);
    raw.close();
    await end(sub);
  });

  test("outbound QoS 2: PUBLISH → PUBREC → PUBREL → PUBCOMP, no resend after PUBREC [MQTT-4.3.3-1..3]", async () => {
    const topic = fresh("out");
    const raw = await RawClient.connect(broker.url(), { protocolVersion });
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic, qos: 2 }] });
    expect((await raw.next("suback")).granted).toEqual([2]);
    const pub = await connect(broker.url(), { protocolVersion });
    await pub.publishAsync(topic, "two", { qos: 2 });
    const p = (await raw.next("publish")) as IPublishPacket;
    expect(p.qos).toBe(2);
    expect(p.dup).toBe(false);
    expect(p.messageId).toBeGreaterThan(0);
    expect(p.payload.toString()).toBe("two");
    raw.send({ cmd: "pubrec", messageId: p.messageId! });
    const rel = (await raw.next("pubrel")) as IPubrelPacket;
    expect(rel.messageId).toBe(p.messageId);
    raw.send({ cmd: "pubcomp", messageId: p.messageId! });
    expect(await raw.quietFor(500)).toEqual([]);
    raw.close();
    await end(pub);
  });

  test("outbound packet ids are never reused while in flight [MQTT-2.2.1-3]", async () => {
    const topic = fresh("ids");
    const raw = await RawClient.connect(broker.url(), { protocolVersion });
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: `${topic}/#`, qos: 2 }] });
    await raw.next("suback");
    const pub = await connect(broker.url(), { protocolVersion });
    const inFlight = new Map<number, IPublishPacket>();
    const receive = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const p = (await raw.next("publish")) as IPublishPacket;
        expect(p.messageId).toBeGreaterThan(0);
        expect(inFlight.has(p.messageId!), `id ${p.messageId} reused while in flight`).toBe(false);
        inFlight.set(p.messageId!, p);
      }
    };
    for (let i = 0; i < 10; i++) await pub.publishAsync(`${topic}/${i % 2 ? "q1" : "q2"}`, `m${i}`, { qos: (i % 2 ? 1 : 2) as 1 | 2 });
    await receive(10);
    // acknowledge some: QoS 1 with PUBACK, QoS 2 up to PUBREC only (still in flight until PUBCOMP)
    for (const [id, p] of [...inFlight]) {
      if (p.qos === 1 && id % 3 === 0) {
        raw.send({ cmd: "puback", messageId: id });
        inFlight.delete(id);
      } else if (p.qos === 2) {
        raw.send({ cmd: "pubrec", messageId: id });
        expect((await raw.next("pubrel")).messageId).toBe(id);
      }
    }
    for (let i = 0; i < 10; i++) await pub.publishAsync(`${topic}/more`, `n${i}`, { qos: 1 });
    await receive(10);
    expect(inFlight.size).toBeGreaterThanOrEqual(17);
    raw.close();
    await end(pub);
  });
});

describe("inbound flow control", () => {
  test("MQTT 5: more unreleased QoS 2 PUBLISHes than Receive Maximum → DISCONNECT 0x93, the excess not delivered [MQTT-3.3.4-7]", async () => {
    const small = await startBroker({ RECEIVE_MAXIMUM: "2" });
    try {
      const topic = fresh("rm");
      const sub = await connect(small.url(), { protocolVersion: 5 });
      await sub.subscribeAsync(topic, { qos: 2 });
      const raw = await RawClient.open(small.url(), 5);
      const ack = await raw.connect({ clientId: "rm-client" });
      expect((ack as { properties?: { receiveMaximum?: number } }).properties?.receiveMaximum).toBe(2);
      const got = quietFor(sub, 1000);
      for (const id of [1, 2, 3]) raw.send(publish(topic, `m${id}`, 2, id));
      await raw.closedWithin(2000);
      const disconnect = raw.packets.find((p) => p.cmd === "disconnect") as IDisconnectPacket | undefined;
      expect(disconnect?.reasonCode).toBe(0x93);
      expect(await got).toEqual([`${topic}=m1`, `${topic}=m2`]);
      await end(sub);
    } finally {
      await small.close();
    }
  });

  test("MQTT 5: the broker respects the client's Receive Maximum: at most that many unacknowledged QoS 1/2 sends [MQTT-3.3.4-9]", async () => {
    const topic = fresh("client-rm");
    const raw = await RawClient.connect(broker.url(), { protocolVersion: 5, properties: { receiveMaximum: 2 } });
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic, qos: 1 }] });
    await raw.next("suback");
    const pub = await connect(broker.url(), { protocolVersion: 5 });
    for (let i = 0; i < 5; i++) await pub.publishAsync(topic, `m${i}`, { qos: 1 });
    const first = [(await raw.next("publish")) as IPublishPacket, (await raw.next("publish")) as IPublishPacket];
    expect(await raw.quietFor(500)).toEqual([]);
    raw.send({ cmd: "puback", messageId: first[0]!.messageId! });
    const third = (await raw.next("publish")) as IPublishPacket;
    expect([...first, third].map((p) => p.payload.toString())).toEqual(["m0", "m1", "m2"]);
    expect(await raw.quietFor(300)).toEqual([]);
    raw.close();
    await end(pub);
  });
});
