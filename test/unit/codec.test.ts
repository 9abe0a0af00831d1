// Stream reassembly (PacketReader), the encode-once PUBLISH patching (publishIdOffset/withPacketId)
// and the hot path's allocation savers (slab-cut packets, reused topic strings, cached encodings).
import { describe, expect, test } from "vitest";
import * as mqttPacket from "mqtt-packet";
import { PacketReader, encode, publishIdOffset, withPacketId, type Packet, type ProtocolVersion } from "../../src/protocol/codec";
import { ProtocolError } from "../../src/protocol/errors";
import { RC } from "../../src/protocol/reason-codes";
import { encodedPublish, type Message } from "../../src/session/message";

const MAX = 1024 * 1024;

function stream(version: 4 | 5): Packet[] {
  return [
    { cmd: "connect", protocolId: "MQTT", protocolVersion: version, clientId: "c1", clean: true, keepalive: 30, ...(version === 5 ? { properties: { sessionExpiryInterval: 60 } } : {}) },
    { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "a/#", qos: 1 }], ...(version === 5 ? { properties: { subscriptionIdentifier: 3 } } : {}) },
    { cmd: "publish", topic: "a/b", payload: Buffer.from("hello"), qos: 0, retain: false, dup: false },
    { cmd: "publish", topic: "a/long", payload: Buffer.alloc(300, 7), qos: 1, messageId: 42, retain: true, dup: false, ...(version === 5 ? { properties: { contentType: "x/y", userProperties: { k: "v" } } } : {}) },
    { cmd: "pingreq" },
    { cmd: "puback", messageId: 9 },
    { cmd: "disconnect" },
  ] as Packet[];
}

function bytesOf(packets: Packet[], version: ProtocolVersion): Uint8Array {
  return Buffer.concat(packets.map((p) => mqttPacket.generate(p, { protocolVersion: version })));
}

/** The essentials of a parsed packet, for comparison. */
function shape(p: Packet): unknown {
  const o = p as unknown as Record<string, unknown>;
  return {
    cmd: o.cmd,
    clientId: o.clientId,
    topic: o.topic ?? undefined,
    payload: o.cmd === "publish" ? Buffer.from(o.payload as Uint8Array).toString("hex") : undefined,
    qos: o.cmd === "publish" ? o.qos : undefined,
    messageId: o.messageId,
    subscriptions: o.subscriptions,
    properties: o.properties,
  };
}

function readAll(reader: PacketReader, chunks: Uint8Array[]): Packet[] {
  const out: Packet[] = [];
  for (const c of chunks) reader.read(c, (p) => out.push(p));
  return out;
}

function readerError(fn: () => void): ProtocolError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    return e as ProtocolError;
  }
  throw new Error("expected the reader to throw");
}

