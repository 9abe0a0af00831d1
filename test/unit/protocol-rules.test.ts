// The protocol's tables, on the real BrokerCore in plain Node (test/sim): a packet a client sends
// → the broker's answer. One row per rule, named with its spec tag (MQTT 5.0 numbering unless the
// rule is 3.1.1's own; § where the spec states the rule without a tag).
//
// Answers: CONNACK with a code (then close); MQTT 5 DISCONNECT with a reason code, or for 3.1.1
// (no server DISCONNECT) the close without an answer; SUBACK/UNSUBACK/PUBACK/... codes on a
// connection that stays open; or "accepted" (no answer, still open). After every row the broker's
// memory, router and store agree, nothing failed inside it, and a bystander pair is undisturbed.
//
// What needs workerd stays in test/e2e: text frames, the WebSocket layer, frames split or merged
// by the runtime, real timers.
import { describe, expect, test } from "vitest";
import type * as mqtt from "mqtt-packet";
import { SimBroker } from "../sim/broker";
import { SimClient } from "../sim/client";
import { inspect } from "../../src/broker/inspect";
import { connectBytes, encode, packet, props, str, u16, u32 } from "../packets";

type V = 4 | 5;
type Answer =
  /** CONNACK with this code (3.1.1 return code / 5.0 reason code), then the close */
  | { connack: number }
  /** MQTT 5: DISCONNECT with this reason code, then the close; 3.1.1: the close, no answer */
  | { disconnect: number }
  /** closed without any answer, whatever the version */
  | "silent"
  /** no answer, the connection stays open */
  | "accepted"
  /** one acknowledgement, the connection stays open */
  | { ack: "suback" | "unsuback"; codes: number[] }
  | { ack: "puback" | "pubrec" | "pubrel" | "pubcomp"; code: number };

interface Row {
  name: string;
  /** the protocol versions the row applies to */
  v: V[];
  /** sent on a fresh socket instead of after a good CONNECT */
  beforeConnect?: boolean;
  /** what the client's parser expects on a socket opened without CONNECT (default: the row's version) */
  parseAs?: V;
  /** done first on the connected client (subscriptions to leave, exchanges to finish) */
  setup?: (c: SimClient) => void;
  send: (v: V) => Uint8Array | mqtt.Packet;
  /** topics under by/ the row's PUBLISH may reach the bystander on (default: none) */
  forwards?: string[];
  answer: Answer | ((v: V) => Answer);
}

