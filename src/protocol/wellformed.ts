// Byte-level checks of one complete packet from a client, before mqtt-packet decodes it.
// mqtt-packet checks header flags and QoS, but decodes strings leniently (bad UTF-8 becomes
// U+FFFD), keeps duplicate properties as arrays, accepts properties of other packet types and
// reads past the end of short packets. Those are exactly the gaps hostile input goes through,
// so every rule here is one the spec states; the decoder then sees only well-formed packets.
import { ProtocolError, malformed, protocolError } from "./errors";
import { RC } from "./reason-codes";
import type { ProtocolVersion } from "./version";

/** Where a property may appear in a packet from a client (bit flags). */
const CONNECT = 1,
  WILL = 2,
  PUBLISH = 4,
  ACK = 8,
  SUBSCRIBE = 16,
  UNSUBSCRIBE = 32,
  DISCONNECT = 64,
  AUTH = 128,
  ALL = 255;

type PropType = "byte" | "bool" | "u16" | "u32" | "varint" | "string" | "pair" | "binary";

/** MQTT 5 §2.2.2.2, the properties a client may send. Server-only ids are absent: malformed. */
const PROPERTIES: Record<number, { type: PropType; in: number } | undefined> = {
  0x01: { type: "bool", in: PUBLISH | WILL }, // Payload Format Indicator
  0x02: { type: "u32", in: PUBLISH | WILL }, // Message Expiry Interval
  0x03: { type: "string", in: PUBLISH | WILL }, // Content Type
  0x08: { type: "string", in: PUBLISH | WILL }, // Response Topic
  0x09: { type: "binary", in: PUBLISH | WILL }, // Correlation Data
  0x0b: { type: "varint", in: SUBSCRIBE | PUBLISH }, // Subscription Identifier (PUBLISH: see below)
  0x11: { type: "u32", in: CONNECT | DISCONNECT }, // Session Expiry Interval
  0x15: { type: "string", in: CONNECT | AUTH }, // Authentication Method
  0x16: { type: "binary", in: CONNECT | AUTH }, // Authentication Data
  0x17: { type: "bool", in: CONNECT }, // Request Problem Information
  0x18: { type: "u32", in: WILL }, // Will Delay Interval
  0x19: { type: "bool", in: CONNECT }, // Request Response Information
  0x1c: { type: "string", in: DISCONNECT }, // Server Reference
  0x1f: { type: "string", in: ACK | DISCONNECT | AUTH }, // Reason String
  0x21: { type: "u16", in: CONNECT }, // Receive Maximum
  0x22: { type: "u16", in: CONNECT }, // Topic Alias Maximum
  0x23: { type: "u16", in: PUBLISH }, // Topic Alias
  0x26: { type: "pair", in: ALL }, // User Property (the only one that may repeat)
  0x27: { type: "u32", in: CONNECT }, // Maximum Packet Size
};

const USER_PROPERTY = 0x26;
const SUBSCRIPTION_IDENTIFIER = 0x0b;

/** A read position inside one packet; `end` is the end of the packet. */
interface Cursor {
  b: Uint8Array;
  i: number;
  end: number;
}

const seen = new Uint8Array(64);
const cursor: Cursor = { b: seen, i: 0, end: 0 };

/**
 * The first byte of a packet, judged as soon as it arrives (before its length does): packet
 * type and the flag bits the spec fixes. Garbage is refused at once instead of being waited on.
 */
export function checkFixedHeader(b0: number, version: ProtocolVersion | undefined): void {
  const type = b0 >> 4;
  const flags = b0 & 0x0f;
  switch (type) {
    case 0:
      throw malformed("reserved packet type 0"); // [MQTT-2.2.1] type 0 is forbidden
    case 3:
      if ((flags & 0x06) === 0x06) throw malformed("PUBLISH QoS 3"); // [MQTT-3.3.1-4]
      if ((flags & 0x0e) === 0x08) throw malformed("DUP set on QoS 0"); // [MQTT-3.3.1-2]
      return;
    case 6: // PUBREL, SUBSCRIBE, UNSUBSCRIBE: 0010 [MQTT-3.6.1-1, 3.8.1-1, 3.10.1-1]
    case 8:
    case 10:
      return headerFlags(flags, 2);
    case 15:
      if (version !== undefined && version !== 5) throw malformed("AUTH is MQTT 5 only");
      return headerFlags(flags, 0);
    case 2: // CONNACK, SUBACK, UNSUBACK, PINGRESP only flow from the server
    case 9:
    case 11:
    case 13:
      throw protocolError(`packet type ${type} is sent by servers only`);
    default:
      return headerFlags(flags, 0);
  }
}

/**
 * Throws a ProtocolError if the body of a packet breaks a rule of the spec (the first byte has
 * passed checkFixedHeader). `version` is the connection's protocol version, undefined before CONNECT.
 */
