// The only importer of mqtt-packet: a per-connection stream reader and packet encoding.
import * as mqtt from "mqtt-packet";
import { Buffer } from "node:buffer";
import { ProtocolError, malformed } from "./errors";
import { RC } from "./reason-codes";
import { checkFixedHeader, checkPacket } from "./wellformed";
import type { ProtocolVersion } from "./version";

export type Packet = mqtt.Packet;
export type ConnectPacket = mqtt.IConnectPacket;
export type PublishPacket = mqtt.IPublishPacket;
export type SubscribePacket = mqtt.ISubscribePacket;
export type UnsubscribePacket = mqtt.IUnsubscribePacket;
export type DisconnectPacket = mqtt.IDisconnectPacket;
export type QoS = mqtt.QoS;
export type PublishProperties = NonNullable<mqtt.IPublishPacket["properties"]>;
export type { ProtocolVersion } from "./version";

/**
 * Reassembles MQTT packets from a byte stream: a WebSocket frame may hold several packets or
 * part of one, so the reader (and its partial bytes) lives as long as the connection. Framing is
 * done here, so the size limit applies as soon as a length is announced, and each complete
 * packet is checked byte by byte (wellformed.ts) before it is decoded. Only the bytes of an
 * unfinished packet are per-connection state; the decoder is shared.
 */
export class PacketReader {
  /** bytes of an incomplete packet, and its total size once the header is known (0 before) */
  private chunks: Uint8Array[] | null = null;
  private buffered = 0;
  private need = 0;
  /** the size limit now: `maxConnectSize` until CONNECT has been read, then `maxPacketSize` */
  private limit: number;

  constructor(
    private version: ProtocolVersion | undefined,
    private readonly maxPacketSize: number,
    /** the largest first packet (CONNECT) a new connection may send; 0 = maxPacketSize */
    maxConnectSize = 0,
  ) {
    this.limit = version === undefined && maxConnectSize > 0 ? Math.min(maxConnectSize, maxPacketSize) : maxPacketSize;
  }

  /** bytes of an unfinished packet held now */
  get pending(): number {
    return this.buffered;
  }

  /**
   * Feeds bytes and hands each complete packet to `onPacket`, in order. Throws a ProtocolError
   * once the stream is broken; the packets before the fault have been handed over by then.
   */
  read(bytes: Uint8Array, onPacket: (p: Packet, size: number) => void): void {
    let data = bytes;
    if (this.chunks) {
      this.chunks.push(bytes);
      this.buffered += bytes.byteLength;
      if (this.need === 0) {
        // The header was incomplete (under 5 bytes): join the little there is and look again.
        data = concat(this.chunks, this.buffered);
        this.chunks = [data];
        const frame = frameAt(data, 0, this.limit);
        if (frame) this.need = frame.total;
      }
      if (this.need === 0 || this.buffered < this.need) return;
      data = concat(this.chunks, this.buffered);
      this.chunks = null;
      this.buffered = 0;
      this.need = 0;
    }
    let off = 0;
    while (off < data.byteLength) {
      checkFixedHeader(data[off]!, this.version);
      const frame = frameAt(data, off, this.limit);
      if (!frame || data.byteLength - off < frame.total) {
        const tail = data.slice(off); // a copy: the frame's buffer is not ours to keep
        this.chunks = [tail];
        this.buffered = tail.byteLength;
        this.need = frame ? frame.total : 0;
        return;
      }
      const packetBytes = off === 0 && frame.total === data.byteLength ? data : data.subarray(off, off + frame.total);
      off += frame.total;
      checkPacket(packetBytes, frame.bodyStart, this.version);
      const packet = decodePacket(packetBytes, frame.bodyStart, this.version);
      if (packet.cmd === "connect" && this.version === undefined) {
        this.version = packet.protocolVersion as ProtocolVersion;
        this.limit = this.maxPacketSize;
      }
      onPacket(packet, frame.total);
    }
  }
}

/** The fixed header at `off`: null while incomplete; throws on a bad length or one over the limit. */
function frameAt(b: Uint8Array, off: number, maxPacketSize: number): { bodyStart: number; total: number } | null {
  let length = 0;
  let mul = 1;
  for (let n = 0; n < 4; n++) {
    const i = off + 1 + n;
    if (i >= b.byteLength) return null;
    const byte = b[i]!;
    length += (byte & 0x7f) * mul;
    if ((byte & 0x80) === 0) {
      if (n > 0 && byte === 0) throw malformed("remaining length not minimally encoded"); // [MQTT-1.5.5-1]
      const total = 2 + n + length;
      if (total > maxPacketSize) throw new ProtocolError(RC.PACKET_TOO_LARGE, "packet exceeds the maximum packet size");
      return { bodyStart: 2 + n, total };
    }
    mul *= 128;
  }
  throw malformed("remaining length longer than 4 bytes");
}

