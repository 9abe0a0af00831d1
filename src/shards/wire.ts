// The entries one shard sends another on a link (docs/scale-out.md §3.1), packed compactly: a tag
// byte per entry (room for more kinds), LEB128 varints, UTF-8 strings, MQTT 5 properties behind a
// one-byte presence mask (an absent property costs nothing). No JSON, no structured clone. Pure.
import { Buffer } from "node:buffer";
import type { PublishProperties, QoS } from "../protocol/codec";

/** A message for the receiver's local subscribers (never forwarded again). */
export interface PublishEntry {
  kind: "publish";
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: PublishProperties;
  /** absolute ms (MQTT 5 Message Expiry) */
  expiresAt?: number;
  /** publishing client id, for No Local; null: none (API, rules, wills of gone sessions) */
  origin: string | null;
  /** a shared filter "$share/g/f": deliver to ONE member of that group only; null: ordinary */
  share: string | null;
  /** retained last-writer-wins version (0 when not retained); a group's copy (`share`): the passes it made */
  version: number;
}

/** A filter the sender's sessions started (add) or stopped (remove) needing. */
export interface InterestEntry {
  kind: "interest";
  add: boolean;
  filter: string;
}

/**
 * An exact filter (no + or #, not shared) the sender's sessions started or stopped needing, as
 * its 32-bit fingerprint (src/shards/fingerprint.ts): 5 bytes, whatever the filter's length.
 */
export interface FingerprintEntry {
  kind: "fingerprint";
  add: boolean;
  /** 0 … 2³² − 1 */
  fp: number;
}

/**
 * A client connection whose socket is on one shard (the entrance) and whose session is on its
 * home shard: its frames, in order, both ways (docs/scale-out.md §4).
 */
export interface TunnelEntry {
  kind: "tunnel";
  op: TunnelOp;
  /** the tunnel's id, made by the entrance */
  id: string;
  /** frames sent so far on this tunnel in this direction, this one included: a gap means a loss */
  n: number;
  /** open/data: the client's bytes; out: bytes for the client */
  bytes: Uint8Array;
  /** end: the WebSocket close code */
  code: number;
  /** open: the socket's facts as JSON ({ip, br}); end: the close reason */
  text: string;
}

/** entrance → home: open, data, close; home → entrance: out, end */
export const TunnelOp = { Open: 0, Data: 1, Close: 2, Out: 3, End: 4 } as const;
export type TunnelOp = (typeof TunnelOp)[keyof typeof TunnelOp];

/**
 * Re-sharding (docs/scale-out.md §9): state an old shard hands a new one when K is raised. A
 * session (its row, subscriptions and inbound QoS 2 ids as JSON in `meta`), then each of its
 * stored deliveries in order (`meta`: the delivery's fields, `msg`: the message), or a retained
 * message for a new shard's copy (`msg`, with its version).
 */
export interface MoveEntry {
  kind: "move";
  op: MoveOp;
  /** the session's client id (empty for a retained message) */
  clientId: string;
  meta: string;
  msg: PublishEntry | null;
}

export const MoveOp = { Session: 0, Delivery: 1, Retained: 2 } as const;
export type MoveOp = (typeof MoveOp)[keyof typeof MoveOp];

export type Entry = PublishEntry | InterestEntry | FingerprintEntry | TunnelEntry | MoveEntry;

/** Bytes that are not a valid list of entries. The only error decoding ever throws. */
export class WireError extends Error {
  override name = "WireError";
}

const TAG_PUBLISH = 0x50; // "P"
const TAG_INTEREST = 0x49; // "I"
const TAG_TUNNEL = 0x54; // "T"
const TAG_MOVE = 0x4d; // "M"
// a fingerprint's op is in its tag, so the entry is the tag and 4 bytes (big-endian)
const TAG_FP_ADD = 0x46; // "F"
const TAG_FP_REMOVE = 0x66; // "f"

// publish flags
const F_RETAIN = 1 << 2;
const F_PROPS = 1 << 3;
const F_EXPIRES = 1 << 4;
const F_ORIGIN = 1 << 5;
const F_SHARE = 1 << 6;
const F_VERSION = 1 << 7;

