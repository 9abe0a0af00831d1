// Random operation sequences against BrokerCore and the reference model (test/model/model.ts).
// `npm test` runs a few hundred; `npm run soak` runs SOAK_RUNS (10,000 by default) with a
// reported seed, reproducible with SOAK_SEED.
import { expect, test } from "vitest";
import fc from "fast-check";
import { runOps, sequenceArb } from "./model";

const runs = Number(process.env.SOAK_RUNS ?? 300);
const seed = process.env.SOAK_SEED ? Number(process.env.SOAK_SEED) : undefined;

test(`${runs} random sequences keep every MQTT guarantee the model checks`, () => {
  const result = fc.check(
    fc.property(sequenceArb(60), fc.boolean(), (ops, tightBytes) => {
      runOps(ops, undefined, tightBytes);
    }),
    { numRuns: runs, seed },
  );
  if (result.failed) console.error(fc.defaultReportMessage(result));
  expect(result.failed, `seed ${result.seed}: ${(result.errorInstance as Error | undefined)?.message}`).toBe(false);
}, 600_000);
