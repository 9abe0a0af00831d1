import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { keepAlivePolicy } from "../../src/handlers/connect";

describe("keepAlivePolicy (MQTT 5 Server Keep Alive)", () => {
  test("examples", () => {
    const c = (MAX_KEEPALIVE: number, MIN_KEEPALIVE: number) => ({ MAX_KEEPALIVE, MIN_KEEPALIVE });
    expect(keepAlivePolicy(30, c(0, 0))).toBe(30);
    expect(keepAlivePolicy(0, c(0, 60))).toBe(0); // 0 asks for no pings at all: the cheapest
    expect(keepAlivePolicy(10, c(0, 60))).toBe(60);
    expect(keepAlivePolicy(600, c(300, 60))).toBe(300);
    expect(keepAlivePolicy(0, c(300, 60))).toBe(300);
    expect(keepAlivePolicy(10, c(30, 60))).toBe(30); // MIN above MAX: MAX wins
  });

  test("property: within [MIN, MAX] (when set) or what was asked; never above 65535", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 100_000 }), (asked, max, min) => {
        const k = keepAlivePolicy(asked, { MAX_KEEPALIVE: max, MIN_KEEPALIVE: min });
        expect(k).toBeLessThanOrEqual(65535);
        if (max > 0) expect(k).toBeGreaterThan(0);
        if (max > 0) expect(k).toBeLessThanOrEqual(max);
        if (asked > 0 && min > 0) expect(k).toBeGreaterThanOrEqual(Math.min(min, max || 65535));
        if ((max === 0 || (asked > 0 && asked <= max)) && (min === 0 || asked === 0 || asked >= min)) expect(k).toBe(asked);
      }),
    );
  });
});
