import { afterAll, beforeAll, expect, test } from "vitest";
import { startBroker, connect, collect, end, type Broker } from "./harness";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker();
});
afterAll(() => broker.close());

test.each([4, 5] as const)("pub/sub round trip, protocol %i", async (protocolVersion) => {
  const sub = await connect(broker.url(), { protocolVersion });
  await sub.subscribeAsync("smoke/#", { qos: 1 });
  const pub = await connect(broker.url(), { protocolVersion });
  const got = collect(sub, 3);
  await pub.publishAsync("smoke/a", "zero", { qos: 0 });
  await pub.publishAsync("smoke/b", "one", { qos: 1 });
  await pub.publishAsync("smoke/c", "two", { qos: 2 });
  const msgs = await got;
  expect(msgs.map((m) => `${m.topic}=${m.payload}@${m.packet.qos}`)).toEqual(["smoke/a=zero@0", "smoke/b=one@1", "smoke/c=two@1"]);
  await end(sub, pub);
});
