// The bridge's client side of the wire format, on mqtt-packet (the broker's own codec in
// protocol/ is a server's: it validates what clients send). Bytes in, packets out, and back.
import * as mqtt from "mqtt-packet";
import { Buffer } from "node:buffer";

export type Packet = mqtt.Packet;
export type PublishPacket = mqtt.IPublishPacket;
export type ConnackPacket = mqtt.IConnackPacket;
export type PublishProperties = NonNullable<mqtt.IPublishPacket["properties"]>;

/** A stream decoder: feed it bytes as they come, it hands over each complete packet. */
export class Decoder {
  private readonly parser: ReturnType<typeof mqtt.parser>;
  private error: Error | null = null;

  constructor(version: 4 | 5, onPacket: (p: Packet) => void) {
    this.parser = mqtt.parser({ protocolVersion: version });
    this.parser.on("packet", onPacket);
    this.parser.on("error", (e: Error) => (this.error ??= e));
  }

  /** Throws once the stream is broken (the packets before the fault were handed over). */
  feed(bytes: Uint8Array): void {
    this.parser.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    if (this.error) throw this.error;
  }
}

export function encode(packet: Packet, version: 4 | 5): Uint8Array {
  return mqtt.generate(packet, { protocolVersion: version });
}
