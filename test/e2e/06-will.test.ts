// Will messages: published when a connection ends without DISCONNECT (socket loss, keep-alive
// expiry, takeover, protocol error), never after a normal DISCONNECT; QoS and Retain honoured.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { IClientOptions, MqttClient } from "mqtt";
import { startBroker, connect, collect, quietFor, end, SHARDED, type Broker } from "./harness";
import { RawClient } from "./raw";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker();
});
afterAll(() => broker.close());

let seq = 0;
const fresh = (name: string) => `w${++seq}-${name}`;

const will = (topic: string, payload: string, qos: 0 | 1 | 2 = 0, retain = false): IClientOptions["will"] => ({ topic, payload: Buffer.from(payload), qos, retain });
const closed = (c: MqttClient) => new Promise<void>((r) => c.once("close", () => r()));

async function watch(topic: string, protocolVersion: 4 | 5 = 4, qos: 0 | 1 | 2 = 2): Promise<MqttClient> {
  const w = await connect(broker.url(), { protocolVersion });
  await w.subscribeAsync(topic, { qos });
  return w;
}

describe.each([4, 5] as const)("protocol %i", (protocolVersion) => {
  test("socket loss (no DISCONNECT) publishes the will [MQTT-3.1.2-8]", async () => {
    const topic = fresh("loss");
    const watcher = await watch(topic, protocolVersion);
    const device = await connect(broker.url(), { protocolVersion, will: will(topic, "lost") });
    const got = collect(watcher, 1);
    device.stream.destroy();
    expect((await got)[0]!.payload).toBe("lost");
    device.end(true);
    await end(watcher);
  });

  test("a normal DISCONNECT discards the will [MQTT-3.1.2-10, 3.14.4-3]", async () => {
    const topic = fresh("clean");
    const watcher = await watch(topic, protocolVersion);
    const device = await connect(broker.url(), { protocolVersion, will: will(topic, "should-not-appear") });
    const quiet = quietFor(watcher, 1000);
    const deviceClosed = closed(device);
    await device.endAsync(); // not forced: MQTT.js sends DISCONNECT, then closes
    await deviceClosed;
    expect(await quiet).toEqual([]);
    await end(watcher);
  });

  test("keep-alive expiry publishes the will within 1.5 × keep-alive + 1 s [MQTT-3.1.2-24]", async () => {
    const topic = fresh("ka");
    const watcher = await watch(topic, protocolVersion);
    const raw = await RawClient.open(broker.url(), protocolVersion);
    const got = collect(watcher, 1, 5000);
    const start = Date.now();
    await raw.connect({ keepalive: 1, will: { topic, payload: Buffer.from("timed-out"), qos: 1, retain: false } });
    const [m] = await got;
    const elapsed = Date.now() - start;
    expect(m!.payload).toBe("timed-out");
    expect(elapsed).toBeGreaterThanOrEqual(1500 - 50);
    expect(elapsed).toBeLessThanOrEqual(2500);
    await raw.closedWithin(2000);
    await end(watcher);
  });

  test("session takeover publishes the old connection's will", async () => {
    const topic = fresh("takeover");
    const id = fresh("id");
    const watcher = await watch(topic, protocolVersion);
    const old = await connect(broker.url(), { protocolVersion, clientId: id, will: will(topic, "taken-over") });
    const got = collect(watcher, 1);
    const oldClosed = closed(old);
    const fresh2 = await connect(broker.url(), { protocolVersion, clientId: id });
    expect((await got)[0]!.payload).toBe("taken-over");
    await oldClosed;
    await end(fresh2, watcher);
  });

  test("a protocol error that closes the connection publishes the will [MQTT-3.1.2-8]", async () => {
    const topic = fresh("proto");
    const watcher = await watch(topic, protocolVersion);
    const raw = await RawClient.connect(broker.url(), { protocolVersion, will: { topic, payload: Buffer.from("broke-the-rules"), qos: 0, retain: false } });
    const got = collect(watcher, 1);
    raw.send({ cmd: "connect", protocolId: "MQTT", protocolVersion, clientId: "second", clean: true, keepalive: 0 }); // [MQTT-3.1.0-2]
    expect((await got)[0]!.payload).toBe("broke-the-rules");
    await raw.closedWithin(2000);
    await end(watcher);
  });

  test("malformed bytes that close the connection publish the will", async () => {
    const topic = fresh("garbage");
    const watcher = await watch(topic, protocolVersion);
    const raw = await RawClient.connect(broker.url(), { protocolVersion, will: { topic, payload: Buffer.from("garbled"), qos: 0, retain: false } });
    const got = collect(watcher, 1);
    raw.sendBytes(Uint8Array.from([0x00, 0x00, 0xff]));
    expect((await got)[0]!.payload).toBe("garbled");
    await raw.closedWithin(2000);
    await end(watcher);
  });

  test("will QoS is honoured: delivered at min(will QoS, granted QoS)", async () => {
    const topic = fresh("qos");
    const w2 = await watch(topic, protocolVersion, 2);
    const w0 = await watch(topic, protocolVersion, 0);
    const device = await connect(broker.url(), { protocolVersion, will: will(topic, "q1", 1) });
    const got2 = collect(w2, 1);
    const got0 = collect(w0, 1);
    device.stream.destroy();
    expect((await got2)[0]!.packet.qos).toBe(1);
    expect((await got0)[0]!.packet.qos).toBe(0);
    device.end(true);
    await end(w2, w0);
  });

  test("will Retain is honoured: the will becomes the retained message [MQTT-3.1.2-17]", async () => {
    const topic = fresh("retain");
    const device = await connect(broker.url(), { protocolVersion, will: will(topic, "retained-will", 1, true) });
    const live = await watch(topic, protocolVersion, 1);
    const gotLive = collect(live, 1);
    device.stream.destroy();
    const [l] = await gotLive;
    expect(l!.payload).toBe("retained-will");
    expect(l!.packet.retain).toBe(false); // live forwarding clears RETAIN
    const later = await connect(broker.url(), { protocolVersion });
    const gotLater = collect(later, 1);
    await later.subscribeAsync(topic, { qos: 1 });
    const [r] = await gotLater;
    expect(r!.payload).toBe("retained-will");
    expect(r!.packet.retain).toBe(true);
    device.end(true);
    await end(live, later);
  });

  // sharded: a retained write reaches the other shards over the links after its PUBACK; a subscriber there right after may see the older value (flaky: passes about half the time)
  test.skipIf(SHARDED)("presence: will `offline` retained, `online` retained after connect; a later subscriber sees the truth", async () => {
    const status = `${fresh("device")}/status`;
    const device = await connect(broker.url(), { protocolVersion, will: will(status, "offline", 1, true) });
    await device.publishAsync(status, "online", { qos: 1, retain: true });

    const early = await connect(broker.url(), { protocolVersion });
    const gotEarly = collect(early, 1);
    await early.subscribeAsync(status, { qos: 1 });
    expect((await gotEarly)[0]!.payload).toBe("online");

    const gotOffline = collect(early, 1);
    device.stream.destroy();
    expect((await gotOffline)[0]!.payload).toBe("offline");

    const late = await connect(broker.url(), { protocolVersion });
    const gotLate = quietFor(late, 800);
    await late.subscribeAsync(status, { qos: 1 });
    expect(await gotLate).toEqual([`${status}=offline`]);
    device.end(true);
    await end(early, late);
  });
});