export function checkPacket(b: Uint8Array, bodyStart: number, version: ProtocolVersion | undefined): void {
  const type = b[0]! >> 4;
  const flags = b[0]! & 0x0f;
  const c = cursor; // one cursor, reused: checks run one packet at a time, never nested
  c.b = b;
  c.i = bodyStart;
  c.end = b.length;
  if (type === 1) return checkConnect(c);
  const v5 = version === 5;
  switch (type) {
    case 3:
      return checkPublish(c, flags, v5);
    case 4:
    case 5:
    case 6:
    case 7:
      return checkAck(c, v5);
    case 8:
      return checkSubscribe(c, v5);
    case 10:
      return checkUnsubscribe(c, v5);
    case 12:
      if (c.i !== c.end) throw malformed("PINGREQ with a body");
      return;
    case 14:
      if (!v5) {
        if (c.i !== c.end) throw malformed("DISCONNECT with a body");
        return;
      }
      if (c.i === c.end) return;
      c.i++; // reason code; mqtt-packet checks the value
      if (c.i < c.end) properties(c, DISCONNECT);
      return done(c, "DISCONNECT");
    case 15:
      if (c.i === c.end) return;
      c.i++;
      properties(c, AUTH);
      return done(c, "AUTH");
  }
}

function checkConnect(c: Cursor): void {
  const name = protocolName(c);
  const level = u8(c);
  // [MQTT-3.1.2-1/2] MQTT 3.1 says "MQIsdp" level 3; 3.1.1 and 5.0 say "MQTT" level 4 / 5
  const known = (name === "MQTT" && (level === 4 || level === 5)) || (name === "MQIsdp" && level === 3);
  if (!known) throw new ProtocolError(RC.UNSUPPORTED_PROTOCOL_VERSION, `unsupported protocol ${name || "?"} level ${level}`);
  const v5 = level === 5;
  const f = u8(c);
  if (f & 0x01) throw malformed("CONNECT reserved flag set"); // [MQTT-3.1.2-3]
  const will = (f & 0x04) !== 0;
  const willQos = (f >> 3) & 3;
  const willRetain = (f & 0x20) !== 0;
  if (willQos === 3) throw malformed("will QoS 3"); // [MQTT-3.1.2-14]
  if (!will && (willQos !== 0 || willRetain)) throw malformed("will QoS or retain without a will"); // [MQTT-3.1.2-13/15]
  const hasUser = (f & 0x80) !== 0;
  const hasPassword = (f & 0x40) !== 0;
  if (!v5 && hasPassword && !hasUser) throw malformed("password without user name"); // [MQTT-3.1.2-22]
  u16(c); // keep alive
  if (v5) properties(c, CONNECT);
  utf8(c); // client id [MQTT-3.1.3-4]
  if (will) {
    if (v5) properties(c, WILL);
    utf8(c); // will topic
    binary(c); // will payload
  }
  if (hasUser) utf8(c); // [MQTT-3.1.3-11]
  if (hasPassword) binary(c);
  done(c, "CONNECT");
}

function checkPublish(c: Cursor, flags: number, v5: boolean): void {
  const qos = (flags >> 1) & 3;
  utf8(c); // topic
  if (qos > 0) packetId(c);
  if (v5) {
    // [MQTT-3.3.4-6] a client's PUBLISH carries no Subscription Identifier
    if (properties(c, PUBLISH) & 1) throw protocolError("Subscription Identifier in a client PUBLISH");
  }
  if (c.i > c.end) throw malformed("PUBLISH shorter than its header");
}

function checkAck(c: Cursor, v5: boolean): void {
  packetId(c);
  if (!v5) return done(c, "acknowledgement"); // exactly 2 bytes in 3.1.1
  if (c.i === c.end) return;
  c.i++; // reason code; mqtt-packet checks the value
  if (c.i < c.end) properties(c, ACK);
  done(c, "acknowledgement");
}

function checkSubscribe(c: Cursor, v5: boolean): void {
  packetId(c);
  if (v5) properties(c, SUBSCRIBE);
  if (c.i >= c.end) throw protocolError("SUBSCRIBE without topic filters"); // [MQTT-3.8.3-3]
  while (c.i < c.end) {
    utf8(c);
    const o = u8(c);
    // [MQTT-3.8.3-5] reserved bits; QoS 3 [MQTT-3-8.3-4]; Retain Handling 3 is a Protocol Error (5.0 §3.8.3.1)
    if (o & (v5 ? 0xc0 : 0xfc)) throw malformed("reserved subscription option bits");
    if ((o & 3) === 3) throw malformed("subscription QoS 3");
    if (v5 && ((o >> 4) & 3) === 3) throw protocolError("retain handling 3");
  }
}

function checkUnsubscribe(c: Cursor, v5: boolean): void {
  packetId(c);
  if (v5) properties(c, UNSUBSCRIBE);
  if (c.i >= c.end) throw protocolError("UNSUBSCRIBE without topic filters"); // [MQTT-3.10.3-2]
  while (c.i < c.end) utf8(c);
}

