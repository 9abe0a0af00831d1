// The handlers' tables, on the real BrokerCore in plain Node (test/sim): SUBSCRIBE and UNSUBSCRIBE
// return codes, PUBLISH validation, and the acknowledgement codes. One row per rule, named with its
// spec tag (MQTT 5.0 numbering; § where the spec states the rule without a tag), run for each
// protocol version it applies to; after every row the broker is consistent and a bystander pair
// (a 5.0 listener on by/#, a 3.1.1 talker) undisturbed (test/sim/rules.ts). Packets that do not
// get as far as a handler (malformed, forbidden, the first packet) are in protocol-rules.test.ts.
import { describe, test } from "vitest";
import { BOTH, FIVE, FOUR, badUtf8, invalidFilter, pub, rowCases, runRow, sub, type Row } from "../sim/rules";
import { packet, props, str, u16 } from "../packets";

const refused = (v: 4 | 5, code: number) => (v === 5 ? code : 0x80);

// ---------------------------------------------------------------------------------------------
const subscribe: Row[] = [
  {
    name: "[MQTT-3.9.3-1] [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1] SUBACK: one code per filter in order, invalid filters refused",
    v: BOTH,
    send: () => sub(7, { topic: "s/0", qos: 0 }, { topic: "s/1", qos: 1 }, { topic: "s/2", qos: 2 }, { topic: "a/#/b", qos: 1 }, { topic: "a+", qos: 1 }, { topic: "a/+/#", qos: 2 }, { topic: "#x", qos: 0 }, { topic: "", qos: 0 }),
    answer: (v) => ({ ack: "suback", codes: [0, 1, 2, invalidFilter(v), invalidFilter(v), 2, invalidFilter(v), invalidFilter(v)] }),
  },
  {
    name: "[MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1] SUBACK: the edge cases of valid filters are granted",
    v: BOTH,
    send: () => sub(7, ...["#", "+", "+/+", "/", "a//b", "/+", "+/#", "$share/g/#", "$share/g/+/x"].map((topic) => ({ topic, qos: 1 as const }))),
    answer: { ack: "suback", codes: Array<number>(9).fill(1) },
  },
  {
    name: "[MQTT-4.8.2-1] [MQTT-4.8.2-2] SUBACK: malformed shared filters refused, a good one granted",
    v: BOTH,
    send: () => sub(7, ...["$share/g", "$share//t", "$share/g+/t", "$share/g#/t", "$share/g/t/#/x", "$share/ok/t"].map((topic) => ({ topic, qos: 1 as const }))),
    answer: (v) => ({ ack: "suback", codes: [...Array<number>(5).fill(invalidFilter(v)), 1] }),
  },
  {
    name: "[MQTT-3.8.4-3] a filter repeated in one SUBSCRIBE: each copy answered with its own QoS",
    v: BOTH,
    send: () => sub(7, { topic: "rep", qos: 2 }, { topic: "rep", qos: 1 }, { topic: "a/#/b", qos: 1 }, { topic: "a/#/b", qos: 0 }),
    answer: (v) => ({ ack: "suback", codes: [2, 1, invalidFilter(v), invalidFilter(v)] }),
  },
  { name: "SUBACK: a filter above MAX_TOPIC_LEVELS refused 0x8F (3.1.1: 0x80)", v: BOTH, config: { MAX_TOPIC_LEVELS: 3 }, send: () => sub(7, { topic: "a/b/c", qos: 1 }, { topic: "a/b/c/d", qos: 1 }), answer: (v) => ({ ack: "suback", codes: [1, invalidFilter(v)] }) },
  { name: "SUBACK: a filter above MAX_TOPIC_LENGTH refused 0x8F (3.1.1: 0x80)", v: BOTH, config: { MAX_TOPIC_LENGTH: 9 }, send: () => sub(7, { topic: "123456789", qos: 1 }, { topic: "1234567890", qos: 1 }), answer: (v) => ({ ack: "suback", codes: [1, invalidFilter(v)] }) },
  { name: "SUBACK: filters beyond MAX_FILTERS_PER_SUBSCRIBE refused 0x97 Quota exceeded (3.1.1: 0x80)", v: BOTH, config: { MAX_FILTERS_PER_SUBSCRIBE: 2 }, send: () => sub(7, { topic: "f/1", qos: 0 }, { topic: "f/2", qos: 1 }, { topic: "f/3", qos: 2 }), answer: (v) => ({ ack: "suback", codes: [0, 1, refused(v, 0x97)] }) },
  {
    name: "SUBACK: a new filter beyond MAX_SUBSCRIPTIONS refused 0x97 (3.1.1: 0x80); re-subscribing an existing one is not",
    v: BOTH,
    config: { MAX_SUBSCRIPTIONS: 2 },
    setup: (c) => void c.send(sub(1, { topic: "m/1", qos: 0 }, { topic: "m/2", qos: 0 })),
    send: () => sub(7, { topic: "m/3", qos: 1 }, { topic: "m/2", qos: 1 }),
    answer: (v) => ({ ack: "suback", codes: [refused(v, 0x97), 1] }),
  },
  {
    name: "SUBACK: a filter the read ACL denies refused 0x87 Not authorized (3.1.1: 0x80)",
    v: BOTH,
    authVars: { ACL_DEFAULT: JSON.stringify({ subscribe: ["by/#", "ok/#"] }) },
    send: () => sub(7, { topic: "ok/x", qos: 1 }, { topic: "secret/x", qos: 1 }),
    answer: (v) => ({ ack: "suback", codes: [1, refused(v, 0x87)] }),
  },
  { name: "[MQTT-3.8.3-3] No Local on an ordinary subscription is granted", v: FIVE, send: () => sub(7, { topic: "nl", qos: 1, nl: true }), answer: { ack: "suback", codes: [1] } },
  { name: "§3.8.3.1 Retain Handling 0, 1 and 2 are granted", v: FIVE, send: () => sub(7, { topic: "rh/0", qos: 1, rh: 0 }, { topic: "rh/1", qos: 1, rh: 1 }, { topic: "rh/2", qos: 1, rh: 2 }), answer: { ack: "suback", codes: [1, 1, 1] } },
  { name: "§3.8.2.1.2 Subscription Identifier 1 is accepted", v: FIVE, send: () => ({ ...sub(5, { topic: "a", qos: 0 }), properties: { subscriptionIdentifier: 1 } }), answer: { ack: "suback", codes: [0] } },
  { name: "§3.8.2.1.2 Subscription Identifier 268435455 (the largest) is accepted", v: FIVE, send: () => ({ ...sub(5, { topic: "a", qos: 0 }), properties: { subscriptionIdentifier: 268435455 } }), answer: { ack: "suback", codes: [0] } },
  { name: "§3.8.2.1.2 Subscription Identifier 0: Protocol Error", v: FIVE, send: () => packet(0x82, u16(1), props([0x0b, 0]), str("a"), [0]), answer: { disconnect: 0x82 } },
  { name: "[MQTT-3.8.3-4] No Local on a shared subscription: Protocol Error", v: FIVE, send: () => sub(1, { topic: "$share/g/t", qos: 1, nl: true }), answer: { disconnect: 0x82 } },
  { name: "[MQTT-3.8.3-4] No Local on a shared subscription after a valid filter: Protocol Error, nothing kept", v: FIVE, send: () => sub(1, { topic: "ok/first", qos: 1 }, { topic: "$share/g/t", qos: 1, nl: true }), answer: { disconnect: 0x82 } },
  { name: "§3.8.3.1 Retain Handling 3 is a Protocol Error", v: FIVE, send: () => packet(0x82, u16(1), [0], str("a"), [0x30]), answer: { disconnect: 0x82 } },
];

