// Malformed packets at the protocol layer: bytes → the reason code the connection ends with.
import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { PacketReader, type Packet } from "../../src/protocol/codec";
import { ProtocolError } from "../../src/protocol/errors";
import { isWellFormedUtf8 } from "../../src/protocol/wellformed";
import { connectBytes, encode, packet, props, str, u16, u32, vbi, type Bytes } from "../packets";

const OK = 0;
const MALFORMED = 0x81;
const PROTOCOL = 0x82;
const UNSUPPORTED = 0x84;
const TOO_LARGE = 0x95;

/** Reads bytes on a connection of `version` (undefined: before CONNECT); 0 or the error's reason code. */
function outcome(bytes: Uint8Array, version?: 4 | 5, max = 1024): number {
  const reader = new PacketReader(version, max);
  try {
    reader.read(bytes, () => {});
    return OK;
  } catch (e) {
    if (e instanceof ProtocolError) return e.reasonCode;
    throw e;
  }
}

const badUtf8: [string, Bytes][] = [
  ["overlong NUL", [0xc0, 0x80]],
  ["U+0000", [0x61, 0x00]],
  ["lone continuation", [0x80]],
  ["surrogate U+D800", [0xed, 0xa0, 0x80]],
  ["above U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
  ["truncated sequence", [0xe2, 0x82]],
  ["0xFF", [0xff]],
];

describe("CONNECT", () => {
  const cases: [string, Uint8Array, number][] = [
    ["valid 3.1.1", connectBytes({}), OK],
    ["valid 5.0", connectBytes({ version: 5 }), OK],
    ["valid 3.1", connectBytes({ version: 3 }), OK],
    ["unknown protocol name", connectBytes({ name: "MQTX" }), UNSUPPORTED],
    ["protocol level 6", connectBytes({ version: 6 as 4 }), UNSUPPORTED],
    ["MQTT with level 3", connectBytes({ name: "MQTT", version: 3 }), UNSUPPORTED],
    ["bridge bit", connectBytes({ version: 0x84 as 4 }), UNSUPPORTED],
    ["reserved connect flag", connectBytes({ flags: 0x03 }), MALFORMED],
    ["will QoS 3", connectBytes({ flags: 0x1e, tail: [...str("w"), ...str("x")] }), MALFORMED],
    ["will retain without will", connectBytes({ flags: 0x22 }), MALFORMED],
    ["3.1.1 password without user name", connectBytes({ flags: 0x42, tail: str("pw") }), MALFORMED],
    ["5.0 password without user name", connectBytes({ version: 5, flags: 0x42, tail: str("pw") }), OK],
    ["trailing bytes", connectBytes({ tail: [1, 2, 3] }), MALFORMED],
    ["client id longer than the packet", packet(0x10, str("MQTT"), [4, 2, 0, 0], u16(50), [0x61]), MALFORMED],
    ["header flags", Uint8Array.from([0x11, ...connectBytes({}).slice(1)]), MALFORMED],
    ["5.0 duplicate Session Expiry", connectBytes({ version: 5, connectProps: props([0x11, ...u32(10)], [0x11, ...u32(20)]) }), PROTOCOL],
    ["5.0 Topic Alias in CONNECT", connectBytes({ version: 5, connectProps: props([0x23, ...u16(1)]) }), MALFORMED],
    ["5.0 server-only property", connectBytes({ version: 5, connectProps: props([0x24, 1]) }), MALFORMED],
    ["5.0 unknown property id", connectBytes({ version: 5, connectProps: props([0x7f, 0]) }), MALFORMED],
    ["5.0 Request Problem Information 2", connectBytes({ version: 5, connectProps: props([0x17, 2]) }), PROTOCOL],
    ["5.0 property length past the packet", connectBytes({ version: 5, connectProps: [50, 0x11, 0, 0, 0, 1] }), MALFORMED],
    ["5.0 repeated User Property", connectBytes({ version: 5, connectProps: props([0x26, ...str("k"), ...str("1")], [0x26, ...str("k"), ...str("2")]) }), OK],
    ["5.0 User Property with bad UTF-8", connectBytes({ version: 5, connectProps: props([0x26, ...str([0xc0, 0x80]), ...str("v")]) }), MALFORMED],
    ...badUtf8.map(([what, b]): [string, Uint8Array, number] => [`client id: ${what}`, connectBytes({ clientId: b }), MALFORMED]),
  ];
  test.each(cases)("%s", (_what, bytes, expected) => {
    expect(outcome(bytes)).toBe(expected);
  });
});

describe.each([4, 5] as const)("after CONNECT, protocol %i", (v) => {
  const v5 = v === 5;
  const noProps: Bytes = v5 ? [0] : [];
  const cases: [string, Uint8Array, number][] = [
    ["PUBLISH QoS 0", packet(0x30, str("a/b"), noProps, [1, 2]), OK],
    ["PUBLISH QoS 3", packet(0x36, str("a"), u16(1), noProps), MALFORMED],
    ["PUBLISH DUP on QoS 0", packet(0x38, str("a"), noProps), MALFORMED],
    ["PUBLISH packet id 0", packet(0x32, str("a"), u16(0), noProps), PROTOCOL],
    ["PUBLISH shorter than its topic", packet(0x30, u16(9), [0x61]), MALFORMED],
    ["PUBREL with flags 0", packet(0x60, u16(1)), MALFORMED],
    ["SUBSCRIBE with flags 0", packet(0x80, u16(1), noProps, str("a"), [0]), MALFORMED],
    ["SUBSCRIBE without filters", packet(0x82, u16(1), noProps), PROTOCOL],
    ["SUBSCRIBE packet id 0", packet(0x82, u16(0), noProps, str("a"), [0]), PROTOCOL],
    ["SUBSCRIBE QoS 3", packet(0x82, u16(1), noProps, str("a"), [3]), MALFORMED],
    ["SUBSCRIBE reserved option bits", packet(0x82, u16(1), noProps, str("a"), [0xc0]), MALFORMED],
    ["SUBSCRIBE filter missing its options", packet(0x82, u16(1), noProps, str("a")), MALFORMED],
    ["UNSUBSCRIBE without filters", packet(0xa2, u16(1), noProps), PROTOCOL],
    ["PINGREQ with a body", packet(0xc0, [0]), MALFORMED],
    ["PINGREQ", packet(0xc0), OK],
    ["CONNACK from a client", packet(0x20, [0, 0]), PROTOCOL],
    ["reserved packet type 0", packet(0x00), MALFORMED],
    ["remaining length of 5 bytes", Uint8Array.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f]), MALFORMED],
    // judged on the first byte, without waiting for a length that may never come
    ["HTTP text (\"GE\": PUBACK with flags 7)", Uint8Array.from([0x47, 0x45]), MALFORMED],
    ["0xDE: PINGRESP from a client, length incomplete", Uint8Array.from([0xde, 0xad]), PROTOCOL],
    ["PUBLISH QoS 3, nothing else yet", Uint8Array.from([0x36]), MALFORMED],
    ["remaining length not minimal", Uint8Array.from([0xc0, 0x80, 0x00]), MALFORMED],
    ["over the maximum packet size", packet(0x30, str("a"), noProps, new Array(2000).fill(0)), TOO_LARGE],
    ["announced over the maximum before it arrives", Uint8Array.from([0x30, ...vbi(100_000), 0, 1]), TOO_LARGE],
    ...badUtf8.map(([what, b]): [string, Uint8Array, number] => [`PUBLISH topic: ${what}`, packet(0x30, str(b), noProps), MALFORMED]),
    ...badUtf8.map(([what, b]): [string, Uint8Array, number] => [`SUBSCRIBE filter: ${what}`, packet(0x82, u16(1), noProps, str(b), [0]), MALFORMED]),
    ...badUtf8.map(([what, b]): [string, Uint8Array, number] => [`UNSUBSCRIBE filter: ${what}`, packet(0xa2, u16(1), noProps, str(b)), MALFORMED]),
  ];
  if (v5) {
    cases.push(
      ["PUBLISH with Subscription Identifier", packet(0x30, str("a"), props([0x0b, 1])), PROTOCOL],
      ["PUBLISH duplicate Topic Alias", packet(0x30, str("a"), props([0x23, ...u16(1)], [0x23, ...u16(2)])), PROTOCOL],
      ["PUBLISH Payload Format Indicator 2", packet(0x30, str("a"), props([0x01, 2])), PROTOCOL],
      ["PUBLISH Session Expiry (not a PUBLISH property)", packet(0x30, str("a"), props([0x11, ...u32(1)])), MALFORMED],
      ["PUBLISH Response Topic with bad UTF-8", packet(0x30, str("a"), props([0x08, ...str([0xed, 0xa0, 0x80])])), MALFORMED],
      ["PUBLISH Content Type + Correlation Data", packet(0x30, str("a"), props([0x03, ...str("text/plain")], [0x09, ...str("id")])), OK],
      ["PUBLISH property varint of 5 bytes", packet(0x30, str("a"), [0xff, 0xff, 0xff, 0xff, 0x01]), MALFORMED],
      ["SUBSCRIBE duplicate Subscription Identifier", packet(0x82, u16(1), props([0x0b, 1], [0x0b, 2]), str("a"), [0]), PROTOCOL],
      ["SUBSCRIBE Retain Handling 3 (5.0 §3.8.3.1: a Protocol Error)", packet(0x82, u16(1), [0], str("a"), [0x30]), PROTOCOL],
      ["PUBACK with reason and Reason String", packet(0x40, u16(1), [0x10], props([0x1f, ...str("ok")])), OK],
      ["PUBACK with Session Expiry", packet(0x40, u16(1), [0], props([0x11, ...u32(1)])), MALFORMED],
      ["PUBACK reason code 0x05 (not a PUBACK code)", packet(0x40, u16(1), [0x05]), MALFORMED],
      ["DISCONNECT with Session Expiry", packet(0xe0, [0], props([0x11, ...u32(5)])), OK],
      ["DISCONNECT with Topic Alias", packet(0xe0, [0], props([0x23, ...u16(1)])), MALFORMED],
      ["DISCONNECT with an unknown reason code", packet(0xe0, [0x03]), MALFORMED],
      ["AUTH Continue authentication", packet(0xf0, [0x18], [0]), OK],
    );
  } else {
    cases.push(
      ["PUBACK of 3 bytes", packet(0x40, u16(1), [0]), MALFORMED],
      ["PUBACK of 1 byte", packet(0x40, [1]), MALFORMED],
      ["DISCONNECT with a body", packet(0xe0, [0]), MALFORMED],
      ["AUTH in 3.1.1", packet(0xf0), MALFORMED],
      ["SUBSCRIBE option bit 2", packet(0x82, u16(1), str("a"), [0x04]), MALFORMED],
    );
  }
  test.each(cases)("%s", (_what, bytes, expected) => {
    expect(outcome(bytes, v)).toBe(expected);
  });
});

