// $SYS topics end to end: published while someone listens (every SYS_INTERVAL seconds, here 1),
// silent otherwise, and closed to clients' publishes.
import { afterAll, beforeAll, expect, test } from "vitest";
import { startBroker, connect, collect, end, quietFor, type Broker } from "./harness";

const TOPICS = [
  "$SYS/broker/uptime",
  "$SYS/broker/clients/connected",
  "$SYS/broker/clients/total",
  "$SYS/broker/subscriptions/count",
  "$SYS/broker/retained messages/count",
  "$SYS/broker/messages/received",
  "$SYS/broker/messages/sent",
  "$SYS/broker/bytes/received",
  "$SYS/broker/bytes/sent",
];

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker({ SYS_INTERVAL: "1" });
});
afterAll(() => broker.close());

test("a $SYS subscriber gets every topic, then again each interval", async () => {
  const other = await connect(broker.url("sys"), { clientId: "other" });
  await other.publishAsync("data/x", "1", { qos: 0, retain: true });
  const watcher = await connect(broker.url("sys"), { clientId: "watcher" });
  const first = collect(watcher, TOPICS.length, 3000);
  await watcher.subscribeAsync("$SYS/#");
  const round = await first;
  expect(round.map((m) => m.topic).sort()).toEqual([...TOPICS].sort());
  const value = (topic: string) => round.find((m) => m.topic === topic)!.payload;
  expect(value("$SYS/broker/clients/connected")).toBe("2");
  expect(value("$SYS/broker/clients/total")).toBe("2");
  expect(value("$SYS/broker/subscriptions/count")).toBe("1");
  expect(value("$SYS/broker/retained messages/count")).toBe("1");
  expect(value("$SYS/broker/messages/received")).toBe("1");
  expect(value("$SYS/broker/uptime")).toMatch(/^\d+ seconds$/);
  expect(Number(value("$SYS/broker/bytes/received"))).toBeGreaterThan(0);
  expect(round.every((m) => m.packet.qos === 0 && !m.packet.retain)).toBe(true);

  await other.publishAsync("data/y", "2", { qos: 1 });
  const second = await collect(watcher, TOPICS.length, 2500);
  expect(second.find((m) => m.topic === "$SYS/broker/messages/received")!.payload).toBe("2");

  // A narrower filter gets only its topics
  const narrow = await connect(broker.url("sys"));
  const got = collect(narrow, 2, 2500);
  await narrow.subscribeAsync("$SYS/broker/bytes/+");
  expect((await got).map((m) => m.topic).sort()).toEqual(["$SYS/broker/bytes/received", "$SYS/broker/bytes/sent"]);
  await end(other, watcher, narrow);
});

test("the first round comes at once, not after the interval", async () => {
  const slow = await startBroker({ SYS_INTERVAL: "60" });
  try {
    const watcher = await connect(slow.url());
    const first = collect(watcher, TOPICS.length, 5000);
    await watcher.subscribeAsync("$SYS/#");
    expect((await first).length).toBe(TOPICS.length);
    expect(await quietFor(watcher, 1500)).toEqual([]);
    await end(watcher);
  } finally {
    await slow.close();
  }
});

test("nothing is published once nobody listens; wildcards alone never see $SYS", async () => {
  const everything = await connect(broker.url("quiet"));
  await everything.subscribeAsync("#");
  const watcher = await connect(broker.url("quiet"));
  await watcher.subscribeAsync("$SYS/broker/uptime");
  await collect(watcher, 1, 2000);
  await watcher.unsubscribeAsync("$SYS/broker/uptime");
  await quietFor(watcher, 1200); // a round that was already on its way
  expect(await quietFor(watcher, 2500)).toEqual([]); // a running publisher would have sent two more
  expect(await quietFor(everything, 100)).toEqual([]);
  await end(everything, watcher);
});

test("clients cannot publish to $SYS: the message is dropped", async () => {
  const watcher = await connect(broker.url("spoof"), { protocolVersion: 5 });
  await watcher.subscribeAsync("$SYS/fake/#");
  const spoofer = await connect(broker.url("spoof"), { protocolVersion: 5 });
  const ack = new Promise<number | undefined>((resolve) =>
    spoofer.on("packetreceive", (p) => p.cmd === "puback" && resolve(p.reasonCode)),
  );
  await spoofer.publishAsync("$SYS/fake/uptime", "0 seconds", { qos: 1 }).catch(() => {}); // refused: MQTT.js rejects
  expect(await ack).toBe(0x87); // Not authorized: `$` topics are the broker's (auth/rights.ts)
  expect(await quietFor(watcher, 500)).toEqual([]);
  expect(spoofer.connected).toBe(true);
  await end(watcher, spoofer);
});
