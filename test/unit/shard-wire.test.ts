// The link's entry format (src/shards/wire.ts): every entry comes back as it was packed, and
// bytes that are not entries raise WireError and nothing else.
import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Buffer } from "node:buffer";
import { concatEntries, decodeAll, decodeEntries, encodeEntry, WireError, type Entry, type PublishEntry } from "../../src/shards/wire";

const text = fc.string({ unit: "grapheme", maxLength: 30 });
const longText = fc.string({ unit: "binary", maxLength: 200 });
const bytes = (max: number) => fc.uint8Array({ maxLength: max });
const u32 = fc.integer({ min: 0, max: 0xffffffff });

const properties = fc.record(
  {
    payloadFormatIndicator: fc.boolean(),
    messageExpiryInterval: u32,
    topicAlias: fc.integer({ min: 1, max: 0xffff }),
    responseTopic: longText,
    correlationData: bytes(40).map((b) => Buffer.from(b)),
    userProperties: fc.dictionary(text, fc.oneof(text, fc.array(text, { maxLength: 3 })), { maxKeys: 4 }),
    subscriptionIdentifier: fc.oneof(fc.integer({ min: 1, max: 268_435_455 }), fc.array(fc.integer({ min: 1, max: 268_435_455 }), { maxLength: 3 })),
    contentType: text,
  },
  { requiredKeys: [] },
);

const publish: fc.Arbitrary<PublishEntry> = fc
  .record(
    {
      topic: fc.oneof(text, longText),
      payload: bytes(300),
      qos: fc.constantFrom(0 as const, 1 as const, 2 as const),
      retain: fc.boolean(),
      properties,
      expiresAt: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      origin: fc.option(text, { nil: null }),
      share: fc.option(text.map((f) => `$share/g/${f}`), { nil: null }),
      version: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })),
    },
    { requiredKeys: ["topic", "payload", "qos", "retain", "origin", "share", "version"] },
  )
  .map((r) => ({ kind: "publish" as const, ...r }));

const interest: fc.Arbitrary<Entry> = fc.record({ kind: fc.constant("interest" as const), add: fc.boolean(), filter: fc.oneof(text, longText) });
const fingerprint: fc.Arbitrary<Entry> = fc.record({ kind: fc.constant("fingerprint" as const), add: fc.boolean(), fp: u32 });
const entry = fc.oneof(publish, interest, fingerprint);

/** what decoding gives back: Buffers compared as plain byte arrays, empty properties dropped */
function normal(e: Entry): unknown {
  if (e.kind !== "publish") return e;
  const out: Record<string, unknown> = { ...e, payload: [...e.payload] };
  if (e.properties) {
    const p: Record<string, unknown> = { ...e.properties };
    if (e.properties.correlationData) p.correlationData = [...e.properties.correlationData];
    if (Object.keys(p).length === 0) delete out.properties;
    else out.properties = p;
  }
  return out;
}

