// The cost projection (bench/cost/project.mjs) on hand-checked numbers.
import { describe, expect, test } from "vitest";
import { readFileSync } from "node:fs";
// @ts-expect-error plain ESM JavaScript without declarations
import { awsUnits, project, tiered } from "../../bench/cost/project.mjs";

const prices = JSON.parse(readFileSync(new URL("../../bench/cost/prices.json", import.meta.url), "utf8"));

type Line = { provider: string; item: string; quantity: number; list: number; cost: number; included: number };
const line = (r: { lines: Line[] }, item: string) => r.lines.find((l) => l.item === item)!;

describe("project", () => {
  // one hour measured: × 720 to a 30-day month
  const hour = {
    websocketMessages: 20_000,
    rpc: 10,
    http: 100,
    alarms: 90,
    awakeMs: 3_600_000, // awake the whole hour
    rowsWritten: 100_000,
    storageBytes: 2e9,
    connectionMinutes: 60_000, // 1,000 devices × 60 min
    awsMessages: 60_000,
  };
  const r = project(hour, 3600, prices);

  test("requests: WebSocket messages at 1/20, RPC, HTTP and alarms whole; 1M a month included", () => {
    // (20,000 / 20 + 10 + 100 + 90) × 720 = 864,000 requests; × $0.15/M = $0.1296; under 1M: $0
    expect(line(r, "requests").quantity).toBeCloseTo(864_000, 6);
    expect(line(r, "requests").list).toBeCloseTo(0.1296, 10);
    expect(line(r, "requests").cost).toBe(0);
  });

  test("duration: awake seconds × 0.128 GB; 400,000 GB-s included", () => {
    // 3,600 s × 0.128 × 720 = 331,776 GB-s; × $12.50/M = $4.1472; under 400,000: $0
    expect(line(r, "duration").quantity).toBeCloseTo(331_776, 6);
    expect(line(r, "duration").list).toBeCloseTo(4.1472, 10);
    expect(line(r, "duration").cost).toBe(0);
  });

  test("rows written: 50M included, then $1.00/M", () => {
    // 100,000 × 720 = 72M rows: list $72; (72M − 50M) × $1/M = $22
    expect(line(r, "rows written").quantity).toBe(72_000_000);
    expect(line(r, "rows written").list).toBeCloseTo(72, 10);
    expect(line(r, "rows written").cost).toBeCloseTo(22, 10);
  });

  test("storage is a level: 2 GB-month, 5 included", () => {
    expect(line(r, "storage").quantity).toBe(2);
    expect(line(r, "storage").list).toBeCloseTo(0.4, 10);
    expect(line(r, "storage").cost).toBe(0);
  });

  test("AWS: connection-minutes at $0.08/M, messages at $1.00/M, no free tier", () => {
    // 60,000 × 720 = 43.2M minutes → $3.456; 43.2M messages → $43.20
    expect(line(r, "connectivity").list).toBeCloseTo(3.456, 10);
    expect(line(r, "messaging").list).toBeCloseTo(43.2, 10);
    expect(r.aws.list).toBeCloseTo(46.656, 10);
    expect(r.aws.cost).toBeCloseTo(46.656, 10);
  });

  test("totals and the ratio (both list prices)", () => {
    expect(r.cloudflare.list).toBeCloseTo(0.1296 + 4.1472 + 72 + 0.4, 10);
    expect(r.cloudflare.cost).toBeCloseTo(22, 10);
    expect(r.ratio).toBeCloseTo(46.656 / 76.6768, 10);
  });

  test("a window of half the length doubles the projection", () => {
    const half = project(hour, 1800, prices);
    expect(line(half, "requests").quantity).toBeCloseTo(2 * 864_000, 6);
    expect(line(half, "storage").quantity).toBe(2); // a level: not scaled
  });

  test("a zero or negative window is refused", () => {
    expect(() => project(hour, 0, prices)).toThrow();
  });
});

test("AWS messaging tiers: $1.00/M to 1B, $0.80/M to 5B, $0.70/M beyond", () => {
  const tiers = prices.aws.messaging.tiers;
  expect(tiered(0, tiers)).toBe(0);
  expect(tiered(5e5, tiers)).toBeCloseTo(0.5, 10);
  expect(tiered(2e9, tiers)).toBeCloseTo(1000 + 800, 6);
  expect(tiered(6e9, tiers)).toBeCloseTo(1000 + 3200 + 700, 6);
});

test("AWS meters 5 KB units, at least one per message", () => {
  expect(awsUnits(0)).toBe(1);
  expect(awsUnits(200)).toBe(1);
  expect(awsUnits(5120)).toBe(1);
  expect(awsUnits(5121)).toBe(2);
});

test("prices.json names its date and sources, and marks what is unverified", () => {
  expect(prices.date).toMatch(/^\d{4}-\d{2}-\d{2}$/);
  expect(prices.cloudflare.source).toMatch(/^https:\/\/developers\.cloudflare\.com\//);
  expect(prices.aws.source).toMatch(/^https:\/\/aws\.amazon\.com\/iot-core\/pricing/);
  expect(prices.cloudflare.storage.verified).toBe(false);
});
