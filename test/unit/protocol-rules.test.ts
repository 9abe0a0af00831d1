// Malformed and forbidden packets → the broker's answer, on the real BrokerCore in plain Node
// (test/sim): one row per rule, named with its spec tag (MQTT 5.0 numbering; § where the spec
// states the rule without a tag), run for each protocol version it applies to. The answer is a
// CONNACK code (then the close), an MQTT 5 DISCONNECT reason code or for 3.1.1 (no server
// DISCONNECT) the close without an answer. After every row the broker is consistent and a
// bystander pair undisturbed (test/sim/rules.ts). The handlers' own tables (SUBACK, UNSUBACK,
// PUBLISH validation, acknowledgements) are in handler-rules.test.ts.
//
// What needs workerd stays in test/e2e (13-malformed): text frames, the WebSocket layer, frames
// merged or split by the runtime, and a few smoke rows through the real Worker.
import { describe, expect, test } from "vitest";
import type * as mqtt from "mqtt-packet";
import { SimClient } from "../sim/client";
import { BOTH, FIVE, FOUR, MAX_PACKET_SIZE, badUtf8, connectPacket, p0, pub, rowCases, runRow, sub, withBystanders, type Row, type V } from "../sim/rules";
import { connectBytes, encode, packet, props, str, u16, u32 } from "../packets";