const unsubscribe: Row[] = [
  {
    name: "[MQTT-3.11.3-1] UNSUBACK: 0x00 Success, 0x11 No subscription existed, 0x8F for an invalid filter",
    v: FIVE,
    setup: (c) => void c.send(sub(90, { topic: "u/a", qos: 1 }, { topic: "$share/g/u/b", qos: 1 })),
    send: () => ({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["u/a", "u/never", "$share/g/u/b", "u/#/bad", "u/a"] }),
    answer: { ack: "unsuback", codes: [0x00, 0x11, 0x00, 0x8f, 0x11] },
  },
  {
    name: "[MQTT-3.10.4-4] [MQTT-3.10.4-5] UNSUBACK in 3.1.1 has no payload, whatever the filters",
    v: FOUR,
    setup: (c) => void c.send(sub(90, { topic: "u/a", qos: 1 })),
    send: () => ({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["u/a", "u/never", "u/#/bad"] }),
    answer: { ack: "unsuback", codes: [] },
  },
];

// ---------------------------------------------------------------------------------------------
// The offending PUBLISH go to topics under by/, so a message forwarded by mistake would reach the listener.
const publish: Row[] = [
  { name: "[MQTT-3.3.2-2] topic with # (QoS 0)", v: BOTH, send: () => pub("by/#"), answer: { disconnect: 0x90 } },
  { name: "[MQTT-3.3.2-2] topic with + (QoS 1: no PUBACK either)", v: BOTH, send: () => pub("by/+/b", { qos: 1, messageId: 1 }), answer: { disconnect: 0x90 } },
  { name: "[MQTT-4.7.3-1] empty topic and no Topic Alias", v: BOTH, send: () => pub(""), answer: { disconnect: 0x82 } },
  { name: "[MQTT-3.3.2-8] Topic Alias 0", v: FIVE, send: () => pub("by/t", { properties: { topicAlias: 0 } }), answer: { disconnect: 0x94 } },
  { name: "[MQTT-3.3.2-8] Topic Alias 0 (raw)", v: FIVE, send: () => packet(0x30, str("by/t"), props([0x23, ...u16(0)])), answer: { disconnect: 0x94 } },
  { name: "[MQTT-3.3.2-9] Topic Alias one above the Topic Alias Maximum (64)", v: FIVE, send: () => pub("by/t", { properties: { topicAlias: 65 } }), answer: { disconnect: 0x94 } },
  { name: "[MQTT-3.3.2-9] Topic Alias 65535", v: FIVE, send: () => pub("by/t", { properties: { topicAlias: 65535 } }), answer: { disconnect: 0x94 } },
  { name: "[MQTT-3.3.2-9] Topic Alias 1 when TOPIC_ALIAS_MAXIMUM is 0 (none announced)", v: FIVE, config: { TOPIC_ALIAS_MAXIMUM: 0 }, send: () => pub("by/t", { properties: { topicAlias: 1 } }), answer: { disconnect: 0x94 } },
  { name: "[MQTT-3.3.2-12] a Topic Alias at the maximum (64) is accepted", v: FIVE, send: () => pub("by/alias", { properties: { topicAlias: 64 } }), forwards: ["by/alias"], answer: "accepted" },
  {
    name: "[MQTT-3.3.2-12] an alias set, then used with an empty topic, is resolved",
    v: FIVE,
    setup: (c) => c.send(pub("by/alias", { properties: { topicAlias: 5 } })),
    send: () => pub("", { properties: { topicAlias: 5 } }),
    forwards: ["by/alias", "by/alias"],
    answer: "accepted",
  },
  {
    name: "§3.3.2.3.4 an alias can be re-pointed at another topic",
    v: FIVE,
    setup: (c) => {
      c.send(pub("by/one", { properties: { topicAlias: 5 } }));
      c.send(pub("by/two", { properties: { topicAlias: 5 } }));
    },
    send: () => pub("", { properties: { topicAlias: 5 } }),
    forwards: ["by/one", "by/two", "by/two"],
    answer: "accepted",
  },
  { name: "§3.3.2.3.4 empty topic with a Topic Alias never set: Protocol Error", v: FIVE, send: () => packet(0x30, str(""), props([0x23, ...u16(9)])), answer: { disconnect: 0x82 } },
  { name: "[MQTT-3.3.4-6] Subscription Identifier in a client PUBLISH: Protocol Error", v: FIVE, send: () => packet(0x30, str("by/t"), props([0x0b, 5])), answer: { disconnect: 0x82 } },
  { name: "§3.3.2.3.2 Payload Format Indicator 7: Protocol Error", v: FIVE, send: () => packet(0x30, str("by/t"), props([0x01, 7])), answer: { disconnect: 0x82 } },
  { name: "§3.3.2.3.2 Payload Format Indicator 1, payload not UTF-8, QoS 0: DISCONNECT 0x99", v: FIVE, send: () => pub("by/t", { payload: badUtf8, properties: { payloadFormatIndicator: true } }), answer: { disconnect: 0x99 } },
  { name: "§3.3.2.3.2 Payload Format Indicator 1, payload not UTF-8, QoS 1: PUBACK 0x99, not forwarded", v: FIVE, send: () => pub("by/bad", { qos: 1, messageId: 3, payload: badUtf8, properties: { payloadFormatIndicator: true } }), answer: { ack: "puback", code: 0x99 } },
  { name: "§3.3.2.3.2 Payload Format Indicator 1, payload not UTF-8, QoS 2: PUBREC 0x99, not forwarded", v: FIVE, send: () => pub("by/bad", { qos: 2, messageId: 3, payload: badUtf8, properties: { payloadFormatIndicator: true } }), answer: { ack: "pubrec", code: 0x99 } },
  { name: "§3.3.2.3.2 Payload Format Indicator 1 with UTF-8: PUBACK 0x00, forwarded", v: FIVE, send: () => pub("by/utf8", { qos: 1, messageId: 3, payload: Buffer.from("héllo"), properties: { payloadFormatIndicator: true } }), forwards: ["by/utf8"], answer: { ack: "puback", code: 0 } },
  { name: "§3.3.2.3.2 Payload Format Indicator 0: the payload is not checked, forwarded", v: FIVE, send: () => pub("by/bytes", { qos: 1, messageId: 3, payload: badUtf8, properties: { payloadFormatIndicator: false } }), forwards: ["by/bytes"], answer: { ack: "puback", code: 0 } },
  { name: "§3.4.2.1 PUBACK 0x00 with a subscriber (the bystander)", v: BOTH, send: () => pub("by/offender", { qos: 1, messageId: 3 }), forwards: ["by/offender"], answer: { ack: "puback", code: 0x00 } },
  { name: "§3.4.2.1 PUBACK 0x10 No matching subscribers", v: FIVE, send: () => pub("nobody/here", { qos: 1, messageId: 3 }), answer: { ack: "puback", code: 0x10 } },
  { name: "§3.5.2.1 PUBREC 0x10 No matching subscribers", v: FIVE, send: () => pub("nobody/here", { qos: 2, messageId: 3 }), answer: { ack: "pubrec", code: 0x10 } },
  {
    name: "PUBLISH above MAX_TOPIC_LEVELS: PUBACK 0x90, not forwarded (3.1.1: PUBACK, dropped) [MQTT-3.3.5-2]",
    v: BOTH,
    config: { MAX_TOPIC_LEVELS: 3 },
    send: () => pub("by/b/c/d", { qos: 1, messageId: 3 }),
    answer: (v) => ({ ack: "puback", code: v === 5 ? 0x90 : 0 }),
  },
  {
    name: "PUBLISH the write ACL denies: PUBACK 0x87, not forwarded (3.1.1: PUBACK, dropped) [MQTT-3.3.5-2]",
    v: BOTH,
    authVars: { ACL_DEFAULT: JSON.stringify({ publish: ["by/before", "by/after", "ok/#"], subscribe: ["by/#"] }) },
    send: () => pub("by/denied", { qos: 1, messageId: 3 }),
    answer: (v) => ({ ack: "puback", code: v === 5 ? 0x87 : 0 }),
  },
  {
    name: "[MQTT-4.3.3-10] a QoS 2 PUBLISH repeated before PUBREL: PUBREC again, delivered once",
    v: BOTH,
    setup: (c) => {
      c.releaseOnPubrec = false;
      c.send(pub("by/q2", { qos: 2, messageId: 5 }));
    },
    send: () => pub("by/q2", { qos: 2, messageId: 5, dup: true }),
    forwards: ["by/q2"],
    answer: { ack: "pubrec", code: 0 },
  },
  {
    name: "[MQTT-3.3.4-7] one more unreleased QoS 2 PUBLISH than our Receive Maximum: DISCONNECT 0x93, not forwarded",
    v: FIVE,
    config: { RECEIVE_MAXIMUM: 2 },
    setup: (c) => {
      c.releaseOnPubrec = false;
      c.send(pub("by/rm", { qos: 2, messageId: 1 }));
      c.send(pub("by/rm", { qos: 2, messageId: 2 }));
      c.send(pub("by/rm-q1", { qos: 1, messageId: 9 })); // QoS 1 is acknowledged at once: it never counts
    },
    send: () => pub("by/rm-excess", { qos: 2, messageId: 3 }),
    forwards: ["by/rm", "by/rm", "by/rm-q1"],
    answer: { disconnect: 0x93 },
  },
];

