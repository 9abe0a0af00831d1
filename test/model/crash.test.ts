// Crash at every step: each scenario runs once to count the events that write storage, then once
// per such event with the runtime dying there — before the event's commit (its writes and sends
// lost) and after it (its writes kept, its sends lost) — and the model's guarantees are checked
// after the restart and a settle. `npm run soak` adds random sequences crashed at random points.
import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { runOps, sequenceArb, type Op } from "./model";

const persistent = (c: "c0" | "c1" | "c2", version: 4 | 5 = 5, will: number | null = null): Op => ({ op: "connect", c, version, clean: false, expiry: 3600, will });

const SCENARIOS: Record<string, Op[]> = {
  "QoS 1 in and out": [persistent("c0"), { op: "subscribe", c: "c0", filter: "pub/#", qos: 1 }, persistent("c1"), { op: "publish", c: "c1", topic: "pub/a", qos: 1, retain: false }, { op: "publish", c: "c1", topic: "pub/a", qos: 1, retain: false }],
  "QoS 2 in and out": [persistent("c0", 4), { op: "subscribe", c: "c0", filter: "pub/#", qos: 2 }, persistent("c1"), { op: "publish", c: "c1", topic: "pub/a", qos: 2, retain: false }, { op: "publish", c: "c1", topic: "pub/b", qos: 2, retain: true }],
  "reconnect with messages in flight and queued": [
    persistent("c0"),
    { op: "subscribe", c: "c0", filter: "pub/#", qos: 2 },
    { op: "hold", c: "c0" },
    persistent("c1"),
    { op: "publish", c: "c1", topic: "pub/a", qos: 1, retain: false },
    { op: "publish", c: "c1", topic: "pub/a", qos: 2, retain: false },
    { op: "drop", c: "c0" },
    { op: "publish", c: "c1", topic: "pub/a", qos: 1, retain: false },
    { op: "release", c: "c0" },
    { op: "connect", c: "c0", version: 5, clean: false, expiry: 3600, will: null, rm: 1 },
  ],
  "takeover": [persistent("c0", 5, 0), { op: "subscribe", c: "c0", filter: "own/+/x", qos: 1 }, { op: "hold", c: "c0" }, persistent("c1"), { op: "publish", c: "c1", topic: "own/c0/x", qos: 1, retain: false }, { op: "release", c: "c0" }, persistent("c0", 4, 0)],
  "will delay": [persistent("c0", 5, 2), { op: "drop", c: "c0" }, { op: "advance", ms: 1000 }, persistent("c1", 5, 2), { op: "disconnect", c: "c1", withWill: true }, { op: "advance", ms: 3000 }],
  "shared group member lost": [
    persistent("c0"),
    { op: "subscribe", c: "c0", filter: "$share/g/sh/#", qos: 1 },
    { op: "hold", c: "c0" },
    persistent("c1"),
    { op: "subscribe", c: "c1", filter: "$share/g/sh/#", qos: 1 },
    { op: "publish", c: "c1", topic: "sh/1", qos: 1, retain: false },
    { op: "drop", c: "c0" },
  ],
};

describe("crash at every storage step", () => {
  let tried = 0;
  for (const [name, ops] of Object.entries(SCENARIOS)) {
    test(name, () => {
      const events = runOps(ops, { event: Number.MAX_SAFE_INTEGER, afterCommit: false }).writeEvents;
      expect(events).toBeGreaterThan(3);
      for (let event = 1; event <= events; event++) {
        for (const afterCommit of [false, true]) {
          const run = runOps(ops, { event, afterCommit });
          expect(run.crashed, `crash point ${event}`).toBe(true);
          tried++;
        }
      }
    });
  }
  test("crash points tried", () => {
    expect(tried).toBeGreaterThan(50);
    console.log(`crash tests: ${tried} crash points in ${Object.keys(SCENARIOS).length} scenarios`);
  });
});

const randomCrashRuns = Number(process.env.SOAK_CRASH_RUNS ?? 100);

test(`${randomCrashRuns} random sequences, each crashed at a random storage step`, () => {
  const result = fc.check(
    fc.property(sequenceArb(40), fc.integer({ min: 1, max: 40 }), fc.boolean(), (ops, event, afterCommit) => {
      runOps(ops, { event, afterCommit });
    }),
    { numRuns: randomCrashRuns, seed: process.env.SOAK_SEED ? Number(process.env.SOAK_SEED) : undefined },
  );
  if (result.failed) console.error(fc.defaultReportMessage(result));
  expect(result.failed, `seed ${result.seed}: ${(result.errorInstance as Error | undefined)?.message}`).toBe(false);
}, 600_000);
