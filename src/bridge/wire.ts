// The bridge's client side of the wire format, on mqtt-packet (the broker's own codec in
// protocol/ is a server's: it validates what clients send). Bytes in, packets out, and back.
import * as mqtt from "mqtt-packet";
import { Buffer } from "node:buffer";

export type Packet = mqtt.Packet;
export type PublishPacket = mqtt.IPublishPacket;
export type ConnackPacket = mqtt.IConnackPacket;
export type PublishProperties = NonNullable<mqtt.IPublishPacket["properties"]>;

/** A PUBLISH over the size limit, skipped: what is needed to acknowledge it and say so. */
export interface Oversize {
  topic: string;
  qos: 0 | 1 | 2;
  messageId: number | undefined;
  size: number;
}

/**
 * A stream decoder: feed it bytes as they come, it hands over each complete packet. It frames the
 * stream itself so that nothing over `maxPacketSize` is ever held: a PUBLISH over it is skipped as
 * it streams by (its topic and packet id kept, for the acknowledgement) and reported; any other
 * packet over it breaks the stream.
 */
export class Decoder {
  private readonly parser: ReturnType<typeof mqtt.parser>;
  private error: Error | null = null;
  /** the fixed header being read (type byte + Remaining Length) */
  private header: number[] = [];
  /** bytes of the current packet's body still to come */
  private left = 0;
  private mode: "header" | "pass" | "skip" = "header";
  /** skipping: the first bytes of the PUBLISH's body (topic, packet id), at most 65539 */
  private head: number[] = [];
  private skipSize = 0;

  constructor(
    version: 4 | 5,
    onPacket: (p: Packet) => void,
    private readonly maxPacketSize = Infinity,
    private readonly onOversize: (o: Oversize) => void = () => undefined,
  ) {
    this.parser = mqtt.parser({ protocolVersion: version });
    this.parser.on("packet", onPacket);
    this.parser.on("error", (e: Error) => (this.error ??= e));
  }

  /** Throws once the stream is broken (the packets before the fault were handed over). */
  feed(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.byteLength) {
      if (this.mode === "header") {
        const b = bytes[at++]!;
        this.header.push(b);
        if (this.header.length === 1 || b & 0x80) {
          if (this.header.length === 5) throw new Error("malformed Remaining Length");
          continue;
        }
        let remaining = 0;
        for (let i = this.header.length - 1; i >= 1; i--) remaining = remaining * 128 + (this.header[i]! & 0x7f);
        const size = this.header.length + remaining;
        if (size > this.maxPacketSize) {
          if (this.header[0]! >> 4 !== 3) throw new Error(`a packet of ${size} bytes, over the limit of ${this.maxPacketSize}`);
          this.mode = "skip";
          this.skipSize = size;
          this.head = [];
          this.left = remaining;
          continue;
        }
        this.pass(Uint8Array.from(this.header));
        this.header = [];
        this.left = remaining;
        this.mode = remaining === 0 ? "header" : "pass";
        continue;
      }
      const n = Math.min(this.left, bytes.byteLength - at);
      const piece = bytes.subarray(at, at + n);
      at += n;
      this.left -= n;
      if (this.mode === "pass") this.pass(piece);
      else if (this.head.length < 65539) for (let i = 0; i < piece.length && this.head.length < 65539; i++) this.head.push(piece[i]!);
      if (this.left > 0) continue;
      if (this.mode === "skip") this.skipped();
      this.header = [];
      this.mode = "header";
    }
  }

  private pass(bytes: Uint8Array): void {
    this.parser.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    if (this.error) throw this.error;
  }

  private skipped(): void {
    const bits = (this.header[0]! >> 1) & 3;
    const h = this.head;
    const length = ((h[0] ?? 0) << 8) | (h[1] ?? 0);
    if (bits === 3 || h.length < 2 + length + (bits ? 2 : 0)) throw new Error("malformed PUBLISH");
    const qos = bits as 0 | 1 | 2;
    const topic = new TextDecoder().decode(Uint8Array.from(h.slice(2, 2 + length)));
    const messageId = qos ? (h[2 + length]! << 8) | h[3 + length]! : undefined;
    this.head = [];
    this.onOversize({ topic, qos, messageId, size: this.skipSize });
  }
}

export function encode(packet: Packet, version: 4 | 5): Uint8Array {
  return mqtt.generate(packet, { protocolVersion: version });
}