// ---------------------------------------------------------------------------------------------
// Malformed and forbidden packets after a good CONNECT: the offender is disconnected.
// (Merged from e2e 13-malformed, 44-malformed, 14-mqtt5-reason-codes, 03-pubsub, 11 and 12.)
const malformed: Row[] = [
  { name: "garbage bytes (an HTTP request line) §2.1.2", v: BOTH, send: () => Uint8Array.from(Buffer.from("GET / HTTP/1.1\r\n\r\n")), answer: { disconnect: 0x81 } },
  { name: "reserved packet type 0 §2.1.2", v: BOTH, send: () => packet(0x00), answer: { disconnect: 0x81 } },
  { name: "reserved packet type 0 with a length §2.1.2", v: BOTH, send: () => Uint8Array.from([0x00, 0x00]), answer: { disconnect: 0x81 } },
  { name: "CONNACK from a client (server-to-client only) §2.1.2", v: BOTH, send: () => packet(0x20, [0, 0]), answer: { disconnect: 0x82 } },
  { name: "remaining length of 5 bytes §1.5.5 §2.1.4", v: BOTH, send: () => Uint8Array.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), answer: { disconnect: 0x81 } },
  { name: "remaining length above the Maximum Packet Size, before the body arrives §3.2.2.3.6", v: BOTH, send: () => Uint8Array.from([0x30, 0xff, 0xff, 0x7f]), answer: { disconnect: 0x95 } },
  { name: "a packet above the Maximum Packet Size §3.2.2.3.6", v: BOTH, send: (v) => packet(0x30, str("big"), p0(v), new Array(MAX_PACKET_SIZE + 100).fill(1)), answer: { disconnect: 0x95 } },
  { name: "[MQTT-2.1.3-1] reserved header flags (PUBREL 0x60)", v: BOTH, send: () => packet(0x60, u16(1)), answer: { disconnect: 0x81 } },
  { name: "[MQTT-3.8.1-1] SUBSCRIBE with header flags 0000", v: BOTH, send: (v) => packet(0x80, u16(1), p0(v), str("a"), [0]), answer: { disconnect: 0x81 } },
  { name: "PINGREQ with a body §3.12.1", v: BOTH, send: () => packet(0xc0, [1]), answer: { disconnect: 0x81 } },
  { name: "[MQTT-3.1.0-2] a second CONNECT", v: BOTH, send: (v) => connectBytes({ version: v }), answer: { disconnect: 0x82 } },
  { name: "[MQTT-3.1.0-2] a second CONNECT, another client id", v: BOTH, send: (v) => connectPacket(v, { clientId: "again" }), answer: { disconnect: 0x82 } },

  // PUBLISH
  { name: "[MQTT-3.3.1-4] PUBLISH with QoS 3", v: BOTH, send: (v) => packet(0x36, str("by/t"), u16(1), p0(v)), answer: { disconnect: 0x81 } },
  { name: "[MQTT-3.3.1-2] PUBLISH QoS 0 with DUP", v: BOTH, send: (v) => packet(0x38, str("by/t"), p0(v)), answer: { disconnect: 0x81 } },
  { name: "[MQTT-2.2.1-3] PUBLISH QoS 1 with packet id 0", v: BOTH, send: (v) => packet(0x32, str("by/t"), u16(0), p0(v)), answer: { disconnect: 0x82 } },
  { name: "[MQTT-1.5.4-1] topic with bad UTF-8", v: BOTH, send: (v) => packet(0x30, str([0x62, 0x79, 0x2f, 0xc3, 0x28]), p0(v)), answer: { disconnect: 0x81 } },
  { name: "[MQTT-1.5.4-1] topic with a UTF-16 surrogate", v: BOTH, send: (v) => packet(0x30, str([0x62, 0x79, 0x2f, 0xed, 0xb0, 0x80]), p0(v)), answer: { disconnect: 0x81 } },
  { name: "[MQTT-1.5.4-2] topic with U+0000", v: BOTH, send: (v) => packet(0x30, str([0x62, 0x79, 0x2f, 0x00]), p0(v)), answer: { disconnect: 0x81 } },
  { name: "§2.2.2.2 duplicate property (Topic Alias twice)", v: FIVE, send: () => packet(0x30, str("by/t"), props([0x23, ...u16(1)], [0x23, ...u16(1)])), answer: { disconnect: 0x82 } },
  { name: "§2.2.2.2 property of another packet type (Session Expiry in PUBLISH)", v: FIVE, send: () => packet(0x30, str("by/t"), props([0x11, ...u32(1)])), answer: { disconnect: 0x81 } },
  { name: "§2.2.2.2 unknown property id", v: FIVE, send: () => packet(0x30, str("by/t"), props([0x7f, 0])), answer: { disconnect: 0x81 } },

  // SUBSCRIBE / UNSUBSCRIBE
  { name: "[MQTT-3.8.3-2] SUBSCRIBE without topic filters", v: BOTH, send: (v) => packet(0x82, u16(1), p0(v)), answer: { disconnect: 0x82 } },
  { name: "[MQTT-2.2.1-3] SUBSCRIBE with packet id 0", v: BOTH, send: (v) => packet(0x82, u16(0), p0(v), str("a"), [0]), answer: { disconnect: 0x82 } },
  { name: "§3.8.3.1 SUBSCRIBE with QoS 3", v: BOTH, send: (v) => packet(0x82, u16(1), p0(v), str("a"), [3]), answer: { disconnect: 0x81 } },
  { name: "[MQTT-3.8.3-5] SUBSCRIBE with reserved option bits", v: BOTH, send: (v) => packet(0x82, u16(1), p0(v), str("a"), [0xc0]), answer: { disconnect: 0x81 } },
  { name: "[MQTT-1.5.4-1] SUBSCRIBE filter with bad UTF-8", v: BOTH, send: (v) => packet(0x82, u16(1), p0(v), str([0xff]), [0]), answer: { disconnect: 0x81 } },
  { name: "§2.2.2.2 duplicate Subscription Identifier in SUBSCRIBE", v: FIVE, send: () => packet(0x82, u16(1), props([0x0b, 1], [0x0b, 2]), str("a"), [0]), answer: { disconnect: 0x82 } },
  { name: "[MQTT-2.2.1-3] UNSUBSCRIBE with packet id 0", v: BOTH, send: (v) => packet(0xa2, u16(0), p0(v), str("a")), answer: { disconnect: 0x82 } },
  { name: "[MQTT-3.10.3-2] UNSUBSCRIBE without topic filters", v: BOTH, send: (v) => packet(0xa2, u16(1), p0(v)), answer: { disconnect: 0x82 } },

  // AUTH and DISCONNECT (MQTT 5)
  { name: "[MQTT-4.12.0-7] AUTH without an Authentication Method at CONNECT (raw)", v: FIVE, send: () => packet(0xf0, [0x18], [0]), answer: { disconnect: 0x82 } },
  { name: "[MQTT-4.12.0-7] AUTH with a method not announced at CONNECT", v: FIVE, send: () => ({ cmd: "auth", reasonCode: 0x19, properties: { authenticationMethod: "SCRAM-SHA-1" } }), answer: { disconnect: 0x82 } },
  { name: "§3.14.2.2.2 DISCONNECT raising a Session Expiry Interval of 0", v: FIVE, send: () => ({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 10 } }), answer: { disconnect: 0x82 } },
];

