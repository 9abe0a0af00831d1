import { describe, expect, test } from "vitest";
import { TokenBucket } from "../../src/limits/token-bucket";
import { RetainedQuota } from "../../src/limits/retained-quota";
import { DEFAULTS } from "../../src/config";
import type { Store } from "../../src/storage/store";

describe("TokenBucket", () => {
  test("a burst, then the rate", () => {
    const b = new TokenBucket(10, 5);
    let taken = 0;
    for (let i = 0; i < 20; i++) if (b.take(1000)) taken++;
    expect(taken).toBe(5);
    expect(b.take(1050)).toBe(false); // half a token
    expect(b.take(1100)).toBe(true); // one token per 100 ms
    expect(b.take(1100)).toBe(false);
  });

  test("a long pause refills to the burst, not beyond", () => {
    const b = new TokenBucket(10, 5);
    while (b.take(1000)); // empty
    let taken = 0;
    for (let i = 0; i < 20; i++) if (b.take(100_000)) taken++; // 99 s would be 990 tokens uncapped
    expect(taken).toBe(5);
  });

  test("rate 0 is no limit", () => {
    const b = new TokenBucket(0, 0);
    for (let i = 0; i < 10_000; i++) expect(b.take(0)).toBe(true);
  });
});

describe("RetainedQuota", () => {
  const fakeStore = () => {
    const retained = new Map<string, number>();
    const store = {
      retainedUsage: () => ({ count: retained.size, bytes: [...retained.values()].reduce((a, b) => a + b, 0) }),
      retainedSize: (t: string) => retained.get(t) ?? null,
      deleteExpiredRetained: () => {},
    } as unknown as Store;
    return { store, retained };
  };

  test("counts and bytes; replacing and deleting free room", () => {
    const { store, retained } = fakeStore();
    const q = new RetainedQuota(store, { ...DEFAULTS, MAX_RETAINED_MESSAGES: 2, MAX_RETAINED_BYTES: 100 }, () => 0);
    const put = (t: string, n: number) => {
      const ok = q.admit(t, n);
      if (ok) n === 0 ? retained.delete(t) : retained.set(t, n);
      return ok;
    };
    expect(put("a", 10)).toBe(true);
    expect(put("b", 10)).toBe(true);
    expect(put("c", 10)).toBe(false); // third message
    expect(put("a", 80)).toBe(true); // replaces: 80 + 10
    expect(put("b", 30)).toBe(false); // 80 + 30 > 100
    expect(put("a", 0)).toBe(true); // deletion
    expect(put("c", 50)).toBe(true);
  });

  test("drift from other writers is corrected before refusing", () => {
    const { store, retained } = fakeStore();
    const q = new RetainedQuota(store, { ...DEFAULTS, MAX_RETAINED_MESSAGES: 1, MAX_RETAINED_BYTES: 0 }, () => 0);
    expect(q.admit("a", 1)).toBe(true);
    retained.set("a", 1);
    retained.delete("a"); // e.g. expired and removed elsewhere
    expect(q.admit("b", 1)).toBe(true);
  });
});
