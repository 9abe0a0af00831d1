// Rules and the broker's lifecycle events (`$events/...`, docs/events.md) on the real BrokerCore
// in plain Node: a rule whose filter names `$events` gets them like any routed message (a presence
// pipeline to a Queue); `#` never does [MQTT-4.7.2-1]; `$SYS` stays out of rules.
import { expect, test } from "vitest";
import { SimBroker } from "../sim/broker";
import { SimClient } from "../sim/client";
import { RuleEngine } from "../../src/rules/engine";
import type { Destination } from "../../src/rules/destinations";

function withRules(filters: Record<string, string>) {
  const b = new SimBroker();
  const sent: Record<string, { topic: string; payload: string }[]> = {};
  const core = b.core;
  core.rules = new RuleEngine(
    Object.entries(filters).map(([name, filter]) => {
      const dest: Destination = {
        batchSize: 100,
        async send(batch) {
          for (const t of batch) (sent[name] ??= []).push({ topic: t.msg.topic, payload: Buffer.from(t.msg.payload).toString() });
        },
      };
      return { rule: { name, filter, to: { kind: "queue" as const, binding: "Q" }, format: "json" as const, timeoutMs: 1000, qos: 1 as const }, dest };
    }),
    core.rulesHost(), // as the namespace object wires it
  );
  return { b, sent };
}
const settle = async (b: SimBroker) => {
  b.flushLaters();
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

test("a rule on $events/clients/+/connected gets the connected events; a rule on # does not", async () => {
  const { b, sent } = withRules({ presence: "$events/clients/+/connected", all: "#" });
  const c = new SimClient(b, "dev-1");
  expect(c.connect()?.returnCode).toBe(0);
  c.publish("t/1", "x", 1);
  await settle(b);
  expect(sent.presence?.map((m) => m.topic)).toEqual(["$events/clients/dev-1/connected"]);
  expect(JSON.parse(sent.presence![0]!.payload)).toMatchObject({ clientId: "dev-1" });
  expect(sent.all?.map((m) => m.topic)).toEqual(["t/1"]);
});

test("$events/# gets every event, and events nobody subscribes to still reach the rule (JSON built for it)", async () => {
  const { b, sent } = withRules({ events: "$events/#" });
  const c = new SimClient(b, "dev-2");
  c.connect();
  c.drop();
  await settle(b);
  expect(sent.events?.map((m) => m.topic)).toEqual(["$events/clients/dev-2/connected", "$events/clients/dev-2/disconnected"]);
  expect(b.core.rules!.stats().pending).toBe(0); // sent and deleted
});

test("a QoS 1 send that succeeded leaves no alarm behind (its lease's wake-up would bill a request and wake a hibernated object for nothing)", async () => {
  const { b, sent } = withRules({ out: "t/#" });
  const c = new SimClient(b, "dev-3");
  c.connect({ keepalive: 0 });
  b.alarmAt = null;
  c.publish("t/1", "x", 1);
  expect(b.alarmAt).not.toBeNull(); // the lease: should the object stop mid-send, the alarm sends it again
  await settle(b);
  expect(sent.out?.map((m) => m.topic)).toEqual(["t/1"]);
  expect(b.core.rules!.stats().pending).toBe(0);
  expect(b.alarmAt).toBeNull();
});
