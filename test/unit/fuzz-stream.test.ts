// The fuzz test's reading of its own byte stream (test/e2e/fuzz-stream.ts): it decides when the
// broker may stay silent, so a wrong reading fails the fuzz on a correct broker (seed -59337576).
import { describe, expect, test } from "vitest";
import { scanPackets, standsAlone } from "../e2e/fuzz-stream";

const hex = (s: string) => [...Buffer.from(s.replace(/ /g, ""), "hex")];
const PINGREQ = [0xc0, 0x00];

describe("scanPackets", () => {
  test("complete packets: their starts, nothing missing", () => {
    expect(scanPackets([...hex("62020003"), ...hex("50020006"), ...PINGREQ], 8192)).toEqual({ starts: [0, 4, 8], missing: 0 });
  });

  test("a packet longer than what was sent lacks the rest; an unfinished length lacks one byte", () => {
    expect(scanPackets([0x30, 0x05, 1, 2], 8192)).toEqual({ starts: [0], missing: 3 });
    expect(scanPackets([0x30, 0x80], 8192)).toEqual({ starts: [0], missing: 1 });
    expect(scanPackets([0x30], 8192)).toEqual({ starts: [0], missing: 1 });
  });

  test("what the broker judges at once lacks nothing: over the size limit, or a fifth length byte", () => {
    expect(scanPackets([0x30, 0xff, 0xff, 0x7f], 8192).missing).toBe(0);
    expect(scanPackets([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f], 8192).missing).toBe(0);
  });
});

describe("standsAlone", () => {
  test("the marker after complete packets is a packet of its own", () => {
    const s = [...hex("62020003"), ...PINGREQ];
    expect(standsAlone(s, s.length - 2, 8192)).toBe(true);
  });

  test("seed -59337576 path 149: a PUBLISH whose length lies by 2 takes the marker in as payload", () => {
    const sent = hex("101800044d51545404c2003c0004667a2d620002667a0002667a62" + "02000350020006320c0004667a2f2f0005879f");
    const s = [...sent, ...PINGREQ];
    expect(scanPackets(s, 8192).missing).toBe(0); // complete: no bytes to add
    expect(standsAlone(s, sent.length, 8192)).toBe(false); // but the marker is gone
    // the same PUBLISH with its true length (10) leaves the marker alone
    const honest = [...sent];
    honest[honest.length - 11] = 0x0a;
    expect(standsAlone([...honest, ...PINGREQ], honest.length, 8192)).toBe(true);
  });

  test("a marker inside a packet still incomplete is not alone either", () => {
    const s = [0x30, 0x05, 1, ...PINGREQ];
    expect(standsAlone(s, 3, 8192)).toBe(false);
  });
});
