// The fingerprint tables (src/shards/fingerprint.ts) against plain Maps: open addressing with
// backward-shift deletion, growth and shrinking, over a small key space so that home slots and
// runs collide all the time; and the hash's own properties.
import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { FingerprintCounts, FingerprintPairs, fingerprint, isExactFilter } from "../../src/shards/fingerprint";

describe("fingerprint", () => {
  test("32 bits, stable, and different for near strings", () => {
    const fp = fingerprint("devices/a/cmd");
    expect(fp).toBe(fingerprint(["devices", "a", "cmd"].join("/")));
    expect(Number.isInteger(fp) && fp >= 0 && fp <= 0xffffffff).toBe(true);
    const near = ["", "a", "b", "ab", "ba", "a/", "/a", "devices/a/cmd", "devices/b/cmd", "devices/a/cmd ", "é", "😀"];
    expect(new Set(near.map(fingerprint)).size).toBe(near.length);
  });

  test("pinned values: every shard must compute the same (a change here is a wire change)", () => {
    expect(["", "a", "devices/0001/cmd", "é/😀"].map(fingerprint)).toEqual([3651860435, 1229274632, 2808915857, 3362717631]);
  });

  test("exact filters: no wildcard, not shared", () => {
    expect(["a", "a/b", "", "/", "$SYS/x", "$share", "$sharex/a"].every(isExactFilter)).toBe(true);
    expect(["+", "a/#", "a/+/b", "$share/g/a", "$share/g/a/+"].some(isExactFilter)).toBe(false);
  });
});

const op = (fpMax: number, shards: number) => fc.record({ add: fc.boolean(), fp: fc.oneof(fc.integer({ min: 0, max: fpMax }), fc.constantFrom(0, 0xffffffff)), shard: fc.integer({ min: 0, max: shards - 1 }) });

describe("FingerprintPairs", () => {
  test("equals a set of (fp, shard) pairs under adds, removes and clears; match finds every shard of a fingerprint", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof({ weight: 20, arbitrary: op(40, 4) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 3 }).map((clear) => ({ clear })) }), { maxLength: 300 }), (steps) => {
        const t = new FingerprintPairs(4);
        const model = new Set<string>();
        const key = (fp: number, s: number) => `${fp}:${s}`;
        for (const step of steps) {
          if ("clear" in step) {
            const gone = [...model].filter((k) => k.endsWith(`:${step.clear}`));
            expect(t.clearShard(step.clear)).toBe(gone.length);
            for (const k of gone) model.delete(k);
          } else if (step.add) {
            expect(t.add(step.fp, step.shard)).toBe(!model.has(key(step.fp, step.shard)));
            model.add(key(step.fp, step.shard));
          } else {
            expect(t.remove(step.fp, step.shard)).toBe(model.has(key(step.fp, step.shard)));
            model.delete(key(step.fp, step.shard));
          }
        }
        expect(t.size).toBe(model.size);
        const fps = new Set([...model].map((k) => Number(k.split(":")[0])));
        expect(t.distinct).toBe(fps.size);
        for (const fp of [...Array(41).keys(), 0xffffffff]) {
          const got: number[] = [];
          t.match(fp, { shard: (s) => got.push(s) });
          const want = [0, 1, 2, 3].filter((s) => model.has(key(fp, s)));
          expect(got.sort()).toEqual(want);
          for (let s = 0; s < 4; s++) expect(t.has(fp, s)).toBe(model.has(key(fp, s)));
        }
        for (let s = 0; s < 4; s++) {
          expect(t.of(s)).toEqual([...model].filter((k) => k.endsWith(`:${s}`)).map((k) => Number(k.split(":")[0])).sort((a, b) => a - b));
        }
      }),
      { numRuns: 500 },
    );
  });

  test("grows and gives memory back; shard 127 fits a byte", () => {
    const t = new FingerprintPairs(128);
    const small = t.bytes;
    for (let i = 0; i < 10_000; i++) t.add(fingerprint(`d/${i}`), 127);
    expect(t.size).toBe(10_000);
    expect(t.bytes).toBeLessThanOrEqual(32768 * 5); // load above 0.3
    for (let i = 0; i < 10_000; i++) expect(t.has(fingerprint(`d/${i}`), 127)).toBe(true);
    for (let i = 0; i < 10_000; i++) t.remove(fingerprint(`d/${i}`), 127);
    expect(t.size).toBe(0);
    expect(t.bytes).toBe(small);
  });
});

describe("FingerprintCounts", () => {
  test("equals a Map of counts", () => {
    fc.assert(
      fc.property(fc.array(op(60, 1), { maxLength: 400 }), (steps) => {
        const t = new FingerprintCounts();
        const model = new Map<number, number>();
        for (const { add, fp } of steps) {
          const n = model.get(fp) ?? 0;
          if (add) {
            expect(t.increment(fp)).toBe(n + 1);
            model.set(fp, n + 1);
          } else {
            expect(t.decrement(fp)).toBe(n === 0 ? -1 : n - 1);
            if (n === 1) model.delete(fp);
            else if (n > 1) model.set(fp, n - 1);
          }
        }
        expect(t.size).toBe(model.size);
        expect(t.keysSorted()).toEqual([...model.keys()].sort((a, b) => a - b));
        for (const [fp, n] of model) expect(t.count(fp)).toBe(n);
      }),
      { numRuns: 500 },
    );
  });
});
