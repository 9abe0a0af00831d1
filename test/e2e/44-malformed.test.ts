// Malformed and forbidden packets over real WebSockets, table-driven: the bytes a client sends
// after a good CONNECT → the MQTT 5 DISCONNECT reason code, or (3.1.1, which has no DISCONNECT
// from the server) the plain close. Other connections carry on; the broker stays consistent.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startBroker, connect, collect, end, type Broker } from "./harness";
import { RawClient } from "./raw";
import { closedWithin, inspectBroker, uncaught } from "./inspect";
import { connectBytes, encode, packet, props, str, u16, u32 } from "../packets";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker({ MAX_PACKET_SIZE: "4096" });
});
afterAll(() => broker.close());

let n = 0;
async function connected(v: 4 | 5): Promise<RawClient> {
  const c = await RawClient.open(broker.url(), v);
  c.sendBytes(encode({ cmd: "connect", protocolId: "MQTT", protocolVersion: v, clientId: `bad-${v}-${n++}`, clean: true, keepalive: 0 }, v));
  expect((await c.next()).cmd).toBe("connack");
  return c;
}

type Case = [name: string, bytes: (v: 4 | 5) => Uint8Array | string, v5Code: number];
const p0 = (v: 4 | 5) => (v === 5 ? [0] : []);
const cases: Case[] = [
  ["reserved header flags (PUBREL 0x60)", () => packet(0x60, u16(1)), 0x81],
  ["PUBLISH with QoS 3", (v) => packet(0x36, str("t"), u16(1), p0(v)), 0x81],
  ["PUBLISH with packet id 0", (v) => packet(0x32, str("t"), u16(0), p0(v)), 0x82],
  ["topic with bad UTF-8", (v) => packet(0x30, str([0x74, 0xc3, 0x28]), p0(v)), 0x81],
  ["topic with U+0000", (v) => packet(0x30, str([0x74, 0x00]), p0(v)), 0x81],
  ["topic with a UTF-16 surrogate", (v) => packet(0x30, str([0xed, 0xb0, 0x80]), p0(v)), 0x81],
  ["topic with a wildcard", (v) => packet(0x30, str("a/+"), p0(v)), 0x90],
  ["SUBSCRIBE without topic filters", (v) => packet(0x82, u16(1), p0(v)), 0x82],
  ["SUBSCRIBE with QoS 3", (v) => packet(0x82, u16(1), p0(v), str("a"), [3]), 0x81],
  ["SUBSCRIBE filter with bad UTF-8", (v) => packet(0x82, u16(1), p0(v), str([0xff]), [0]), 0x81],
  ["UNSUBSCRIBE with packet id 0", (v) => packet(0xa2, u16(0), p0(v), str("a")), 0x82],
  ["a second CONNECT", (v) => connectBytes({ version: v }), 0x82],
  ["CONNACK from a client", () => packet(0x20, [0, 0]), 0x82],
  ["packet type 0", () => packet(0x00), 0x81],
  ["remaining length of 5 bytes", () => Uint8Array.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), 0x81],
  ["PINGREQ with a body", () => packet(0xc0, [1]), 0x81],
  ["over the maximum packet size", (v) => packet(0x30, str("big"), p0(v), new Array(5000).fill(1)), 0x95],
  ["a text frame", () => "hello", 0x81],
];
const v5only: Case[] = [
  ["duplicate property (Topic Alias twice)", () => packet(0x30, str("t"), props([0x23, ...u16(1)], [0x23, ...u16(1)])), 0x82],
  ["property of another packet type (Session Expiry in PUBLISH)", () => packet(0x30, str("t"), props([0x11, ...u32(1)])), 0x81],
  ["unknown property id", () => packet(0x30, str("t"), props([0x7f, 0])), 0x81],
  ["Subscription Identifier in a client PUBLISH", () => packet(0x30, str("t"), props([0x0b, 5])), 0x82],
  ["duplicate Subscription Identifier in SUBSCRIBE", () => packet(0x82, u16(1), props([0x0b, 1], [0x0b, 2]), str("a"), [0]), 0x82],
  ["Topic Alias 0", () => packet(0x30, str("t"), props([0x23, ...u16(0)])), 0x94],
  ["unknown Topic Alias", () => packet(0x30, str(""), props([0x23, ...u16(9)])), 0x82],
  ["AUTH without an authentication method", () => packet(0xf0, [0x18], [0]), 0x82],
  ["Payload Format Indicator 7", () => packet(0x30, str("t"), props([0x01, 7])), 0x82],
];