// property presence mask
const P_FORMAT = 1 << 0;
const P_EXPIRY = 1 << 1;
const P_ALIAS = 1 << 2;
const P_RESPONSE = 1 << 3;
const P_CORRELATION = 1 << 4;
const P_USER = 1 << 5;
const P_SUBID = 1 << 6;
const P_CONTENT = 1 << 7;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A growable output buffer; one scratch instance serves every small entry. */
class Writer {
  buf: Uint8Array;
  pos = 0;
  constructor(size: number) {
    this.buf = new Uint8Array(size);
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }
  /** unsigned LEB128 of a safe non-negative integer (division, not bit ops: values above 2^32) */
  varint(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`wire: not a non-negative safe integer: ${v}`);
    this.ensure(8);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.pos++] = v;
  }
  bytes(b: Uint8Array): void {
    this.varint(b.byteLength);
    this.ensure(b.byteLength);
    this.buf.set(b, this.pos);
    this.pos += b.byteLength;
  }
  string(s: string): void {
    if (s.length < 43) {
      // at most 3 bytes per UTF-16 unit: the length fits one varint byte, written after the text
      this.ensure(1 + s.length * 3);
      const { written } = encoder.encodeInto(s, this.buf.subarray(this.pos + 1));
      this.buf[this.pos] = written;
      this.pos += 1 + written;
    } else {
      this.bytes(encoder.encode(s));
    }
  }
}

const SCRATCH_MAX = 64 * 1024;
let scratch = new Writer(1024);

/** One entry, packed. */
export function encodeEntry(entry: Entry): Uint8Array {
  const size =
    entry.kind === "publish"
      ? entry.payload.byteLength
      : entry.kind === "tunnel"
        ? entry.bytes.byteLength + entry.text.length * 3
        : entry.kind === "move"
          ? (entry.msg?.payload.byteLength ?? 0) + (entry.meta.length + entry.clientId.length) * 3
          : 0;
  const w = size > SCRATCH_MAX / 2 ? new Writer(size + 256) : scratch;
  w.pos = 0;
  if (entry.kind === "publish") writePublish(w, entry);
  else if (entry.kind === "interest") {
    w.byte(TAG_INTEREST);
    w.byte(entry.add ? 1 : 0);
    w.string(entry.filter);
  } else if (entry.kind === "fingerprint") {
    const fp = entry.fp;
    if (!Number.isInteger(fp) || fp < 0 || fp > 0xffffffff) throw new RangeError(`wire: not a 32-bit fingerprint: ${fp}`);
    w.ensure(5);
    w.buf[w.pos] = entry.add ? TAG_FP_ADD : TAG_FP_REMOVE;
    w.buf[w.pos + 1] = fp >>> 24;
    w.buf[w.pos + 2] = (fp >>> 16) & 0xff;
    w.buf[w.pos + 3] = (fp >>> 8) & 0xff;
    w.buf[w.pos + 4] = fp & 0xff;
    w.pos += 5;
  } else if (entry.kind === "tunnel") {
    w.byte(TAG_TUNNEL);
    w.byte(entry.op);
    w.string(entry.id);
    w.varint(entry.n);
    w.varint(entry.code);
    w.string(entry.text);
    w.bytes(entry.bytes);
  } else if (entry.kind === "move") {
    w.byte(TAG_MOVE);
    w.byte(entry.op);
    w.string(entry.clientId);
    w.string(entry.meta);
    w.byte(entry.msg ? 1 : 0);
    if (entry.msg) writePublish(w, entry.msg);
  } else throw new RangeError(`wire: unknown entry kind ${(entry as { kind: unknown }).kind}`);
  const out = w.buf.slice(0, w.pos);
  if (w === scratch && scratch.buf.length > SCRATCH_MAX) scratch = new Writer(1024);
  return out;
}

function writePublish(w: Writer, e: PublishEntry): void {
  const props = e.properties && propertyMask(e.properties) !== 0 ? e.properties : undefined;
  let flags = e.qos & 3;
  if (e.retain) flags |= F_RETAIN;
  if (props) flags |= F_PROPS;
  if (e.expiresAt !== undefined) flags |= F_EXPIRES;
  if (e.origin !== null) flags |= F_ORIGIN;
  if (e.share !== null) flags |= F_SHARE;
  if (e.version !== 0) flags |= F_VERSION;
  w.byte(TAG_PUBLISH);
  w.byte(flags);
  w.string(e.topic);
  if (e.origin !== null) w.string(e.origin);
  if (e.share !== null) w.string(e.share);
  if (e.expiresAt !== undefined) w.varint(e.expiresAt);
  if (e.version !== 0) w.varint(e.version);
  if (props) writeProperties(w, props);
  w.bytes(e.payload);
}