// ---------------------------------------------------------------------------------------------
// Before CONNECT: the first packet decides. (02-connect, 44-malformed, 14-mqtt5-reason-codes.)
const levelByte = (level: number) => {
  const b = connectBytes({ version: 4 });
  b[8] = level; // after the 2-byte fixed header, the 2-byte length and "MQTT"
  return b;
};
const withoutClean = (v: V) => {
  const b = encode(connectPacket(v, { clientId: "" }), v);
  b[9] = b[9]! & ~0x02; // clear Clean Session / Clean Start (mqtt-packet refuses to encode it)
  return b;
};
const firstPacket: Row[] = [
  ...[2, 6, 0x7f].map<Row>((level) => ({ name: `[MQTT-3.1.2-2] unsupported protocol level ${level}: CONNACK 0x01 in 3.1.1 format`, v: BOTH, parseAs: 4, beforeConnect: true, send: () => levelByte(level), answer: { connack: 0x01 } })),
  { name: "[MQTT-3.1.2-2] level 6 laid out as 5.0 (property block): CONNACK 0x01 in 3.1.1 format", v: BOTH, parseAs: 4, beforeConnect: true, send: () => packet(0x10, str("MQTT"), [6, 0x02], u16(0), props([0x21, ...u16(5)]), str("c")), answer: { connack: 0x01 } },
  ...(["publish", "subscribe", "pingreq", "disconnect"] as const).map<Row>((cmd) => ({
    name: `[MQTT-3.1.0-1] ${cmd.toUpperCase()} before CONNECT: closed without an answer`,
    v: BOTH,
    beforeConnect: true,
    send: () => (cmd === "publish" ? pub("x") : cmd === "subscribe" ? sub(1, { topic: "x", qos: 0 }) : { cmd }),
    answer: "silent",
  })),
  { name: "[MQTT-3.1.0-1] garbage before CONNECT: closed without an answer", v: BOTH, beforeConnect: true, send: () => Uint8Array.from([0xde, 0xad, 0xbe, 0xef]), answer: "silent" },
  { name: "[MQTT-3.1.2-3] reserved CONNECT flag: closed without CONNACK", v: BOTH, beforeConnect: true, send: (v) => connectBytes({ version: v, flags: 0x03 }), answer: "silent" },
  { name: "[MQTT-1.5.4-1] client id with bad UTF-8: closed without CONNACK", v: BOTH, beforeConnect: true, send: (v) => connectBytes({ version: v, clientId: [0xc0, 0xaf] }), answer: "silent" },
  { name: "[MQTT-1.5.4-2] client id with U+0000: closed without CONNACK", v: BOTH, beforeConnect: true, send: (v) => connectBytes({ version: v, clientId: [0x61, 0x00] }), answer: "silent" },
  { name: "§2.2.2.2 duplicate CONNECT property: closed without CONNACK", v: FIVE, beforeConnect: true, send: () => connectBytes({ version: 5, connectProps: props([0x21, ...u16(5)], [0x21, ...u16(6)]) }), answer: "silent" },
  { name: "[MQTT-3.1.3-8] 3.1.1 empty client id without Clean Session: CONNACK 0x02", v: FOUR, beforeConnect: true, send: withoutClean, answer: { connack: 0x02 } },
  { name: "[MQTT-3.1.3-6] 5.0 empty client id without Clean Start: accepted with an Assigned Client Identifier", v: FIVE, beforeConnect: true, send: withoutClean, answer: { connack: 0x00 } },
  { name: "§3.1.3.1 a client id longer than MAX_CLIENT_ID_LENGTH: CONNACK 0x02 / 0x85", v: BOTH, beforeConnect: true, send: (v) => connectPacket(v, { clientId: "x".repeat(257) }), answer: (v) => ({ connack: v === 5 ? 0x85 : 0x02 }) },
  { name: "[MQTT-4.12.0-1] an Authentication Method without enhanced authentication: CONNACK 0x8C", v: FIVE, beforeConnect: true, send: () => connectPacket(5, { properties: { authenticationMethod: "SCRAM-SHA-256", authenticationData: Buffer.from("x") } }), answer: { connack: 0x8c } },
  { name: "§3.1.2.11.3 Receive Maximum 0: CONNACK 0x82", v: FIVE, beforeConnect: true, send: () => connectPacket(5, { properties: { receiveMaximum: 0 } }), answer: { connack: 0x82 } },
  { name: "§3.1.2.11.4 Maximum Packet Size 0: CONNACK 0x82", v: FIVE, beforeConnect: true, send: () => connectPacket(5, { properties: { maximumPacketSize: 0 } }), answer: { connack: 0x82 } },
  {
    name: "[MQTT-3.3.2-2] §3.1.3.3 a will topic with a wildcard: CONNACK 0x90 (3.1.1: closed, no code applies)",
    v: BOTH,
    beforeConnect: true,
    send: (v) => connectPacket(v, { will: { topic: "w/#", payload: Buffer.from("x"), qos: 0, retain: false } }),
    answer: (v) => (v === 5 ? { connack: 0x90 } : "silent"),
  },
  {
    name: "§3.1.3.2.3 a will announced as UTF-8 that is not: CONNACK 0x99",
    v: FIVE,
    beforeConnect: true,
    send: () => connectPacket(5, { will: { topic: "w", payload: badUtf8, qos: 0, retain: false, properties: { payloadFormatIndicator: true } } }),
    answer: { connack: 0x99 },
  },
];