/** The chunks as one array of `size` bytes (the first itself when it is the only one). */
export function concat(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

const PINGREQ: Packet = Object.freeze({ cmd: "pingreq" }) as Packet;
const ACK_TYPES = [undefined, undefined, undefined, undefined, "puback", "pubrec", "pubrel", "pubcomp"] as const;
const utf8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/**
 * Short ASCII topics recently decoded, in a small table indexed by a hash of a few bytes: most
 * traffic repeats a bounded set of topics, so the usual PUBLISH reuses its topic string (no
 * allocation, and its hash is already computed for the topic maps) instead of making one.
 */
const recentTopics: (string | undefined)[] = new Array<string | undefined>(256).fill(undefined);

/** A topic string: ASCII (the usual case) without a decoder call. */
function decodeString(buf: Uint8Array, start: number, end: number): string {
  const n = end - start;
  if (n === 0) return "";
  if (n <= 64) {
    const slot = (n * 31 + buf[start]! * 7 + buf[start + (n >> 1)]! * 3 + buf[end - 1]!) & 255;
    const recent = recentTopics[slot];
    if (recent !== undefined && recent.length === n && sameAscii(recent, buf, start)) return recent;
    let ascii = true;
    for (let i = start; i < end; i++) if (buf[i]! > 0x7f) ascii = false;
    if (ascii) return (recentTopics[slot] = String.fromCharCode.apply(null, buf.subarray(start, end) as unknown as number[]));
  }
  return utf8.decode(buf.subarray(start, end));
}

function sameAscii(s: string, buf: Uint8Array, start: number): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) !== buf[start + i]) return false;
  return true;
}

/**
 * Decodes one complete, already checked packet (wellformed.ts). PUBLISH without properties,
 * acknowledgements and PINGREQ, the packets of the hot path, are decoded here by hand; the rest
 * by mqtt-packet.
 */
export function decodePacket(buf: Uint8Array, bodyStart: number, version: ProtocolVersion | undefined): Packet {
  const start = 0;
  const end = buf.byteLength;
  const header = buf[0]!;
  const type = header >> 4;
  const pos = bodyStart;
  const length = end - pos;
  if (version !== undefined) {
    if (type === 3) {
      const fast = decodePublish(buf, header, pos, end, version);
      if (fast) return fast;
    } else if (type >= 4 && type <= 7 && length === 2 && (header & 0x0f) === (type === 6 ? 2 : 0)) {
      // [MQTT-3.6.1-1] PUBREL has flags 0010; the others 0000
      return { cmd: ACK_TYPES[type]!, messageId: (buf[pos]! << 8) | buf[pos + 1]! } as Packet;
    } else if (type === 12 && length === 0 && (header & 0x0f) === 0) {
      return PINGREQ;
    }
  }
  return decodeWithMqttPacket(buf, start, end, version);
}

/** PUBLISH without properties; null to leave it to the general decoder. */
function decodePublish(buf: Uint8Array, header: number, pos: number, end: number, version: ProtocolVersion): Packet | null {
  const qos = (header >> 1) & 3;
  if (qos === 3) throw malformed("PUBLISH with QoS 3"); // [MQTT-3.3.1-4]
  if (pos + 2 > end) throw malformed("PUBLISH too short");
  const topicLength = (buf[pos]! << 8) | buf[pos + 1]!;
  pos += 2;
  if (pos + topicLength > end) throw malformed("topic longer than the packet");
  const topic = decodeString(buf, pos, pos + topicLength); // checked as UTF-8 by wellformed.ts
  pos += topicLength;
  let messageId: number | undefined;
  if (qos > 0) {
    if (pos + 2 > end) throw malformed("PUBLISH without packet id");
    messageId = (buf[pos]! << 8) | buf[pos + 1]!;
    pos += 2;
  }
  if (version === 5) {
    if (pos >= end || buf[pos] !== 0) return null; // has properties
    pos++;
  }
  return {
    cmd: "publish",
    topic,
    payload: buf.subarray(pos, end),
    qos: qos as QoS,
    dup: (header & 8) !== 0,
    retain: (header & 1) !== 0,
    messageId,
  } as Packet;
}

/** mqtt-packet's parser for the other packets: one shared instance, always given one whole packet. */
let parser: mqtt.Parser | null = null;
let parsed: Packet | null = null;
let parseError: Error | null = null;

function decodeWithMqttPacket(buf: Uint8Array, start: number, end: number, version: ProtocolVersion | undefined): Packet {
  if (!parser) {
    parser = mqtt.parser();
    parser.on("packet", (p: Packet) => (parsed = p));
    parser.on("error", (e: Error) => (parseError = e));
  }
  const internals = parser as unknown as { settings: object; _pos: number; _resetState(): void };
  internals.settings = version ? { protocolVersion: version } : {};
  internals._pos = 0; // _resetState leaves the read position of a packet that failed
  parsed = null;
  parseError = null;
  parser.parse(Buffer.from(buf.buffer, buf.byteOffset + start, end - start));
  const p = parsed as Packet | null;
  const err = parseError as Error | null;
  internals._resetState(); // nothing may carry over to the next packet, whoever it is from
  if (err) throw readerError(err);
  if (!p) throw malformed("incomplete packet");
  return p;
}