const BOTH: V[] = [4, 5];
const FIVE: V[] = [5];
const FOUR: V[] = [4];
/** an empty property block in MQTT 5, nothing in 3.1.1 */
const p0 = (v: V) => (v === 5 ? [0] : []);
const MAX_PACKET_SIZE = 4096;
const invalidFilter = (v: V) => (v === 5 ? 0x8f : 0x80);
const badUtf8 = Buffer.from([0xc3, 0x28]);
const pub = (topic: string, more: Partial<mqtt.IPublishPacket> = {}): mqtt.IPublishPacket => ({
  cmd: "publish",
  topic,
  payload: Buffer.from("x"),
  qos: 0,
  retain: false,
  dup: false,
  ...more,
});
const sub = (messageId: number, ...subscriptions: mqtt.ISubscription[]): mqtt.ISubscribePacket => ({ cmd: "subscribe", messageId, subscriptions });
const connectPacket = (v: V, more: Partial<mqtt.IConnectPacket> = {}): mqtt.IConnectPacket => ({
  cmd: "connect",
  protocolId: "MQTT",
  protocolVersion: v,
  clientId: "offender",
  clean: true,
  keepalive: 0,
  ...more,
});

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
  { name: "[MQTT-3.3.2-2] topic with # (QoS 0)", v: BOTH, send: () => pub("by/#"), answer: { disconnect: 0x90 } },
  { name: "[MQTT-3.3.2-2] topic with + (QoS 1: no PUBACK either)", v: BOTH, send: () => pub("by/+/b", { qos: 1, messageId: 1 }), answer: { disconnect: 0x90 } },
  { name: "[MQTT-4.7.3-1] empty topic and no Topic Alias", v: BOTH, send: () => pub(""), answer: { disconnect: 0x82 } },
  { name: "[MQTT-3.3.2-8] Topic Alias 0", v: FIVE, send: () => pub("by/t", { properties: { topicAlias: 0 } }), answer: { disconnect: 0x94 } },
  { name: "[MQTT-3.3.2-8] Topic Alias 0 (raw)", v: FIVE, send: () => packet(0x30, str("by/t"), props([0x23, ...u16(0)])), answer: { disconnect: 0x94 } },
  { name: "[MQTT-3.3.2-9] Topic Alias one above the Topic Alias Maximum (64)", v: FIVE, send: () => pub("by/t", { properties: { topicAlias: 65 } }), answer: { disconnect: 0x94 } },
  { name: "[MQTT-3.3.2-9] Topic Alias 65535", v: FIVE, send: () => pub("by/t", { properties: { topicAlias: 65535 } }), answer: { disconnect: 0x94 } },
  { name: "§3.3.2.3.4 empty topic with a Topic Alias never set", v: FIVE, send: () => packet(0x30, str(""), props([0x23, ...u16(9)])), answer: { disconnect: 0x82 } },
  { name: "§2.2.2.2 duplicate property (Topic Alias twice)", v: FIVE, send: () => packet(0x30, str("by/t"), props([0x23, ...u16(1)], [0x23, ...u16(1)])), answer: { disconnect: 0x82 } },
  { name: "§2.2.2.2 property of another packet type (Session Expiry in PUBLISH)", v: FIVE, send: () => packet(0x30, str("by/t"), props([0x11, ...u32(1)])), answer: { disconnect: 0x81 } },
  { name: "§2.2.2.2 unknown property id", v: FIVE, send: () => packet(0x30, str("by/t"), props([0x7f, 0])), answer: { disconnect: 0x81 } },
  { name: "[MQTT-3.3.4-6] Subscription Identifier in a client PUBLISH", v: FIVE, send: () => packet(0x30, str("by/t"), props([0x0b, 5])), answer: { disconnect: 0x82 } },
  { name: "§3.3.2.3.2 Payload Format Indicator 7", v: FIVE, send: () => packet(0x30, str("by/t"), props([0x01, 7])), answer: { disconnect: 0x82 } },
  { name: "§3.3.2.3.2 Payload Format Indicator 1, payload not UTF-8, QoS 0", v: FIVE, send: () => pub("by/t", { payload: badUtf8, properties: { payloadFormatIndicator: true } }), answer: { disconnect: 0x99 } },

  // SUBSCRIBE / UNSUBSCRIBE
  { name: "[MQTT-3.8.3-2] SUBSCRIBE without topic filters", v: BOTH, send: (v) => packet(0x82, u16(1), p0(v)), answer: { disconnect: 0x82 } },
  { name: "[MQTT-2.2.1-3] SUBSCRIBE with packet id 0", v: BOTH, send: (v) => packet(0x82, u16(0), p0(v), str("a"), [0]), answer: { disconnect: 0x82 } },
  { name: "§3.8.3.1 SUBSCRIBE with QoS 3", v: BOTH, send: (v) => packet(0x82, u16(1), p0(v), str("a"), [3]), answer: { disconnect: 0x81 } },
  { name: "[MQTT-3.8.3-5] SUBSCRIBE with reserved option bits", v: BOTH, send: (v) => packet(0x82, u16(1), p0(v), str("a"), [0xc0]), answer: { disconnect: 0x81 } },
  { name: "[MQTT-1.5.4-1] SUBSCRIBE filter with bad UTF-8", v: BOTH, send: (v) => packet(0x82, u16(1), p0(v), str([0xff]), [0]), answer: { disconnect: 0x81 } },
  { name: "[MQTT-3.8.3-4] No Local on a shared subscription", v: FIVE, send: () => sub(1, { topic: "$share/g/t", qos: 1, nl: true }), answer: { disconnect: 0x82 } },
  // The spec calls Retain Handling 3 a Protocol Error (0x82); the broker reads it as a malformed options byte (0x81).
  { name: "§3.8.3.1 Retain Handling 3 (answered 0x81 Malformed; the spec says Protocol Error)", v: FIVE, send: () => packet(0x82, u16(1), [0], str("a"), [0x30]), answer: { disconnect: 0x81 } },
  { name: "§3.8.2.1.2 Subscription Identifier 0", v: FIVE, send: () => packet(0x82, u16(1), props([0x0b, 0]), str("a"), [0]), answer: { disconnect: 0x82 } },
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