function propertyMask(p: PublishProperties): number {
  let m = 0;
  if (p.payloadFormatIndicator !== undefined) m |= P_FORMAT;
  if (p.messageExpiryInterval !== undefined) m |= P_EXPIRY;
  if (p.topicAlias !== undefined) m |= P_ALIAS;
  if (p.responseTopic !== undefined) m |= P_RESPONSE;
  if (p.correlationData !== undefined) m |= P_CORRELATION;
  if (p.userProperties !== undefined) m |= P_USER;
  if (p.subscriptionIdentifier !== undefined) m |= P_SUBID;
  if (p.contentType !== undefined) m |= P_CONTENT;
  return m;
}

function writeProperties(w: Writer, p: PublishProperties): void {
  w.byte(propertyMask(p));
  if (p.payloadFormatIndicator !== undefined) w.byte(p.payloadFormatIndicator ? 1 : 0);
  if (p.messageExpiryInterval !== undefined) w.varint(p.messageExpiryInterval);
  if (p.topicAlias !== undefined) w.varint(p.topicAlias);
  if (p.responseTopic !== undefined) w.string(p.responseTopic);
  if (p.correlationData !== undefined) w.bytes(p.correlationData);
  if (p.userProperties !== undefined) {
    // per key: 0 then one string, or n + 1 then an array of n strings (so ["x"] stays an array)
    const keys = Object.keys(p.userProperties);
    w.varint(keys.length);
    for (const k of keys) {
      const v = p.userProperties[k]!;
      w.string(k);
      if (typeof v === "string") {
        w.varint(0);
        w.string(v);
      } else {
        w.varint(v.length + 1);
        for (const s of v) w.string(s);
      }
    }
  }
  if (p.subscriptionIdentifier !== undefined) {
    const v = p.subscriptionIdentifier;
    if (typeof v === "number") {
      w.varint(0);
      w.varint(v);
    } else {
      w.varint(v.length + 1);
      for (const n of v) w.varint(n);
    }
  }
  if (p.contentType !== undefined) w.string(p.contentType);
}

/** Several packed entries as one (what a chunk or a volatile run carries). */
export function concatEntries(list: Uint8Array[]): Uint8Array {
  if (list.length === 1) return list[0]!;
  let n = 0;
  for (const b of list) n += b.byteLength;
  const out = new Uint8Array(n);
  let at = 0;
  for (const b of list) {
    out.set(b, at);
    at += b.byteLength;
  }
  return out;
}

/** Reads packed entries; throws WireError (and nothing else) on anything malformed. */
class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}
  get left(): number {
    return this.buf.byteLength - this.pos;
  }
  byte(): number {
    if (this.pos >= this.buf.byteLength) throw new WireError("truncated entry");
    return this.buf[this.pos++]!;
  }
  varint(): number {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.byte();
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (v > Number.MAX_SAFE_INTEGER) throw new WireError("varint too large");
        return v;
      }
      scale *= 0x80;
    }
    throw new WireError("varint too long");
  }
  /** a view of the next `n` bytes (no copy) */
  take(n: number): Uint8Array {
    if (n > this.left) throw new WireError("length past the end");
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  bytes(): Buffer {
    const b = this.take(this.varint());
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  }
  string(): string {
    const b = this.take(this.varint());
    try {
      return decoder.decode(b);
    } catch {
      throw new WireError("invalid UTF-8");
    }
  }
  /** a count of items each taking at least `min` bytes: bounded by what is left, so no long loop */
  count(min: number): number {
    const n = this.varint();
    if (n * min > this.left) throw new WireError("count past the end");
    return n;
  }
}

/** Calls `onEntry` for each entry packed in `bytes`, in order. Payloads are views into `bytes`. */
export function decodeEntries(bytes: Uint8Array, onEntry: (entry: Entry) => void): void {
  const r = new Reader(bytes);
  while (r.left > 0) onEntry(readEntry(r));
}