// ---------------------------------------------------------------------------------------------
const acks: Row[] = [
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
  {
    name: "§3.6.2.1 PUBREL for a QoS 2 exchange in progress: PUBCOMP 0x00",
    v: BOTH,
    setup: (c) => {
      c.releaseOnPubrec = false;
      c.send(pub("by/rel", { qos: 2, messageId: 7 }));
    },
    send: () => ({ cmd: "pubrel", messageId: 7 }),
    forwards: ["by/rel"],
    answer: { ack: "pubcomp", code: 0 },
  },
  { name: "§3.5.2.1 PUBREC for an unknown packet id: PUBREL 0x92 (3.1.1: PUBREL)", v: BOTH, send: () => ({ cmd: "pubrec", messageId: 4243 }), answer: (v) => ({ ack: "pubrel", code: v === 5 ? 0x92 : 0 }) },
  { name: "§4.3.2 PUBACK for an unknown packet id is ignored", v: BOTH, send: () => ({ cmd: "puback", messageId: 4244 }), answer: "accepted" },
  { name: "§4.3.3 PUBCOMP for an unknown packet id is ignored", v: BOTH, send: () => ({ cmd: "pubcomp", messageId: 4245 }), answer: "accepted" },
];

describe.each([
  ["SUBSCRIBE", subscribe],
  ["UNSUBSCRIBE", unsubscribe],
  ["PUBLISH", publish],
  ["acknowledgements", acks],
] as const)("%s", (_title, rows) => {
  test.each(rowCases(rows))("%s", (_name, row, v) => runRow(row, v));
});
