import { expect, test } from "vitest";
import { SimBroker } from "../sim/broker";
import { SimClient } from "../sim/client";

test("sim: publish and subscribe through BrokerCore in Node", () => {
  const b = new SimBroker();
  const sub = new SimClient(b, "s");
  expect(sub.connect({ clean: false })?.returnCode).toBe(0);
  expect(sub.subscribe("t/#", 1)).toEqual([1]);
  const pub = new SimClient(b, "p");
  pub.connect();
  const id = pub.publish("t/1", "hello", 1)!;
  expect(pub.ackOf(id)).toBeDefined();
  expect(sub.received.map((r) => r.payload)).toEqual(["hello"]);
  sub.drop();
  pub.publish("t/1", "queued", 1);
  b.restart();
  sub.connect({ clean: false });
  expect(sub.connack?.sessionPresent).toBe(true);
  expect(sub.received.map((r) => r.payload)).toEqual(["hello", "queued"]);
});