// ---------------------------------------------------------------------------------------------
// Acknowledgements: the handler's own tables. The connection stays open.
const acks: Row[] = [
  {
    name: "[MQTT-3.9.3-1] [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1] SUBACK: one code per filter in order, invalid filters refused",
    v: BOTH,
    send: () => sub(7, { topic: "s/0", qos: 0 }, { topic: "s/1", qos: 1 }, { topic: "s/2", qos: 2 }, { topic: "a/#/b", qos: 1 }, { topic: "a+", qos: 1 }, { topic: "a/+/#", qos: 2 }, { topic: "#x", qos: 0 }, { topic: "", qos: 0 }),
    answer: (v) => ({ ack: "suback", codes: [0, 1, 2, invalidFilter(v), invalidFilter(v), 2, invalidFilter(v), invalidFilter(v)] }),
  },
  {
    name: "[MQTT-4.8.2-1] [MQTT-4.8.2-2] SUBACK: malformed shared filters refused, a good one granted",
    v: BOTH,
    send: () => sub(7, ...["$share/g", "$share//t", "$share/g+/t", "$share/g#/t", "$share/g/t/#/x", "$share/ok/t"].map((topic) => ({ topic, qos: 1 as const }))),
    answer: (v) => ({ ack: "suback", codes: [...Array<number>(5).fill(invalidFilter(v)), 1] }),
  },
  {
    name: "[MQTT-3.11.3-1] UNSUBACK: 0x00 Success, 0x11 No subscription existed, 0x8F for an invalid filter",
    v: FIVE,
    setup: (c) => void c.send(sub(90, { topic: "u/a", qos: 1 }, { topic: "$share/g/u/b", qos: 1 })),
    send: () => ({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["u/a", "u/never", "$share/g/u/b", "u/#/bad", "u/a"] }),
    answer: { ack: "unsuback", codes: [0x00, 0x11, 0x00, 0x8f, 0x11] },
  },
  { name: "[MQTT-3.10.4-4] [MQTT-3.10.4-5] UNSUBACK in 3.1.1 has no payload", v: FOUR, send: () => ({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["u/never"] }), answer: { ack: "unsuback", codes: [] } },
  { name: "§3.4.2.1 PUBACK 0x10 No matching subscribers", v: FIVE, send: () => pub("nobody/here", { qos: 1, messageId: 3 }), answer: { ack: "puback", code: 0x10 } },
  { name: "§3.4.2.1 PUBACK 0x00 with a subscriber (the bystander)", v: BOTH, send: () => pub("by/offender", { qos: 1, messageId: 3 }), forwards: ["by/offender"], answer: { ack: "puback", code: 0x00 } },
  { name: "§3.5.2.1 PUBREC 0x10 No matching subscribers", v: FIVE, send: () => pub("nobody/here", { qos: 2, messageId: 3 }), answer: { ack: "pubrec", code: 0x10 } },
  { name: "§3.3.2.3.2 PUBACK 0x99 Payload format invalid (QoS 1), not forwarded", v: FIVE, send: () => pub("by/bad", { qos: 1, messageId: 3, payload: badUtf8, properties: { payloadFormatIndicator: true } }), answer: { ack: "puback", code: 0x99 } },
  { name: "§3.3.2.3.2 PUBREC 0x99 Payload format invalid (QoS 2), not forwarded", v: FIVE, send: () => pub("by/bad", { qos: 2, messageId: 3, payload: badUtf8, properties: { payloadFormatIndicator: true } }), answer: { ack: "pubrec", code: 0x99 } },
  { name: "[MQTT-3.3.2-9] a Topic Alias at the maximum (64) is accepted", v: FIVE, send: () => pub("by/alias", { properties: { topicAlias: 64 } }), forwards: ["by/alias"], answer: "accepted" },
  { name: "§3.6.2.1 PUBREL for an unknown packet id: PUBCOMP 0x92 (3.1.1: PUBCOMP)", v: BOTH, send: () => ({ cmd: "pubrel", messageId: 4242 }), answer: (v) => ({ ack: "pubcomp", code: v === 5 ? 0x92 : 0 }) },
  {
    name: "§3.6.2.1 PUBREL after the exchange completed: PUBCOMP 0x92",
    v: FIVE,
    setup: (c) => {
      c.send(pub("t", { qos: 2, messageId: 7 }));
      c.send({ cmd: "pubrel", messageId: 7 });
    },
    send: () => ({ cmd: "pubrel", messageId: 7 }),
    answer: { ack: "pubcomp", code: 0x92 },
  },
  { name: "§3.5.2.1 PUBREC for an unknown packet id: PUBREL 0x92", v: FIVE, send: () => ({ cmd: "pubrec", messageId: 4243 }), answer: { ack: "pubrel", code: 0x92 } },
  { name: "§4.3.2 PUBACK for an unknown packet id is ignored", v: BOTH, send: () => ({ cmd: "puback", messageId: 4244 }), answer: "accepted" },
  { name: "§4.3.3 PUBCOMP for an unknown packet id is ignored", v: BOTH, send: () => ({ cmd: "pubcomp", messageId: 4245 }), answer: "accepted" },
  { name: "§3.8.2.1.2 Subscription Identifier 268435455 (the largest) is accepted", v: FIVE, send: () => ({ ...sub(5, { topic: "a", qos: 0 }), properties: { subscriptionIdentifier: 268435455 } }), answer: { ack: "suback", codes: [0] } },
];

