// A runtime restart on the same storage (broker.restart() disposes workerd and starts it again):
// what was stored survives, and the wills owed by connections the restart cut are published.
import { afterAll, beforeAll, expect, test } from "vitest";
import { startBroker, connect, collect, quietFor, end, SHARDED, type Broker } from "./harness";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker();
});
afterAll(() => broker.close());

// sharded: link entries still pending reach their shard after the next step of the test (a restart, a reconnect) and are delivered live there
test.skipIf(SHARDED)("retained messages survive a restart, in every namespace", async () => {
  const a = await connect(broker.url());
  const b = await connect(broker.url("other"));
  await a.publishAsync("keep/a", "value-a", { qos: 1, retain: true });
  await a.publishAsync("keep/deleted", "gone", { qos: 1, retain: true });
  await a.publishAsync("keep/deleted", "", { qos: 1, retain: true });
  await b.publishAsync("keep/b", Buffer.from([0, 1, 2, 255]), { qos: 0, retain: true });
  await b.publishAsync("sync", "", { qos: 1 }); // acknowledged after the QoS 0 PUBLISH before it was handled
  await end(a, b);

  await broker.restart();

  const sa = await connect(broker.url(), { protocolVersion: 5 });
  const gotA = quietFor(sa, 1000);
  await sa.subscribeAsync("keep/#", { qos: 1 });
  expect(await gotA).toEqual(["keep/a=value-a"]);
  const sb = await connect(broker.url("other"));
  const gotB = collect(sb, 1);
  await sb.subscribeAsync("keep/#", { qos: 1 });
  const [m] = await gotB;
  expect(m!.topic).toBe("keep/b");
  expect([...(m!.packet.payload as Buffer)]).toEqual([0, 1, 2, 255]);
  expect(m!.packet.retain).toBe(true);
  expect(m!.packet.qos).toBe(0);
  await end(sa, sb);
});

// sharded: link entries still pending reach their shard after the next step of the test (a restart, a reconnect) and are delivered live there
test.skipIf(SHARDED).each([4, 5] as const)("a will owed when the runtime died is published after the restart, protocol %i", async (protocolVersion) => {
  const status = `restart-v${protocolVersion}/device/status`;
  const device = await connect(broker.url(), {
    protocolVersion,
    clientId: `device-v${protocolVersion}`,
    will: { topic: status, payload: Buffer.from("offline"), qos: 1, retain: true },
  });
  await device.publishAsync(status, "online", { qos: 1, retain: true });
  const deviceClosed = new Promise<void>((r) => device.once("close", () => r()));

  await broker.restart(); // the device's connection dies with the runtime, without DISCONNECT
  await deviceClosed;
  device.end(true);

  // the first event after the restart rebuilds the namespace and owes the will
  const observer = await connect(broker.url(), { protocolVersion });
  const got = quietFor(observer, 1000);
  await observer.subscribeAsync(status, { qos: 1 });
  expect(await got).toEqual([`${status}=offline`]);
  await end(observer);
});

// sharded: the retained "online" is still in its shard's outbox at the restart; that shard sends it when it next wakes (its next socket, or its safety alarm, up to 30 s), not before the observer's read
test.skipIf(SHARDED)("a will is not published after a restart when the client had disconnected normally", async () => {
  const status = "restart-clean/status";
  const device = await connect(broker.url(), { clientId: "clean-device", will: { topic: status, payload: Buffer.from("offline"), qos: 1, retain: true } });
  await device.publishAsync(status, "online", { qos: 1, retain: true });
  await device.endAsync(); // DISCONNECT: the will is discarded
  await broker.restart();
  const observer = await connect(broker.url());
  const got = quietFor(observer, 1000);
  await observer.subscribeAsync(status, { qos: 1 });
  expect(await got).toEqual([`${status}=online`]);
  await end(observer);
});

test("after a restart the same client id can connect again, and routing works", async () => {
  const sub = await connect(broker.url(), { clientId: "again-sub" });
  await sub.subscribeAsync("again/t");
  await broker.restart();
  sub.end(true);
  const sub2 = await connect(broker.url(), { clientId: "again-sub" });
  await sub2.subscribeAsync("again/t");
  const pub = await connect(broker.url());
  const got = collect(sub2, 1);
  await pub.publishAsync("again/t", "works");
  expect((await got)[0]!.payload).toBe("works");
  await end(sub2, pub);
});
