// Sessions survive hibernation and runtime restarts; queues are bounded.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startBroker, connect, collect, end, quietFor, SHARDED, type Broker } from "./harness";
import { RawClient, type Packet } from "./raw";
import type { IPublishPacket } from "mqtt-packet";
import { objectUptime } from "./inspect";

describe("restart", () => {
  let broker: Broker;
  beforeAll(async () => {
    broker = await startBroker();
  });
  afterAll(() => broker.close());

  test("queued and in-flight QoS 1 arrive at least once, QoS 2 exactly once, after a restart", async () => {
    const url = broker.url();
    const id = "restart-sub";
    const a = await RawClient.handshake(url, { clientId: id, clean: false });
    a.client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "r/1", qos: 1 }, { topic: "r/2", qos: 2 }] });
    await a.client.take("suback");

    const pub = await RawClient.handshake(url, { clientId: "restart-pub", clean: false });
    const publish = async (topic: string, payload: string, qos: 1 | 2, messageId: number) => {
      pub.client.send({ cmd: "publish", topic, payload: Buffer.from(payload), qos, messageId, dup: false, retain: false });
      await pub.client.take(qos === 1 ? "puback" : "pubrec");
      if (qos === 2) {
        pub.client.send({ cmd: "pubrel", messageId });
        await pub.client.take("pubcomp");
      }
    };
    // In flight to the online subscriber: a1 (no PUBACK), b0 (no PUBREC), b1 (PUBREC sent, no PUBCOMP).
    await publish("r/1", "a1", 1, 1);
    await publish("r/2", "b0", 2, 2);
    await publish("r/2", "b1", 2, 3);
    const first = [(await a.client.take("publish")) as IPublishPacket, (await a.client.take("publish")) as IPublishPacket, (await a.client.take("publish")) as IPublishPacket];
    expect(first.map((p) => p.payload.toString())).toEqual(["a1", "b0", "b1"]);
    a.client.send({ cmd: "pubrec", messageId: first[2]!.messageId! });
    await a.client.take("pubrel");
    await a.client.destroy();
    // Queued while offline.
    await publish("r/1", "a2", 1, 4);
    await publish("r/2", "b2", 2, 5);
    await publish("r/1", "a3", 1, 6);
    await publish("r/2", "b3", 2, 7);
    // The publisher's own inbound QoS 2 is cut between PUBREC and PUBREL by the restart.
    pub.client.send({ cmd: "publish", topic: "r/2", payload: Buffer.from("c1"), qos: 2, messageId: 8, dup: false, retain: false });
    await pub.client.take("pubrec");

    await broker.restart();
    await pub.client.closed;

    const b = await RawClient.handshake(url, { clientId: id, clean: false });
    expect(b.connack.sessionPresent).toBe(true);
    const pub2 = await RawClient.handshake(url, { clientId: "restart-pub", clean: false });
    expect(pub2.connack.sessionPresent).toBe(true);
    pub2.client.send({ cmd: "publish", topic: "r/2", payload: Buffer.from("c1"), qos: 2, messageId: 8, dup: true, retain: false });
    await pub2.client.take("pubrec");
    pub2.client.send({ cmd: "pubrel", messageId: 8 });
    await pub2.client.take("pubcomp");

    // Play a well-behaved QoS 2 receiver (method B: deliver on PUBLISH, dedupe by packet id until PUBREL).
    const delivered: string[] = [];
    const pendingQos2 = new Set<number>();
    const seen: Packet[] = [];
    for (;;) {
      let p: Packet;
      try {
        p = await b.client.take(undefined, 700);
      } catch (e) {
        // 700 ms of silence ends the redelivery; a closed socket is a failure, not silence
        if (b.client.isClosed) throw new Error(`the broker closed the resumed session's socket: ${(e as Error).message}`);
        break;
      }
      seen.push(p);
      if (p.cmd === "publish") {
        const id2 = p.messageId!;
        if (p.qos === 1) {
          delivered.push(p.payload.toString());
          b.client.send({ cmd: "puback", messageId: id2 });
        } else {
          if (!pendingQos2.has(id2)) delivered.push(p.payload.toString());
          pendingQos2.add(id2);
          b.client.send({ cmd: "pubrec", messageId: id2 });
        }
      } else if (p.cmd === "pubrel") {
        pendingQos2.delete(p.messageId!);
        b.client.send({ cmd: "pubcomp", messageId: p.messageId! });
      }
    }
    // and the silence was the end: a PINGREQ's answer is the next packet, nothing came before it
    b.client.send({ cmd: "pingreq" });
    expect((await b.client.take()).cmd).toBe("pingresp");
    // b1 was already received (PUBREC sent): only its PUBREL comes again, never the message.
    expect(seen[0]).toMatchObject({ cmd: "publish", dup: true });
    expect(seen.filter((p) => p.cmd === "pubrel").map((p) => p.messageId)).toContain(first[2]!.messageId);
    const qos1 = delivered.filter((d) => d.startsWith("a"));
    const qos2 = delivered.filter((d) => !d.startsWith("a"));
    expect(new Set(qos1)).toEqual(new Set(["a1", "a2", "a3"]));
    expect(qos2.sort()).toEqual(["b0", "b2", "b3", "c1"]);
    await b.client.end();
    await pub2.client.end();
  });
});

