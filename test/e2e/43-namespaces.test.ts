// Namespaces are separate brokers: no message, retained message, will, session or client
// list crosses from one to another.
import { afterAll, beforeAll, expect, test } from "vitest";
import { startBroker, connect, collect, end, type Broker } from "./harness";
import { inspectBroker, record } from "./inspect";
import { expectOnlyMarker, until } from "./marker";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker();
});
afterAll(() => broker.close());

test.each([4, 5] as const)("messages, retained messages and wills stay in their namespace (protocol %i)", async (protocolVersion) => {
  const [a, b] = [`ns-a-${protocolVersion}`, `ns-b-${protocolVersion}`];
  const pubA = await connect(broker.url(a), { protocolVersion });
  await pubA.publishAsync("news/retained", "only in a", { qos: 1, retain: true });

  const subA = await connect(broker.url(a), { protocolVersion });
  const subB = await connect(broker.url(b), { protocolVersion });
  const inA = record(subA);
  const inB = record(subB);
  await subA.subscribeAsync("#", { qos: 1 });
  await subB.subscribeAsync("#", { qos: 1 });
  await pubA.publishAsync("news/live", "live in a", { qos: 1 });
  const dying = await connect(broker.url(a), { protocolVersion, will: { topic: "news/will", payload: Buffer.from("bye"), qos: 1, retain: false } });
  dying.stream.destroy();
  await until(() => inA.includes("news/will=bye"), "the will in a");
  // a got all three and nothing else; then, with a done, b's own marker shows nothing of a's reached b
  await expectOnlyMarker(inA, (m) => pubA.publishAsync("news/marker", m, { qos: 1 }), ["news/retained=only in a", "news/live=live in a", "news/will=bye"]);
  const pubB = await connect(broker.url(b), { protocolVersion });
  await expectOnlyMarker(inB, (m) => pubB.publishAsync("news/marker", m, { qos: 1 }));
  await pubA.publishAsync("news/retained", "", { qos: 1, retain: true });
  await end(pubA, pubB, subA, subB, dying);
});

test("sessions and client lists are per namespace", async () => {
  const opts = { protocolVersion: 5 as const, clientId: "same-id", clean: false, properties: { sessionExpiryInterval: 300 } };
  const inA = await connect(broker.url("sess-a"), opts);
  await inA.subscribeAsync("a/only", { qos: 1 });
  // the same client id elsewhere is another client: no takeover, no session present
  const inB = await connect(broker.url("sess-b"), opts);
  expect(inA.connected).toBe(true);
  const got = collect(inA, 1);
  const pub = await connect(broker.url("sess-a"));
  await pub.publishAsync("a/only", "still connected", { qos: 1 });
  expect((await got)[0]!.payload).toBe("still connected");

  const a = await inspectBroker(broker, "sess-a");
  const b = await inspectBroker(broker, "sess-b");
  expect(a.sessions.find((s) => s.clientId === "same-id")).toMatchObject({ connected: true, subscriptions: ["a/only"] });
  expect(b.sessions).toEqual([expect.objectContaining({ clientId: "same-id", subscriptions: [] })]);
  expect(b.connections.map((c) => c.clientId)).toEqual(["same-id"]);
  expect([a.problems, b.problems]).toEqual([[], []]);
  await inA.unsubscribeAsync("a/only");
  await end(inA, inB, pub);
});