describe("PacketReader", () => {
  test.each([4, 5] as const)("several packets merged in one chunk, protocol %i", (version) => {
    const packets = stream(version);
    const got = readAll(new PacketReader(undefined, MAX), [bytesOf(packets, version)]);
    expect(got.map((p) => p.cmd)).toEqual(["connect", "subscribe", "publish", "publish", "pingreq", "puback", "disconnect"]);
    expect((got[3] as mqttPacket.IPublishPacket).payload).toEqual(Buffer.alloc(300, 7));
    if (version === 5) expect((got[3] as mqttPacket.IPublishPacket).properties).toEqual({ contentType: "x/y", userProperties: { k: "v" } });
    expect(got.map(shape)).toEqual(reparse(packets, version).map(shape));
  });

  test.each([4, 5] as const)("a stream split in two at every byte boundary gives the same packets, protocol %i", (version) => {
    const packets = stream(version);
    const all = bytesOf(packets, version);
    const expected = reparse(packets, version).map(shape);
    for (let cut = 1; cut < all.length; cut++) {
      const got = readAll(new PacketReader(undefined, MAX), [all.subarray(0, cut), all.subarray(cut)]);
      expect(got.map(shape), `cut at ${cut}`).toEqual(expected);
    }
  });

  test.each([4, 5] as const)("a stream fed one byte at a time, protocol %i", (version) => {
    const packets = stream(version);
    const all = bytesOf(packets, version);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < all.length; i++) chunks.push(all.subarray(i, i + 1));
    const got = readAll(new PacketReader(undefined, MAX), chunks);
    expect(got.map(shape)).toEqual(reparse(packets, version).map(shape));
  });

  test("a remaining length above the maximum packet size fails before the payload arrives", () => {
    const reader = new PacketReader(4, 1000);
    // PUBLISH announcing 2000 bytes, only its fixed header sent
    const err = readerError(() => reader.read(Uint8Array.from([0x30, 0xd0, 0x0f]), () => {}));
    expect(err.reasonCode).toBe(RC.PACKET_TOO_LARGE);
  });

  test("a complete packet above the maximum packet size fails, packets before it are handed over", () => {
    const small = mqttPacket.generate({ cmd: "publish", topic: "t", payload: Buffer.from("ok"), qos: 0, retain: false, dup: false }, { protocolVersion: 4 });
    const big = mqttPacket.generate({ cmd: "publish", topic: "t", payload: Buffer.alloc(2000), qos: 0, retain: false, dup: false }, { protocolVersion: 4 });
    const got: Packet[] = [];
    const reader = new PacketReader(4, 1000);
    const err = readerError(() => reader.read(Buffer.concat([small, big]), (p) => got.push(p)));
    expect(err.reasonCode).toBe(RC.PACKET_TOO_LARGE);
    expect(got.map((p) => p.cmd)).toEqual(["publish"]);
  });

  test("exactly the maximum packet size is accepted", () => {
    const probe = mqttPacket.generate({ cmd: "publish", topic: "t", payload: Buffer.alloc(200), qos: 0, retain: false, dup: false }, { protocolVersion: 4 });
    const got: Packet[] = [];
    new PacketReader(4, probe.length).read(probe, (p) => got.push(p));
    expect(got).toHaveLength(1);
    expect(readerError(() => new PacketReader(4, probe.length - 1).read(probe, () => {})).reasonCode).toBe(RC.PACKET_TOO_LARGE);
  });

  test("a 5-byte remaining length is malformed [MQTT-2.2.3]", () => {
    const reader = new PacketReader(4, 512 * 1024 * 1024);
    const err = readerError(() => reader.read(Uint8Array.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), () => {}));
    expect(err.reasonCode).toBe(RC.MALFORMED_PACKET);
  });

  test("a 5-byte remaining length arriving byte by byte is malformed", () => {
    const reader = new PacketReader(4, 512 * 1024 * 1024);
    const bytes = [0x30, 0xff, 0xff, 0xff, 0xff, 0x01];
    const err = readerError(() => {
      for (const b of bytes) reader.read(Uint8Array.from([b]), () => {});
    });
    expect(err.reasonCode).toBe(RC.MALFORMED_PACKET);
  });

  test.each([
    ["reserved packet type 0", [0x00, 0x00]],
    ["reserved packet type 15 without AUTH in 3.1.1", [0xf0, 0x00]],
    ["PUBREL with wrong fixed-header flags [MQTT-3.6.1-1]", [0x60, 0x02, 0x00, 0x01]],
    ["SUBSCRIBE with wrong fixed-header flags [MQTT-3.8.1-1]", [0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00]],
    ["PUBLISH with QoS 3 [MQTT-3.3.1-4]", [0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]],
    ["text", [...Buffer.from("hello world")]],
  ])("garbage is malformed: %s", (_name, bytes) => {
    const reader = new PacketReader(4, MAX);
    const err = readerError(() => reader.read(Uint8Array.from(bytes), () => {}));
    expect(err.reasonCode).toBe(RC.MALFORMED_PACKET);
  });

  test("an unknown protocol level is an unsupported protocol version [MQTT-3.1.2-2]", () => {
    const connect = mqttPacket.generate({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clientId: "x", clean: true, keepalive: 0 }, { protocolVersion: 4 });
    connect[8] = 6; // the protocol level byte
    const err = readerError(() => new PacketReader(undefined, MAX).read(connect, () => {}));
    expect(err.reasonCode).toBe(RC.UNSUPPORTED_PROTOCOL_VERSION);
  });
});

describe("publishIdOffset / withPacketId", () => {
  const cases: [string, number, ProtocolVersion, Record<string, unknown> | undefined][] = [
    ["t", 1, 4, undefined],
    ["a/b/c", 10, 4, undefined],
    ["x".repeat(200), 100, 4, undefined], // 2-byte remaining length
    ["x".repeat(300), 20000, 4, undefined], // 3-byte remaining length
    ["t", 1, 5, undefined],
    ["long/" + "y".repeat(150), 50, 5, { contentType: "text/plain", userProperties: { a: "b" }, messageExpiryInterval: 9 }],
  ];

  test.each(cases)("topic %#: id patched in place, DUP set, original untouched", (topic, payloadLen, version, properties) => {
    const payload = Buffer.alloc(payloadLen, 0x5a);
    for (const qos of [1, 2] as const) {
      const base = encode({ cmd: "publish", topic, payload, qos, retain: true, dup: false, messageId: 1, properties } as Packet, version);
      const baseCopy = Buffer.from(Uint8Array.from(base));
      const offset = publishIdOffset(base);
      for (const [id, dup] of [
        [1, false],
        [0x1234, true],
        [65535, false],
        [256, true],
      ] as const) {
        const out = withPacketId(base, offset, id, dup);
        expect(baseCopy.equals(base)).toBe(true);
        const parsed: Packet[] = [];
        const parser = mqttPacket.parser({ protocolVersion: version });
        parser.on("packet", (p: Packet) => parsed.push(p));
        parser.parse(Buffer.from(out));
        const p = parsed[0] as mqttPacket.IPublishPacket;
        expect(p.messageId).toBe(id);
        expect(p.dup).toBe(dup);
        expect(p.qos).toBe(qos);
        expect(p.retain).toBe(true);
        expect(p.topic).toBe(topic);
        expect(Buffer.from(p.payload as Buffer).equals(payload)).toBe(true);
        if (properties) expect(p.properties).toMatchObject(properties);
      }
    }
  });
});

