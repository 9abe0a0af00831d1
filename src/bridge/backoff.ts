// Reconnect delays: capped exponential backoff with jitter, so that many bridges that lost the
// same remote do not all knock at the same moment. Pure.

/**
 * The delay in ms before attempt `failures` + 1, after `failures` failed attempts in a row:
 * min·2^(failures−1) capped at max, then a random share of up to half of it taken off
 * ("equal jitter": never below half the step). 0 failures: no wait.
 */
export function backoffDelay(failures: number, minSeconds: number, maxSeconds: number, random: () => number = Math.random): number {
  if (failures <= 0) return 0;
  const step = Math.min(maxSeconds * 1000, minSeconds * 1000 * 2 ** Math.min(failures - 1, 30));
  return Math.round(step / 2 + (step / 2) * random());
}
