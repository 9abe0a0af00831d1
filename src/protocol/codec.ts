// The only importer of mqtt-packet: a per-connection stream reader and packet encoding.
import * as mqtt from "mqtt-packet";
import { Buffer } from "node:buffer";
import { ProtocolError, malformed } from "./errors";
import { RC } from "./reason-codes";

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
 * part of one, so the parser (and its partial bytes) lives as long as the connection.
 */
export class PacketReader {
  private readonly parser: mqtt.Parser;
  private readonly packets: Packet[] = [];
  private error: Error | null = null;

  constructor(
    version: ProtocolVersion | undefined,
    private readonly maxPacketSize: number,
  ) {
    this.parser = mqtt.parser(version ? { protocolVersion: version } : {});
    this.parser.on("packet", (p: Packet) => this.packets.push(p));
    this.parser.on("error", (e: Error) => {
      this.error ??= e;
    });
  }

  /**
   * Feeds bytes and hands each complete packet to `onPacket`, in order. Throws a ProtocolError
   * once the stream is broken; the packets before the fault have been handed over by then.
   */
  read(bytes: Uint8Array, onPacket: (p: Packet) => void): void {
    this.parser.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    const packets = this.packets;
    for (let i = 0; i < packets.length; i++) {
      const p = packets[i]!;
      if (packetSize(p.length ?? 0) > this.maxPacketSize) {
        packets.length = 0;
        throw new ProtocolError(RC.PACKET_TOO_LARGE, "packet exceeds the maximum packet size");
      }
      onPacket(p);
    }
    packets.length = 0;
    if (this.error) throw readerError(this.error);
    // A packet still arriving whose announced length is already too large.
    const pending = (this.parser as unknown as { packet: { length: number } }).packet;
    if (pending && pending.length > 0 && packetSize(pending.length) > this.maxPacketSize) {
      throw new ProtocolError(RC.PACKET_TOO_LARGE, "packet exceeds the maximum packet size");
    }
  }
}

function packetSize(remainingLength: number): number {
  const lengthBytes = remainingLength < 128 ? 1 : remainingLength < 16384 ? 2 : remainingLength < 2097152 ? 3 : 4;
  return 1 + lengthBytes + remainingLength;
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