function readerError(e: Error): ProtocolError {
  if (/protocol version|protocolId/i.test(e.message)) {
    return new ProtocolError(RC.UNSUPPORTED_PROTOCOL_VERSION, e.message);
  }
  return malformed(e.message);
}

const PINGRESP = new Uint8Array([0xd0, 0]);
const ACK_HEADERS: Record<string, number> = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 };

export function encode(packet: Packet, version: ProtocolVersion): Uint8Array {
  switch (packet.cmd) {
    case "pingresp":
      return PINGRESP;
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
      // The common acknowledgement: packet id only (MQTT 5 may omit reason 0x00 without properties)
      if (!packet.properties && (version !== 5 || !packet.reasonCode)) {
        const id = packet.messageId ?? 0;
        return new Uint8Array([ACK_HEADERS[packet.cmd]!, 2, id >> 8, id & 0xff]);
      }
      break;
    case "publish":
      if (!packet.properties || Object.keys(packet.properties).length === 0) {
        return encodePublish(packet.topic, packet.payload as Uint8Array, packet.qos, packet.retain, packet.dup, packet.messageId ?? 0, version);
      }
      if (!Buffer.isBuffer(packet.payload)) packet.payload = asBuffer(packet.payload);
      break;
  }
  return mqtt.generate(packet, { protocolVersion: version });
}

const textEncoder = new TextEncoder();

// Packets that are sent at once and never kept (the per-subscriber copies of a QoS 1/2 PUBLISH)
// are cut from a shared 8 KiB slab when they are small, as Node's Buffer pool does: a view is
// cheap to make, a backing store per packet is not, and the socket copies the bytes when sending.
// An encoding cached on a message gets its own buffer: a message may wait in a queue, and would
// keep a whole slab alive.
const SLAB_SIZE = 8192;
const SLAB_MAX = 1024;
let slab = new ArrayBuffer(SLAB_SIZE);
let slabUsed = 0;

function allocate(size: number): Uint8Array {
  if (size > SLAB_MAX) return new Uint8Array(size);
  if (slabUsed + size > SLAB_SIZE) {
    slab = new ArrayBuffer(SLAB_SIZE);
    slabUsed = 0;
  }
  const out = new Uint8Array(slab, slabUsed, size);
  slabUsed += (size + 7) & ~7; // 8-byte aligned
  return out;
}

/** A PUBLISH without properties, encoded by hand (the fan-out path). */
export function encodePublish(topic: string, payload: Uint8Array | string, qos: QoS, retain: boolean, dup: boolean, packetId: number, version: ProtocolVersion): Uint8Array {
  const body = typeof payload === "string" ? textEncoder.encode(payload) : payload;
  const nonAscii = isAscii(topic) ? null : textEncoder.encode(topic);
  const topicLength = nonAscii ? nonAscii.byteLength : topic.length;
  const remaining = 2 + topicLength + (qos > 0 ? 2 : 0) + (version === 5 ? 1 : 0) + body.byteLength;
  const lengthBytes = remaining < 128 ? 1 : remaining < 16384 ? 2 : remaining < 2097152 ? 3 : 4;
  const out = new Uint8Array(1 + lengthBytes + remaining); // cached on the message: its own buffer
  out[0] = 0x30 | (dup ? 8 : 0) | (qos << 1) | (retain ? 1 : 0);
  let pos = 1;
  let n = remaining;
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out[pos++] = b;
  } while (n > 0);
  out[pos++] = topicLength >> 8;
  out[pos++] = topicLength & 0xff;
  if (nonAscii) out.set(nonAscii, pos);
  else for (let i = 0; i < topicLength; i++) out[pos + i] = topic.charCodeAt(i);
  pos += topicLength;
  if (qos > 0) {
    out[pos++] = packetId >> 8;
    out[pos++] = packetId & 0xff;
  }
  if (version === 5) out[pos++] = 0; // no properties
  out.set(body, pos);
  return out;
}


/** A Buffer view of bytes (no copy); mqtt-packet's encoder needs Buffer methods. */
export function asBuffer(bytes: Uint8Array | string): Buffer {
  if (typeof bytes === "string") return Buffer.from(bytes);
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Offset of the packet identifier in an encoded PUBLISH of QoS > 0, so one encoding can serve
 * every subscriber with only the two id bytes changed.
 */
export function publishIdOffset(bytes: Uint8Array): number {
  let i = 1;
  while (bytes[i]! & 0x80) i++;
  i++; // past the remaining length
  const topicLength = (bytes[i]! << 8) | bytes[i + 1]!;
  return i + 2 + topicLength;
}

/** A copy of an encoded QoS > 0 PUBLISH with its packet id (and DUP flag) set. */
export function withPacketId(bytes: Uint8Array, idOffset: number, packetId: number, dup: boolean): Uint8Array {
  const out = allocate(bytes.byteLength);
  out.set(bytes);
  out[idOffset] = packetId >> 8;
  out[idOffset + 1] = packetId & 0xff;
  if (dup) out[0] = out[0]! | 0x08;
  return out;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}