describe("MQTT 5 will options", () => {
  test("DISCONNECT with reason 0x04 publishes the will (MQTT 5 §3.14.2.1)", async () => {
    const topic = fresh("rc4");
    const watcher = await watch(topic, 5);
    const raw = await RawClient.connect(broker.url(), { protocolVersion: 5, will: { topic, payload: Buffer.from("asked-for"), qos: 0, retain: false } });
    const got = collect(watcher, 1);
    raw.send({ cmd: "disconnect", reasonCode: 0x04 });
    expect((await got)[0]!.payload).toBe("asked-for");
    await end(watcher);
  });

  test("will properties are forwarded with the will", async () => {
    const topic = fresh("props");
    const watcher = await watch(topic, 5);
    const device = await connect(broker.url(), {
      protocolVersion: 5,
      will: { topic, payload: Buffer.from("{}"), qos: 1, retain: false, properties: { contentType: "application/json", userProperties: { why: "lost" } } },
    });
    const got = collect(watcher, 1);
    device.stream.destroy();
    const props = (await got)[0]!.packet.properties;
    expect(props?.contentType).toBe("application/json");
    expect(props?.userProperties).toEqual({ why: "lost" });
    device.end(true);
    await end(watcher);
  });

  test("a Will Delay Interval holds the will back; a reconnect within it cancels the will [MQTT-3.1.3-9]", async () => {
    const topic = fresh("delay");
    const id = fresh("delayed");
    const watcher = await watch(topic, 5);
    const opts = { protocolVersion: 5 as const, clientId: id, clean: false, properties: { sessionExpiryInterval: 30 } };
    const device = await connect(broker.url(), { ...opts, will: { topic, payload: Buffer.from("late"), qos: 1, retain: false, properties: { willDelayInterval: 2 } } });
    const quiet = quietFor(watcher, 1000);
    device.stream.destroy();
    expect(await quiet).toEqual([]);
    // reconnect before the delay is over: no will
    const back = await connect(broker.url(), opts);
    expect(await quietFor(watcher, 2000)).toEqual([]);
    await back.endAsync(); // clean DISCONNECT: the will is discarded
    expect(await quietFor(watcher, 300)).toEqual([]);
    device.end(true);
    await end(watcher);
  });

  test("a Will Delay Interval: the will is published when the delay is over", async () => {
    const topic = fresh("delay2");
    const watcher = await watch(topic, 5);
    const device = await connect(broker.url(), {
      protocolVersion: 5,
      clientId: fresh("delayed2"),
      clean: false,
      properties: { sessionExpiryInterval: 30 },
      will: { topic, payload: Buffer.from("after-delay"), qos: 1, retain: false, properties: { willDelayInterval: 2 } },
    });
    const got = collect(watcher, 1, 6000);
    const start = Date.now();
    device.stream.destroy();
    expect((await got)[0]!.payload).toBe("after-delay");
    const elapsed = Date.now() - start;
    expect(elapsed).toBeGreaterThanOrEqual(2000 - 100);
    expect(elapsed).toBeLessThan(3500);
    device.end(true);
    await end(watcher);
  });

  test("a Will Delay Interval longer than the session: the will goes out when the session ends (MQTT 5 §3.1.3.2)", async () => {
    const topic = fresh("delay0");
    const watcher = await watch(topic, 5);
    const device = await connect(broker.url(), {
      protocolVersion: 5,
      will: { topic, payload: Buffer.from("session-over"), qos: 0, retain: false, properties: { willDelayInterval: 60 } },
    }); // session expiry 0: the session ends with the connection
    const got = collect(watcher, 1, 2000);
    device.stream.destroy();
    expect((await got)[0]!.payload).toBe("session-over");
    device.end(true);
    await end(watcher);
  });
});
