// The only importer of mqtt-packet: a per-connection stream reader and packet encoding.
import * as mqtt from "mqtt-packet";
import { Buffer } from "node:buffer";
import { ProtocolError, malformed } from "./errors";
import { RC } from "./reason-codes";
import { checkFixedHeader, checkPacket } from "./wellformed";

export type Packet = mqtt.Packet;
export type ConnectPacket = mqtt.IConnectPacket;
export type PublishPacket = mqtt.IPublishPacket;
export type SubscribePacket = mqtt.ISubscribePacket;
export type UnsubscribePacket = mqtt.IUnsubscribePacket;
export type DisconnectPacket = mqtt.IDisconnectPacket;
export type QoS = mqtt.QoS;
export type PublishProperties = NonNullable<mqtt.IPublishPacket["properties"]>;
export type ProtocolVersion = 3 | 4 | 5;

/**
 * Reassembles MQTT packets from a byte stream: a WebSocket frame may hold several packets or
 * part of one, so the reader (and its partial bytes) lives as long as the connection. Framing is
 * done here, so the size limit applies as soon as a length is announced, and each complete
 * packet is checked byte by byte (wellformed.ts) before mqtt-packet decodes it.
 */
export class PacketReader {
  private readonly parser: mqtt.Parser;
  private decoded: Packet | null = null;
  private error: Error | null = null;
  /** bytes of an incomplete packet, and its total size once the header is known (0 before) */
  private chunks: Uint8Array[] | null = null;
  private buffered = 0;
  private need = 0;

  constructor(
    private version: ProtocolVersion | undefined,
    private readonly maxPacketSize: number,
  ) {
    this.parser = mqtt.parser(version ? { protocolVersion: version } : {});
    this.parser.on("packet", (p: Packet) => {
      this.decoded = p;
    });
    this.parser.on("error", (e: Error) => {
      this.error ??= e;
    });
  }

  /**
   * Feeds bytes and hands each complete packet to `onPacket`, in order. Throws a ProtocolError
   * once the stream is broken; the packets before the fault have been handed over by then.
   */
  read(bytes: Uint8Array, onPacket: (p: Packet) => void): void {
    let data = bytes;
    if (this.chunks) {
      this.chunks.push(bytes);
      this.buffered += bytes.byteLength;
      if (this.need === 0) {
        // The header was incomplete (under 5 bytes): join the little there is and look again.
        data = concat(this.chunks, this.buffered);
        this.chunks = [data];
        const frame = frameAt(data, 0, this.maxPacketSize);
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
      const frame = frameAt(data, off, this.maxPacketSize);
      if (!frame || data.byteLength - off < frame.total) {
        const tail = data.slice(off); // a copy: the frame's buffer is not ours to keep
        this.chunks = [tail];
        this.buffered = tail.byteLength;
        this.need = frame ? frame.total : 0;
        return;
      }
      const packetBytes = data.subarray(off, off + frame.total);
      off += frame.total;
      checkPacket(packetBytes, frame.bodyStart, this.version);
      const packet = this.decode(packetBytes);
      if (packet.cmd === "connect" && this.version === undefined) this.version = packet.protocolVersion as ProtocolVersion;
      onPacket(packet);
    }
  }

  private decode(bytes: Uint8Array): Packet {
    this.parser.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    const packet = this.decoded;
    this.decoded = null;
    if (this.error) throw readerError(this.error);
    if (!packet) throw malformed("packet could not be decoded");
    return packet;
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

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

function readerError(e: Error): ProtocolError {
  if (/protocol version|protocolId/i.test(e.message)) {
    return new ProtocolError(RC.UNSUPPORTED_PROTOCOL_VERSION, e.message);
  }
  return malformed(e.message);
}

export function encode(packet: Packet, version: ProtocolVersion): Uint8Array {
  if (packet.cmd === "publish" && !Buffer.isBuffer(packet.payload)) packet.payload = asBuffer(packet.payload);
  return mqtt.generate(packet, { protocolVersion: version });
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
  const out = new Uint8Array(bytes);
  out[idOffset] = packetId >> 8;
  out[idOffset + 1] = packetId & 0xff;
  if (dup) out[0] = out[0]! | 0x08;
  return out;
}