/**
 * Walks a property block [MQTT 5 §2.2.2]: known for the packet, at most once (except User
 * Property), values of the right type. Returns 1 if a Subscription Identifier was present.
 */
function properties(c: Cursor, where: number): number {
  const length = varint(c);
  const end = c.i + length;
  if (end > c.end) throw malformed("properties longer than the packet");
  seen.fill(0);
  let subId = 0;
  const outer = c.end;
  c.end = end;
  while (c.i < end) {
    const id = c.b[c.i++]!;
    const prop = id < 0x80 ? PROPERTIES[id] : undefined;
    if (!prop || !(prop.in & where)) throw malformed(`property 0x${id.toString(16)} not valid here`);
    if (id !== USER_PROPERTY) {
      if (seen[id]) throw protocolError(`property 0x${id.toString(16)} included twice`);
      seen[id] = 1;
    }
    if (id === SUBSCRIPTION_IDENTIFIER) subId = 1;
    switch (prop.type) {
      case "bool":
        if (u8(c) > 1) throw protocolError(`property 0x${id.toString(16)} must be 0 or 1`);
        break;
      case "byte":
        u8(c);
        break;
      case "u16":
        u16(c);
        break;
      case "u32":
        need(c, 4);
        c.i += 4;
        break;
      case "varint":
        varint(c);
        break;
      case "string":
        utf8(c);
        break;
      case "pair":
        utf8(c);
        utf8(c);
        break;
      case "binary":
        binary(c);
        break;
    }
  }
  c.end = outer;
  return subId;
}

function headerFlags(flags: number, expected: number): void {
  // [MQTT-2.2.2-1/2] reserved flag bits must have their fixed values
  if (flags !== expected) throw malformed("reserved header flags");
}

function done(c: Cursor, what: string): void {
  if (c.i !== c.end) throw malformed(`${what} length does not match its content`);
}

function need(c: Cursor, n: number): void {
  if (c.i + n > c.end) throw malformed("packet shorter than its content");
}

function u8(c: Cursor): number {
  need(c, 1);
  return c.b[c.i++]!;
}

function u16(c: Cursor): number {
  need(c, 2);
  const v = (c.b[c.i]! << 8) | c.b[c.i + 1]!;
  c.i += 2;
  return v;
}

function packetId(c: Cursor): void {
  if (u16(c) === 0) throw protocolError("packet identifier 0"); // [MQTT-2.2.1-3]
}

/** Variable Byte Integer [MQTT-1.5.5-1]: at most 4 bytes, minimal encoding. */
function varint(c: Cursor): number {
  let value = 0;
  let mul = 1;
  for (let n = 0; n < 4; n++) {
    const byte = u8(c);
    value += (byte & 0x7f) * mul;
    if ((byte & 0x80) === 0) {
      if (n > 0 && byte === 0) throw malformed("variable byte integer not minimally encoded");
      return value;
    }
    mul *= 128;
  }
  throw malformed("variable byte integer longer than 4 bytes");
}

function binary(c: Cursor): void {
  const n = u16(c);
  need(c, n);
  c.i += n;
}

/** A length-prefixed UTF-8 string: well-formed and without U+0000 [MQTT-1.5.3-1/2]. */
function utf8(c: Cursor): void {
  const n = u16(c);
  need(c, n);
  const end = c.i + n;
  if (!isWellFormedUtf8(c.b, c.i, end)) throw malformed("string is not well-formed UTF-8");
  c.i = end;
}

/** The protocol name, read without the UTF-8 rules (a wrong name is "unsupported", not malformed). */
function protocolName(c: Cursor): string {
  const n = u16(c);
  need(c, n);
  let s = "";
  for (let k = 0; k < n && k < 8; k++) s += String.fromCharCode(c.b[c.i + k]!);
  c.i += n;
  return n > 8 ? "" : s;
}

/**
 * Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF) and no
 * U+0000. A loop over bytes: topic names pass here on every PUBLISH, so no decoder objects.
 */
export function isWellFormedUtf8(b: Uint8Array, start: number, end: number): boolean {
  let i = start;
  while (i < end) {
    const x = b[i]!;
    if (x < 0x80) {
      if (x === 0) return false;
      i++;
      continue;
    }
    let more: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (x >= 0xc2 && x <= 0xdf) more = 1;
    else if (x >= 0xe0 && x <= 0xef) {
      more = 2;
      if (x === 0xe0) lo = 0xa0; // overlong
      else if (x === 0xed) hi = 0x9f; // surrogates U+D800..DFFF
    } else if (x >= 0xf0 && x <= 0xf4) {
      more = 3;
      if (x === 0xf0) lo = 0x90; // overlong
      else if (x === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return false;
    if (i + more >= end) return false; // truncated sequence
    const y = b[i + 1]!;
    if (y < lo || y > hi) return false;
    for (let k = 2; k <= more; k++) {
      const z = b[i + k]!;
      if (z < 0x80 || z > 0xbf) return false;
    }
    i += more + 1;
  }
  return true;
}