describe.each([4, 5] as const)("protocol %i", (v) => {
  test.each(v === 5 ? [...cases, ...v5only] : cases)("%s", async (_name, bytes, v5Code) => {
    const c = await connected(v);
    const b = bytes(v);
    c.sendBytes(b);
    if (v === 5) expect(await c.next()).toMatchObject({ cmd: "disconnect", reasonCode: v5Code });
    const code = await closedWithin(c, 3000);
    expect(code).not.toBe("open");
    expect(code).not.toBe(1011); // 1011 would mean an internal error, not a judged packet
    if (v === 4) expect(c.packets).toEqual([]); // nothing after the CONNACK
  });
});

describe("before CONNECT", () => {
  // The level byte decides the CONNACK's format, whatever follows it: a future client laid out as
  // 3.1.1 and one laid out as 5.0 (with a property block) both get the 2-byte 3.1.1 CONNACK.
  test.each([
    ["level 6, laid out as 3.1.1", connectBytes({ version: 6 as 4 })],
    ["level 6, laid out as 5.0 (property block)", packet(0x10, str("MQTT"), [6, 0x02], u16(0), props([0x21, ...u16(5)]), str("c"))],
    ["level 2", connectBytes({ version: 2 as 4 })],
  ] as const)("an unsupported protocol level gets CONNACK 0x01 (3.1.1 format) [MQTT-3.1.2-2]: %s", async (_name, bytes) => {
    const c = await RawClient.open(broker.url(), 4);
    c.sendBytes(bytes);
    expect(await c.next()).toMatchObject({ cmd: "connack", returnCode: 1 });
    expect(await closedWithin(c, 3000)).not.toBe("open");
    expect(c.packets).toEqual([]); // nothing after the CONNACK
  });

  test.each([
    ["client id with bad UTF-8", 4, connectBytes({ clientId: [0xc0, 0xaf] })],
    ["client id with U+0000", 5, connectBytes({ version: 5, clientId: [0x61, 0x00] })],
    ["reserved CONNECT flag", 4, connectBytes({ flags: 0x03 })],
    ["duplicate CONNECT property", 5, connectBytes({ version: 5, connectProps: props([0x21, ...u16(5)], [0x21, ...u16(6)]) })],
    ["PUBLISH first", 4, packet(0x30, str("t"))],
  ] as const)("%s: closed without CONNACK", async (_name, v, bytes) => {
    const c = await RawClient.open(broker.url(), v);
    c.sendBytes(bytes);
    expect(await closedWithin(c, 3000)).not.toBe("open");
    expect(c.packets).toEqual([]);
  });
});

test("bystanders keep working, nothing escaped, storage is consistent", async () => {
  const sub = await connect(broker.url(), { protocolVersion: 5 });
  await sub.subscribeAsync("still/#", { qos: 1 });
  const got = collect(sub, 1);
  const bad = await connected(5);
  bad.sendBytes(packet(0x36, str("t")));
  const pub = await connect(broker.url(), { protocolVersion: 4 });
  await pub.publishAsync("still/here", "yes", { qos: 1 });
  expect((await got)[0]!.payload).toBe("yes");
  await closedWithin(bad, 2000);
  const state = await inspectBroker(broker);
  expect(state.problems).toEqual([]);
  expect(state.sessions.filter((s) => s.clientId.startsWith("bad-"))).toEqual([]);
  expect(uncaught(broker)).toEqual([]);
  await end(sub, pub);
});
