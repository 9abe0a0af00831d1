// When a failed send of a QoS >= 1 message is tried again, and when it is given up.
import type { BrokerConfig } from "../config";

/** The shortest wait, whatever the knobs say (0 would retry in a loop of alarms). */
export const MIN_RETRY_MS = 100;

/** ms to wait after the `failures`-th failed attempt: RULES_RETRY_BASE doubling, capped at RULES_RETRY_MAX (at least 100 ms). */
export function retryDelay(failures: number, config: Pick<BrokerConfig, "RULES_RETRY_BASE" | "RULES_RETRY_MAX">): number {
  const base = config.RULES_RETRY_BASE * 1000;
  const max = config.RULES_RETRY_MAX * 1000;
  const n = Math.max(1, failures);
  // 2^(n-1) overflows to Infinity long after it passed the cap; min() keeps it finite
  return Math.max(MIN_RETRY_MS, Math.min(max, base * 2 ** Math.min(n - 1, 52)));
}

/** Whether a pending send that failed `failures` times, taken at `createdAt`, is dropped now. */
export function givenUp(failures: number, createdAt: number, now: number, config: Pick<BrokerConfig, "RULES_MAX_ATTEMPTS" | "RULES_MAX_AGE">): boolean {
  return failures >= config.RULES_MAX_ATTEMPTS || now - createdAt >= config.RULES_MAX_AGE * 1000;
}