// ---------------------------------------------------------------------------------------------

function run(row: Row, v: V) {
  const b = new SimBroker({ config: { MAX_PACKET_SIZE } });
  // the bystanders: a 5.0 listener and a 3.1.1 talker on the same namespace
  const listener = new SimClient(b, "bystander-listener");
  listener.connect({ version: 5 });
  listener.subscribe("by/#", 1);
  const talker = new SimClient(b, "bystander-talker");
  talker.connect({ version: 4 });
  talker.publish("by/before", "before", 1);

  const c = new SimClient(b, "offender");
  if (row.beforeConnect) c.open(row.parseAs ?? v);
  else {
    c.connect({ version: v });
    expect(c.connected).toBe(true);
    row.setup?.(c);
  }
  const seen = c.packets.length;
  const out = row.send(v);
  if (out instanceof Uint8Array) c.sendRaw(out);
  else c.send(out);
  const got = c.packets.slice(seen);
  const answer = typeof row.answer === "function" ? row.answer(v) : row.answer;

  if (answer === "silent" || (typeof answer === "object" && "disconnect" in answer)) {
    const code = answer === "silent" ? undefined : answer.disconnect;
    if (v === 5 && code !== undefined) {
      expect(got.map((p) => p.cmd)).toEqual(["disconnect"]); // nothing after it [MQTT-3.14.4-1]
      expect(c.disconnectReason).toBe(code);
      const d = got[0] as mqtt.IDisconnectPacket;
      expect(d.properties?.sessionExpiryInterval).toBeUndefined(); // [MQTT-3.14.2-2]
      expect(d.properties?.reasonString).toBeTruthy();
    } else {
      expect(got).toEqual([]);
    }
    expect(c.closed).not.toBeNull();
  } else if (typeof answer === "object" && "connack" in answer) {
    expect(got.map((p) => p.cmd)).toEqual(["connack"]);
    const connack = got[0] as mqtt.IConnackPacket;
    expect(row.parseAs === 4 || v === 4 ? connack.returnCode : connack.reasonCode).toBe(answer.connack);
    if (answer.connack !== 0) {
      expect(connack.sessionPresent).toBe(false); // [MQTT-3.2.2-6]
      expect(c.closed).not.toBeNull(); // [MQTT-3.2.2-7]
    } else {
      expect(c.closed).toBeNull();
      if (v === 5) expect(connack.properties?.assignedClientIdentifier).toMatch(/.+/);
    }
  } else if (answer === "accepted") {
    expect(got).toEqual([]);
    expect(c.closed).toBeNull();
  } else {
    // (after a PUBREC the sim client sends its PUBREL at once: the broker's PUBCOMP follows)
    expect(got.map((p) => p.cmd)).toEqual(answer.ack === "pubrec" ? ["pubrec", "pubcomp"] : [answer.ack]);
    const ack = got[0] as { granted?: unknown[]; reasonCode?: number };
    if ("codes" in answer) expect(ack.granted ?? []).toEqual(answer.codes);
    else expect(ack.reasonCode ?? 0).toBe(answer.code);
    expect(c.closed).toBeNull();
  }
  if (c.closed) expect(c.closed.code).not.toBe(1011); // 1011: an internal error, not a judged packet
  else {
    // still usable
    c.send({ cmd: "pingreq" });
    expect(c.packets.at(-1)?.cmd).toBe("pingresp");
  }
  expect(c.parseErrors).toEqual([]); // what the broker sent is well-formed

  // nothing failed inside, memory/router/store agree, the bystanders carry on
  expect(b.logs.filter((l) => l.startsWith("error:"))).toEqual([]);
  const state = inspect(b.core);
  expect(state.problems).toEqual([]);
  if (c.closed) expect(state.sessions.map((s) => s.clientId)).not.toContain("offender");
  talker.publish("by/after", "after", 1);
  bystandersUndisturbed(listener, talker, row.forwards ?? []);
}