describe.each([
  ["malformed and forbidden packets after CONNECT", malformed],
  ["the first packet", firstPacket],
] as const)("%s", (_title, rows) => {
  test.each(rowCases(rows))("%s", (_name, row, v) => runRow(row, v));
});

// ---------------------------------------------------------------------------------------------
// Several packets in one chunk of bytes, one packet over many: the core's own stream handling.
// (From e2e 13-malformed; the e2e file keeps one merged and one split WebSocket frame.)
describe.each([4, 5] as const)("one stream, protocol %i", (v) => {
  function setup() {
    const world = withBystanders();
    const c = new SimClient(world.b, "offender");
    c.connect({ version: v });
    return { ...world, c };
  }

  test("§4.13 packets before a malformed one in the same chunk are handled; nothing after it", () => {
    const { c, done } = setup();
    c.sendRaw(Buffer.concat([encode(pub("by/good"), v), Uint8Array.from([0x00, 0x00]), encode(pub("by/after-bad"), v)]));
    expect(c.closed).not.toBeNull();
    if (v === 5) expect(c.disconnectReason).toBe(0x81);
    done(["by/good"], "offender");
  });

  test("§3.14.4 bytes after DISCONNECT in the same chunk are ignored", () => {
    const { c, done } = setup();
    c.sendRaw(Buffer.concat([encode(pub("by/good"), v), encode({ cmd: "disconnect" }, v), encode(pub("by/after-disconnect"), v)]));
    expect(c.closed).not.toBeNull();
    expect(c.packets.map((p) => p.cmd)).toEqual(["connack"]);
    done(["by/good"], "offender");
  });

  test("many packets in one chunk are all handled, in order; one packet split byte by byte is reassembled", () => {
    const { listener, c, done } = setup();
    const burst: mqtt.Packet[] = [sub(1, { topic: "own", qos: 1 }), ...Array.from({ length: 20 }, (_, i) => pub("own", { qos: 1, messageId: i + 10, payload: Buffer.from(`n${i}`) })), { cmd: "pingreq" }];
    c.sendRaw(Buffer.concat(burst.map((p) => encode(p, v))));
    const cmds = c.packets.map((p) => p.cmd);
    expect(cmds[0]).toBe("connack");
    expect(cmds[1]).toBe("suback");
    expect(cmds.at(-1)).toBe("pingresp");
    expect(c.packets.filter((p) => p.cmd === "puback").map((p) => (p as mqtt.IPubackPacket).messageId)).toEqual(Array.from({ length: 20 }, (_, i) => i + 10));
    expect(c.received.map((r) => r.payload)).toEqual(Array.from({ length: 20 }, (_, i) => `n${i}`));
    for (const byte of encode(pub("by/split", { payload: Buffer.alloc(300, 0x61) }), v)) c.sendRaw([byte]);
    expect(c.closed).toBeNull();
    done(["by/split"]);
    expect(listener.received.find((r) => r.topic === "by/split")?.payload).toBe("a".repeat(300));
  });
});