describe("hibernation", () => {
  // Each new socket arms an alarm at its CONNECT timeout, an event that would keep the object
  // awake (with the default 10 s it never hibernated here): CONNECT_TIMEOUT=1 makes the last
  // event about 1 s after the last connect, so the object hibernates at about 11 s.
  let broker: Broker;
  beforeAll(async () => {
    broker = await startBroker({ CONNECT_TIMEOUT: "1" });
  });
  afterAll(() => broker.close());

  test("after the object hibernates, live and offline sessions are intact", async () => {
    const url = broker.url("hib");
    const live = await connect(url, { protocolVersion: 5, clientId: "hib-live", keepalive: 0 });
    await live.subscribeAsync("hib/#", { qos: 1 });
    const off = await connect(url, { protocolVersion: 5, clientId: "hib-off", keepalive: 0, clean: false, properties: { sessionExpiryInterval: 600 } });
    await off.subscribeAsync("hib/#", { qos: 1 });
    await end(off);
    const idleFrom = Date.now();
    // No events (after that alarm) for longer than the ≈10 s the object needs to hibernate.
    await new Promise((r) => setTimeout(r, 12_500));
    const pub = await connect(url, { protocolVersion: 5, keepalive: 0 });
    // it did hibernate: the object that answers now was constructed after the idle time began
    expect(await objectUptime(broker, "hib")).toBeLessThan((Date.now() - idleFrom) / 1000 - 5);
    const got = collect(live, 1);
    await pub.publishAsync("hib/x", "after-hibernation", { qos: 1 });
    expect((await got)[0]!.payload).toBe("after-hibernation");
    const back = await connect(url, { protocolVersion: 5, clientId: "hib-off", keepalive: 0, clean: false, properties: { sessionExpiryInterval: 600 } });
    expect((await collect(back, 1))[0]!.payload).toBe("after-hibernation");
    await end(live, back, pub);
  }, 30_000);
});

describe("queue limits", () => {
  let broker: Broker;
  beforeAll(async () => {
    broker = await startBroker({ MAX_QUEUED_MESSAGES: "5", QUEUE_QOS0: "true" });
  });
  afterAll(() => broker.close());

  // sharded: the publisher's PUBACK means its copy is stored for the subscriber's shard, not applied there: the reconnect can overtake q6, which then arrives live instead of being dropped (seen in the sharded run of 2026-11-28)
  test.skipIf(SHARDED)("at the limit the oldest QoS 0 makes room, then the newest message is dropped", async () => {
    const url = broker.url();
    const sub = await connect(url, { clientId: "limited", clean: false });
    await sub.subscribeAsync("lim/#", { qos: 1 });
    await end(sub);
    const pub = await connect(url);
    for (const p of ["z1", "z2", "z3"]) await pub.publishAsync("lim/t", p, { qos: 0 });
    for (let i = 1; i <= 6; i++) await pub.publishAsync("lim/t", `q${i}`, { qos: 1 });
    const back = await connect(url, { clientId: "limited", clean: false });
    const got = await collect(back, 5);
    expect(got.map((m) => m.payload)).toEqual(["q1", "q2", "q3", "q4", "q5"]);
    expect(await quietFor(back, 500)).toEqual([]); // q6 was dropped, and so were z1..z3
    await end(back, pub);
  });
});

describe("MQTT 3.1.1 persistent session expiry", () => {
  let broker: Broker;
  beforeAll(async () => {
    broker = await startBroker({ MAX_SESSION_EXPIRY: "1" });
  });
  afterAll(() => broker.close());

  test("a clean-session-0 session expires after MAX_SESSION_EXPIRY", async () => {
    const url = broker.url();
    const first = await RawClient.handshake(url, { clientId: "v3-expiry", clean: false });
    expect(first.connack.sessionPresent).toBe(false);
    first.client.send({ cmd: "disconnect" });
    await first.client.closed;
    const leftAt = Date.now();
    const soon = await RawClient.handshake(url, { clientId: "v3-expiry", clean: false });
    expect(soon.connack.sessionPresent).toBe(true); // kept inside the interval
    soon.client.send({ cmd: "disconnect" });
    await soon.client.closed;
    const reconnectedAfter = Date.now();
    // wait past the 1 s expiry, measured from the last disconnect
    await new Promise((r) => setTimeout(r, Math.max(0, 1300 - (Date.now() - reconnectedAfter))));
    const late = await RawClient.handshake(url, { clientId: "v3-expiry", clean: false });
    expect(late.connack.sessionPresent).toBe(false);
    expect(Date.now() - leftAt).toBeGreaterThanOrEqual(1000);
    await late.client.end();
  });
});