/** The listener got the talker's two messages and, from the offender, only what `forwards` allows. */
function bystandersUndisturbed(listener: SimClient, talker: SimClient, forwards: string[]) {
  const topics = listener.received.map((r) => r.topic);
  expect(topics.filter((t) => t === "by/before" || t === "by/after")).toEqual(["by/before", "by/after"]);
  expect(topics.filter((t) => t !== "by/before" && t !== "by/after")).toEqual(forwards); // refused messages are not forwarded
  expect([listener.connected, talker.connected]).toEqual([true, true]);
}

describe.each([
  ["malformed and forbidden packets after CONNECT", malformed],
  ["the first packet", firstPacket],
  ["acknowledgement codes", acks],
] as const)("%s", (_title, rows) => {
  const cases = rows.flatMap((row) => row.v.map((v) => [`${row.name} (${v === 5 ? "5.0" : "3.1.1"})`, row, v] as const));
  test.each(cases)("%s", (_name, row, v) => run(row, v));
});

// ---------------------------------------------------------------------------------------------
// Several packets in one chunk of bytes, one packet over many: the core's own stream handling.
// (From e2e 13-malformed; the e2e file keeps one merged and one split WebSocket frame.)
describe.each([4, 5] as const)("one stream, protocol %i", (v) => {
  function setup() {
    const b = new SimBroker({ config: { MAX_PACKET_SIZE } });
    const listener = new SimClient(b, "bystander-listener");
    listener.connect({ version: 5 });
    listener.subscribe("by/#", 1);
    const talker = new SimClient(b, "bystander-talker");
    talker.connect({ version: 4 });
    talker.publish("by/before", "before", 1);
    const c = new SimClient(b, "offender");
    c.connect({ version: v });
    const after = () => {
      expect(b.logs.filter((l) => l.startsWith("error:"))).toEqual([]);
      expect(inspect(b.core).problems).toEqual([]);
      talker.publish("by/after", "after", 1);
    };
    return { b, listener, talker, c, after };
  }

  test("§4.13 packets before a malformed one in the same chunk are handled; nothing after it", () => {
    const { listener, talker, c, after } = setup();
    c.sendRaw(Buffer.concat([encode(pub("by/good"), v), Uint8Array.from([0x00, 0x00]), encode(pub("by/after-bad"), v)]));
    expect(c.closed).not.toBeNull();
    if (v === 5) expect(c.disconnectReason).toBe(0x81);
    after();
    bystandersUndisturbed(listener, talker, ["by/good"]);
  });

  test("[MQTT-3.14.4-1] bytes after DISCONNECT in the same chunk are ignored", () => {
    const { listener, talker, c, after } = setup();
    c.sendRaw(Buffer.concat([encode(pub("by/good"), v), encode({ cmd: "disconnect" }, v), encode(pub("by/after-disconnect"), v)]));
    expect(c.closed).not.toBeNull();
    expect(c.packets.map((p) => p.cmd)).toEqual(["connack"]);
    after();
    bystandersUndisturbed(listener, talker, ["by/good"]);
  });

  test("many packets in one chunk are all handled, in order; one packet split byte by byte is reassembled", () => {
    const { listener, talker, c, after } = setup();
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
    after();
    bystandersUndisturbed(listener, talker, ["by/split"]);
    expect(listener.received.find((r) => r.topic === "by/split")?.payload).toBe("a".repeat(300));
  });
});
