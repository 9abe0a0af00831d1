// Packets the broker sends in one turn leave as one WebSocket frame (MQTT over WebSocket allows
// several packets per frame [MQTT-6.0.0-2]); CONNACK and SUBACK stay alone in theirs.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { IPublishPacket } from "mqtt-packet";
import { startBroker, connect, collect, end, hinted, type Broker } from "./harness";
import { RawClient, publishPacket } from "./raw";

describe("output batching", () => {
  let broker: Broker;
  beforeAll(async () => {
    broker = await startBroker();
  });
  afterAll(() => broker.close());

  test("a frame of three QoS 1 PUBLISH packets is answered by one frame of three PUBACKs", async () => {
    const c = await RawClient.connect(broker.url());
    const before = c.frames.length;
    const frame = Buffer.concat([1, 2, 3].map((id) => c.encode(publishPacket("batch/in", `m${id}`, { qos: 1, messageId: id }))));
    c.sendBytes(frame);
    const acks = [await c.take("puback"), await c.take("puback"), await c.take("puback")];
    expect(acks.map((a) => a.messageId)).toEqual([1, 2, 3]);
    expect(c.frames.slice(before)).toEqual([12]); // 3 × 4 bytes in one frame
    await c.end();
  });

  test("retained messages for a new subscription: SUBACK alone, then the messages together", async () => {
    const pub = await RawClient.connect(broker.url());
    for (const i of [1, 2, 3]) pub.send(publishPacket(`batch/ret/${i}`, `r${i}`, { retain: true, qos: 1, messageId: i }));
    for (let i = 0; i < 3; i++) await pub.take("puback");

    const sub = await RawClient.connect(broker.url());
    const before = sub.frames.length;
    sub.send({ cmd: "subscribe", messageId: 9, subscriptions: [{ topic: "batch/ret/#", qos: 0 }] });
    await sub.take("suback");
    const got: string[] = [];
    for (let i = 0; i < 3; i++) got.push(((await sub.take("publish")) as IPublishPacket).payload.toString());
    expect(got.sort()).toEqual(["r1", "r2", "r3"]);
    expect(sub.frames.length - before).toBe(2);
    expect(sub.frames[before]).toBe(5); // SUBACK
    for (const i of [1, 2, 3]) pub.send(publishPacket(`batch/ret/${i}`, "", { retain: true }));
    await Promise.all([pub.end(), sub.end()]);
  });

  test("a queue drained on reconnect: CONNACK alone, then the queue in one frame, in order", async () => {
    const id = "batch-queue";
    const first = await RawClient.connect(broker.url(), { clientId: id, clean: false });
    first.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "batch/q", qos: 1 }] });
    await first.take("suback");
    await first.end();

    const pub = await RawClient.connect(broker.url());
    for (let i = 1; i <= 20; i++) pub.send(publishPacket("batch/q", `q${i}`, { qos: 1, messageId: i }));
    for (let i = 0; i < 20; i++) await pub.take("puback");

    const again = await RawClient.open(hinted(broker.url(), id)); // to the session's shard at K > 1
    const connack = await again.connect({ clientId: id, clean: false });
    expect(connack).toMatchObject({ cmd: "connack", sessionPresent: true });
    const got: string[] = [];
    for (let i = 0; i < 20; i++) {
      const p = (await again.take("publish")) as IPublishPacket;
      got.push(p.payload.toString());
      again.send({ cmd: "puback", messageId: p.messageId! });
    }
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => `q${i + 1}`));
    expect(again.frames).toHaveLength(2);
    expect(again.frames[0]).toBe(4); // CONNACK
    again.send({ cmd: "disconnect" });
    await Promise.all([again.closed, pub.end()]);
  });

  test("MQTT.js reads a drained queue that arrives as one frame, and listens in time after connectAsync", async () => {
    const id = "batch-mqttjs";
    const first = await connect(broker.url(), { clientId: id, clean: false });
    await first.subscribeAsync("batch/js", { qos: 1 });
    await end(first);
    const pub = await connect(broker.url());
    for (let i = 0; i < 50; i++) await pub.publishAsync("batch/js", `j${i}`, { qos: 1 });

    const again = await connect(broker.url(), { clientId: id, clean: false });
    const got = await collect(again, 50); // attached after the CONNACK was handled
    expect(got.map((m) => m.payload)).toEqual(Array.from({ length: 50 }, (_, i) => `j${i}`));
    await end(again, pub);
  });

  test("a batch is cut at 64 KiB: large bursts leave in bounded frames", async () => {
    const pub = await RawClient.connect(broker.url());
    const body = "x".repeat(1000);
    for (let i = 0; i < 100; i++) pub.send(publishPacket(`batch/big/${i}`, body, { retain: true }));
    pub.send(publishPacket("batch/big-done", "", { qos: 1, messageId: 1 }));
    await pub.take("puback"); // every retained message before it is stored

    const sub = await RawClient.connect(broker.url());
    const before = sub.frames.length;
    sub.send({ cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "batch/big/#", qos: 0 }] });
    await sub.take("suback");
    for (let i = 0; i < 100; i++) await sub.take("publish");
    const frames = sub.frames.slice(before + 1); // after SUBACK's
    expect(frames.length).toBe(2);
    expect(Math.max(...frames)).toBeLessThan(64 * 1024 + 1100);
    for (let i = 0; i < 100; i++) pub.send(publishPacket(`batch/big/${i}`, "", { retain: true }));
    await Promise.all([pub.end(), sub.end()]);
  });
});