describe("stream reassembly", () => {
  const valid = (v: 4 | 5): Uint8Array[] => [
    encode({ cmd: "publish", topic: "a/b", payload: Buffer.from("hello"), qos: 1, messageId: 7, retain: false, dup: false }, v),
    encode({ cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "x/#", qos: 2 }] }, v),
    encode({ cmd: "pingreq" }, v),
    encode({ cmd: "publish", topic: "big", payload: Buffer.alloc(300, 7), qos: 0, retain: true, dup: false }, v),
    encode({ cmd: "unsubscribe", messageId: 3, unsubscriptions: ["x/#"] }, v),
    encode({ cmd: "disconnect" }, v),
  ];

  test.each([4, 5] as const)("any split of a valid stream gives the same packets (protocol %i)", (v) => {
    const stream = Uint8Array.from(valid(v).flatMap((b) => [...b]));
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 12 }), (cuts) => {
        const reader = new PacketReader(v, 1024);
        const got: Packet[] = [];
        let at = 0;
        for (const cut of [...cuts.sort((a, b) => a - b), stream.length]) {
          reader.read(stream.slice(at, cut), (p) => got.push(p));
          at = cut;
        }
        expect(got.map((p) => p.cmd)).toEqual(["publish", "subscribe", "pingreq", "publish", "unsubscribe", "disconnect"]);
        expect((got[3] as { payload: Uint8Array }).payload.length).toBe(300);
      }),
      { numRuns: 300 },
    );
  });

  test("valid packets from mqtt-packet's encoder all pass (property)", () => {
    const topic = fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 }).filter((t) => !/[+#\u0000]/.test(t));
    const pub = fc.record({
      topic,
      qos: fc.constantFrom(0, 1, 2) as fc.Arbitrary<0 | 1 | 2>,
      retain: fc.boolean(),
      payload: fc.uint8Array({ maxLength: 50 }),
      id: fc.integer({ min: 1, max: 65535 }),
      contentType: fc.option(fc.string({ unit: "grapheme", maxLength: 10 })),
      user: fc.option(fc.dictionary(fc.string({ unit: "grapheme", minLength: 1, maxLength: 5 }), fc.string({ unit: "grapheme", maxLength: 5 }))),
    });
    fc.assert(
      fc.property(pub, fc.constantFrom(4, 5) as fc.Arbitrary<4 | 5>, (m, v) => {
        const properties: Record<string, unknown> = {};
        if (m.contentType !== null) properties.contentType = m.contentType;
        if (m.user !== null && Object.keys(m.user).length) properties.userProperties = m.user;
        const bytes = encode(
          { cmd: "publish", topic: m.topic, qos: m.qos, retain: m.retain, dup: false, payload: Buffer.from(m.payload), messageId: m.qos ? m.id : undefined, properties: v === 5 ? properties : undefined },
          v,
        );
        const got: Packet[] = [];
        new PacketReader(v, 4096).read(bytes, (p) => got.push(p));
        expect(got).toHaveLength(1);
        expect((got[0] as { topic: string }).topic).toBe(m.topic);
      }),
      { numRuns: 500 },
    );
  });
});

describe("UTF-8", () => {
  test("agrees with a fatal TextDecoder, minus U+0000 (property)", () => {
    const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), (b) => {
        let expected = true;
        try {
          expected = !decoder.decode(b).includes("\u0000");
        } catch {
          expected = false;
        }
        expect(isWellFormedUtf8(b, 0, b.length)).toBe(expected);
      }),
      { numRuns: 5000 },
    );
    for (const s of ["héllo", "日本語", "🙂/x", "\uffff"]) {
      const b = new TextEncoder().encode(s);
      expect(isWellFormedUtf8(b, 0, b.length)).toBe(true);
    }
  });
});