function reparse(packets: Packet[], version: ProtocolVersion): Packet[] {
  const out: Packet[] = [];
  const parser = mqttPacket.parser({ protocolVersion: version });
  parser.on("packet", (p: Packet) => out.push(p));
  parser.parse(Buffer.from(bytesOf(packets, version)));
  return out;
}

describe("allocation-free hot path helpers", () => {
  const parse = (bytes: Uint8Array, version: ProtocolVersion) => {
    const parsed: Packet[] = [];
    const parser = mqttPacket.parser({ protocolVersion: version });
    parser.on("packet", (p: Packet) => parsed.push(p));
    parser.parse(Buffer.from(bytes));
    return parsed[0] as mqttPacket.IPublishPacket;
  };

  test("encoded packets cut from shared slabs never overlap: 3,000 kept packets of mixed sizes all still decode", () => {
    const made: { bytes: Uint8Array; topic: string; payload: Buffer; id: number }[] = [];
    for (let i = 0; i < 3000; i++) {
      const topic = `slab/${i}`;
      const payload = Buffer.alloc((i * 37) % 1500, i & 0xff); // below and above the slab's 1 KiB cut-off
      const base = encode({ cmd: "publish", topic, payload, qos: 1, retain: false, dup: false, messageId: 1 } as Packet, 4);
      const id = (i % 65535) + 1;
      made.push({ bytes: withPacketId(base, publishIdOffset(base), id, false), topic, payload, id });
    }
    for (const m of made) {
      const p = parse(m.bytes, 4);
      expect(p.topic).toBe(m.topic);
      expect(p.messageId).toBe(m.id);
      expect(Buffer.from(p.payload as Buffer).equals(m.payload)).toBe(true);
    }
  });

  test("topics decode as themselves, whether new, recently seen, or sharing a slot of the recent-topics table", () => {
    const topics = Array.from({ length: 2000 }, (_, i) => `t/${(i * 7919) % 1000}/${String.fromCharCode(97 + (i % 26))}`);
    const reader = new PacketReader(4, MAX);
    const seen: string[] = [];
    for (const round of [0, 1]) {
      for (const topic of round ? [...topics].reverse() : topics) {
        reader.read(mqttPacket.generate({ cmd: "publish", topic, payload: Buffer.from("x"), qos: 0, retain: false, dup: false }, { protocolVersion: 4 }), (p) => seen.push((p as mqttPacket.IPublishPacket).topic));
      }
    }
    expect(seen).toEqual([...topics, ...[...topics].reverse()]);
    // a non-ASCII topic is never taken from the table
    const utf8Topic = "t/é";
    reader.read(mqttPacket.generate({ cmd: "publish", topic: utf8Topic, payload: Buffer.from("x"), qos: 0, retain: false, dup: false }, { protocolVersion: 4 }), (p) => seen.push((p as mqttPacket.IPublishPacket).topic));
    expect(seen.at(-1)).toBe(utf8Topic);
  });

  test("a message's encodings: one per variant, made once, each right", () => {
    const msg: Message = { topic: "enc/t", payload: new Uint8Array([1, 2, 3]), qos: 2, retain: true, properties: { contentType: "c" } };
    const v4q0 = encodedPublish(msg, 4, 0, false);
    expect(encodedPublish(msg, 4, 0, false)).toBe(v4q0); // cached
    const v5q1r = encodedPublish(msg, 5, 1, true);
    const v4q2 = encodedPublish(msg, 4, 2, false);
    expect(encodedPublish(msg, 5, 1, true)).toBe(v5q1r);
    expect(encodedPublish(msg, 4, 2, false)).toBe(v4q2);
    expect(parse(v4q0, 4)).toMatchObject({ topic: "enc/t", qos: 0, retain: false });
    expect(parse(v5q1r, 5)).toMatchObject({ topic: "enc/t", qos: 1, retain: true, properties: { contentType: "c" } });
    expect(parse(v4q2, 4)).toMatchObject({ topic: "enc/t", qos: 2, retain: false });
    expect(parse(v4q2, 4).properties).toBeUndefined();
  });
});