/** The same as a list. */
export function decodeAll(bytes: Uint8Array): Entry[] {
  const out: Entry[] = [];
  decodeEntries(bytes, (e) => out.push(e));
  return out;
}

function readEntry(r: Reader): Entry {
  const tag = r.byte();
  if (tag === TAG_PUBLISH) return readPublish(r);
  if (tag === TAG_INTEREST) {
    const add = r.byte();
    if (add > 1) throw new WireError("bad interest flag");
    return { kind: "interest", add: add === 1, filter: r.string() };
  }
  if (tag === TAG_FP_ADD || tag === TAG_FP_REMOVE) {
    const b = r.take(4);
    return { kind: "fingerprint", add: tag === TAG_FP_ADD, fp: ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0 };
  }
  if (tag === TAG_TUNNEL) {
    const op = r.byte();
    if (op > TunnelOp.End) throw new WireError("bad tunnel op");
    const id = r.string();
    const n = r.varint();
    const code = r.varint();
    const text = r.string();
    return { kind: "tunnel", op: op as TunnelOp, id, n, code, text, bytes: r.bytes() };
  }
  if (tag === TAG_MOVE) {
    const op = r.byte();
    if (op > MoveOp.Retained) throw new WireError("bad move op");
    const clientId = r.string();
    const meta = r.string();
    const has = r.byte();
    if (has > 1) throw new WireError("bad move flag");
    let msg: PublishEntry | null = null;
    if (has === 1) {
      if (r.byte() !== TAG_PUBLISH) throw new WireError("a move's message is not a publish entry");
      msg = readPublish(r);
    }
    return { kind: "move", op: op as MoveOp, clientId, meta, msg };
  }
  throw new WireError(`unknown entry tag ${tag}`);
}

function readPublish(r: Reader): PublishEntry {
  const flags = r.byte();
  const qos = flags & 3;
  if (qos === 3) throw new WireError("bad QoS");
  const topic = r.string();
  const origin = flags & F_ORIGIN ? r.string() : null;
  const share = flags & F_SHARE ? r.string() : null;
  const expiresAt = flags & F_EXPIRES ? r.varint() : undefined;
  const version = flags & F_VERSION ? r.varint() : 0;
  const properties = flags & F_PROPS ? readProperties(r) : undefined;
  const payload = r.bytes();
  const e: PublishEntry = { kind: "publish", topic, payload, qos: qos as QoS, retain: (flags & F_RETAIN) !== 0, origin, share, version };
  if (properties) e.properties = properties;
  if (expiresAt !== undefined) e.expiresAt = expiresAt;
  return e;
}

function readProperties(r: Reader): PublishProperties {
  const m = r.byte();
  const p: PublishProperties = {};
  if (m & P_FORMAT) {
    const b = r.byte();
    if (b > 1) throw new WireError("bad payload format indicator");
    p.payloadFormatIndicator = b === 1;
  }
  if (m & P_EXPIRY) p.messageExpiryInterval = r.varint();
  if (m & P_ALIAS) p.topicAlias = r.varint();
  if (m & P_RESPONSE) p.responseTopic = r.string();
  if (m & P_CORRELATION) p.correlationData = r.bytes();
  if (m & P_USER) {
    const user: Record<string, string | string[]> = {};
    const keys = r.count(3);
    for (let i = 0; i < keys; i++) {
      const k = r.string();
      const n = r.varint();
      let v: string | string[];
      if (n === 0) v = r.string();
      else {
        if ((n - 1) > r.left) throw new WireError("count past the end");
        v = [];
        for (let j = 1; j < n; j++) v.push(r.string());
      }
      // defineProperty: a key "__proto__" stays an own property, as the codec makes it
      Object.defineProperty(user, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
    p.userProperties = user;
  }
  if (m & P_SUBID) {
    const n = r.varint();
    if (n === 0) p.subscriptionIdentifier = r.varint();
    else {
      if (n - 1 > r.left) throw new WireError("count past the end");
      const ids: number[] = [];
      for (let j = 1; j < n; j++) ids.push(r.varint());
      p.subscriptionIdentifier = ids;
    }
  }
  if (m & P_CONTENT) p.contentType = r.string();
  return p;
}