describe("round trip", () => {
  test("any list of entries comes back equal, in order", () => {
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 8 }), (list) => {
        const packed = concatEntries(list.map(encodeEntry));
        expect(decodeAll(packed).map(normal)).toEqual(list.map(normal));
      }),
      { numRuns: 500 },
    );
  });

  test("every property at once, an empty payload, unicode and an empty topic", () => {
    const e: PublishEntry = {
      kind: "publish",
      topic: "é/ü/😀/中文",
      payload: new Uint8Array(0),
      qos: 2,
      retain: true,
      properties: {
        payloadFormatIndicator: true,
        messageExpiryInterval: 0xffffffff,
        topicAlias: 7,
        responseTopic: "r/😀",
        correlationData: Buffer.from([0, 1, 255]),
        userProperties: { a: "1", b: ["x", "y"], c: [], d: ["only"], "": "" },
        subscriptionIdentifier: [1, 268_435_455],
        contentType: "text/plain",
      },
      expiresAt: 1_800_000_000_000,
      origin: "client-é",
      share: "$share/g/a/#",
      version: 1_800_000_000_000 * 256 + 63,
    };
    const [back] = decodeAll(encodeEntry(e));
    expect(normal(back!)).toEqual(normal(e));
    const bare: PublishEntry = { kind: "publish", topic: "", payload: new Uint8Array(0), qos: 0, retain: false, origin: null, share: null, version: 0 };
    expect(encodeEntry(bare).byteLength).toBe(4); // tag, flags, topic length, payload length
    expect(decodeAll(encodeEntry(bare)).map(normal)).toEqual([normal(bare)]);
  });

  test("a 1 MiB payload, alone and between small entries", () => {
    const big = new Uint8Array(1024 * 1024).map((_, i) => i * 7);
    const e: PublishEntry = { kind: "publish", topic: "big", payload: big, qos: 1, retain: false, origin: "c", share: null, version: 0 };
    const small: Entry = { kind: "interest", add: true, filter: "a/+" };
    const packed = concatEntries([encodeEntry(small), encodeEntry(e), encodeEntry(small)]);
    expect(packed.byteLength).toBeLessThan(big.byteLength + 64);
    const back = decodeAll(packed);
    expect(back.map((x) => x.kind)).toEqual(["interest", "publish", "interest"]);
    expect(Buffer.compare(Buffer.from((back[1] as PublishEntry).payload), Buffer.from(big))).toBe(0);
    // the scratch buffer is not left shared with a result
    const a = encodeEntry(small);
    const b = encodeEntry({ kind: "interest", add: false, filter: "zzz" });
    expect(decodeAll(a)).toEqual([small]);
    expect(decodeAll(b)).toEqual([{ kind: "interest", add: false, filter: "zzz" }]);
  });

  test("a fingerprint is 5 bytes, its op in the tag, every 32-bit value and both ends kept", () => {
    for (const fp of [0, 1, 0x7fffffff, 0x80000000, 0xdeadbeef, 0xffffffff]) {
      for (const add of [true, false]) {
        const e: Entry = { kind: "fingerprint", add, fp };
        const packed = encodeEntry(e);
        expect(packed.byteLength).toBe(5);
        expect(decodeAll(packed)).toEqual([e]);
      }
    }
    expect([...encodeEntry({ kind: "fingerprint", add: true, fp: 0x01020304 })]).toEqual([0x46, 1, 2, 3, 4]);
    expect(encodeEntry({ kind: "fingerprint", add: false, fp: 0 })[0]).toBe(0x66);
    for (const fp of [-1, 2 ** 32, 1.5, NaN]) expect(() => encodeEntry({ kind: "fingerprint", add: true, fp })).toThrow(RangeError);
    // truncated: WireError
    expect(() => decodeAll(new Uint8Array([0x46, 1, 2, 3]))).toThrow(WireError);
  });

  test("only present properties cost bytes", () => {
    const base: PublishEntry = { kind: "publish", topic: "t", payload: new Uint8Array(1), qos: 1, retain: false, origin: null, share: null, version: 0 };
    const plain = encodeEntry(base).byteLength;
    expect(encodeEntry({ ...base, properties: {} }).byteLength).toBe(plain);
    expect(encodeEntry({ ...base, properties: { contentType: "ab" } }).byteLength).toBe(plain + 1 + 3);
  });

  test("decodeEntries streams entries to the callback in order", () => {
    const list: Entry[] = [
      { kind: "interest", add: true, filter: "a" },
      { kind: "interest", add: false, filter: "b" },
    ];
    const seen: string[] = [];
    decodeEntries(concatEntries(list.map(encodeEntry)), (e) => seen.push((e as { filter: string }).filter));
    expect(seen).toEqual(["a", "b"]);
    expect(decodeAll(new Uint8Array(0))).toEqual([]);
  });
});

describe("garbage", () => {
  const onlyWireError = (b: Uint8Array) => {
    try {
      decodeAll(b);
    } catch (err) {
      expect(err).toBeInstanceOf(WireError);
    }
  };

  test("random bytes raise WireError or decode, never anything else", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), onlyWireError), { numRuns: 3000 });
  });

  test("valid entries truncated or with bytes flipped raise WireError or decode", () => {
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 3 }), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }), (list, cut, at, value) => {
        const packed = concatEntries(list.map(encodeEntry));
        onlyWireError(packed.subarray(0, cut % packed.byteLength));
        const flipped = packed.slice();
        flipped[at % flipped.byteLength] = value;
        onlyWireError(flipped);
      }),
      { numRuns: 2000 },
    );
  });

  test("the typical bad inputs name what is wrong", () => {
    expect(() => decodeAll(new Uint8Array([0x58]))).toThrow(/unknown entry tag/);
    expect(() => decodeAll(new Uint8Array([0x49]))).toThrow(WireError);
    expect(() => decodeAll(new Uint8Array([0x50, 3, 0, 0]))).toThrow(/QoS/);
    expect(() => decodeAll(new Uint8Array([0x49, 1, 5, 0x61]))).toThrow(/past the end/);
    expect(() => decodeAll(new Uint8Array([0x49, 1, 2, 0xc3, 0x28]))).toThrow(/UTF-8/);
    expect(() => decodeAll(new Uint8Array([0x50, 0x10, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))).toThrow(/varint/);
    // a huge declared count of user properties ends at once
    expect(() => decodeAll(new Uint8Array([0x50, 0x08, 0, 0x20, 0xff, 0xff, 0xff, 0x7f]))).toThrow(/count past the end/);
  });
});
