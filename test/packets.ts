// Raw MQTT bytes for hostile-input tests: valid packets from mqtt-packet's encoder, and a tiny
// builder for the broken ones no encoder would write.
import * as mqttPacket from "mqtt-packet";

export type Bytes = number[];

export const u16 = (n: number): Bytes => [(n >> 8) & 0xff, n & 0xff];
export const u32 = (n: number): Bytes => [(n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];

export function vbi(n: number): Bytes {
  const out: Bytes = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** A length-prefixed string; `raw` bytes are used as they are (bad UTF-8 and all). */
export const str = (s: string | Bytes): Bytes => {
  const b = typeof s === "string" ? [...Buffer.from(s, "utf8")] : s;
  return [...u16(b.length), ...b];
};

/** A property block: [id, ...value bytes] entries. */
export const props = (...entries: Bytes[]): Bytes => {
  const body = entries.flat();
  return [...vbi(body.length), ...body];
};

/** Fixed header (type/flags byte) + remaining length + body. */
export const packet = (first: number, ...body: Bytes[]): Uint8Array => {
  const b = body.flat();
  return Uint8Array.from([first, ...vbi(b.length), ...b]);
};

/** A CONNECT: `flags` as in the spec, v5 gets `connectProps` (default: none). */
export function connectBytes(opts: {
  version?: 3 | 4 | 5;
  clientId?: string | Bytes;
  flags?: number;
  keepalive?: number;
  connectProps?: Bytes;
  tail?: Bytes;
  name?: string;
}): Uint8Array {
  const version = opts.version ?? 4;
  const name = opts.name ?? (version === 3 ? "MQIsdp" : "MQTT");
  return packet(
    0x10,
    str(name),
    [version, opts.flags ?? 0x02],
    u16(opts.keepalive ?? 0),
    version === 5 ? (opts.connectProps ?? [0]) : [],
    str(opts.clientId ?? "c"),
    opts.tail ?? [],
  );
}

export function encode(p: mqttPacket.Packet, version: 3 | 4 | 5): Uint8Array {
  return new Uint8Array(mqttPacket.generate(p, { protocolVersion: version }));
}

/** Parses server packets from a byte stream. */
export function packetParser(version: 3 | 4 | 5, onPacket: (p: mqttPacket.Packet) => void): (bytes: Uint8Array) => void {
  const parser = mqttPacket.parser({ protocolVersion: version });
  parser.on("packet", onPacket);
  parser.on("error", (e: Error) => onPacket({ cmd: "error" as "pingresp", message: e.message } as unknown as mqttPacket.Packet));
  return (bytes) => parser.parse(Buffer.from(bytes));
}
