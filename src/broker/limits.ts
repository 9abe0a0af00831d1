// Per-client and per-namespace limits that need state: the inbound publish rate and the
// retained-message quota. The values come from src/config.ts; 0 switches a limit off.
import type { BrokerConfig } from "../config";
import type { Store } from "../storage/store";

/**
 * A token bucket: `rate` tokens a second up to `burst`. In memory only (a hibernation wake
 * starts full). One subtraction per PUBLISH. Workers' clock only moves between I/O events, so
 * a burst within one event is bounded by `burst` alone.
 */
export class TokenBucket {
  private tokens: number;
  private at = 0;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {
    this.tokens = Math.max(burst, 1);
  }

  take(now: number): boolean {
    if (this.rate <= 0) return true;
    if (now > this.at) {
      this.tokens = Math.min(Math.max(this.burst, 1), this.tokens + ((now - this.at) * this.rate) / 1000);
      this.at = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Gives back a token taken for work that turned out not to count. */
  refund(): void {
    if (this.rate > 0) this.tokens = Math.min(Math.max(this.burst, 1), this.tokens + 1);
  }
}

/**
 * Retained messages per namespace: count and payload bytes. Counters live in memory, read
 * from storage once; whoever stores a retained message asks `admit` first. Other writers
 * (expiry, an admin API) may make the counters drift, so they are recounted from storage
 * before anything is refused: a refusal is always based on the stored truth.
 */
export class RetainedQuota {
  private count = -1;
  private bytes = 0;

  constructor(
    private readonly store: Store,
    private readonly config: BrokerConfig,
    private readonly now: () => number,
  ) {}

  /** Whether `topic` may hold a retained payload of `size` bytes (0: a deletion, always fine); books it. */
  admit(topic: string, size: number): boolean {
    const { MAX_RETAINED_MESSAGES: maxCount, MAX_RETAINED_BYTES: maxBytes } = this.config;
    if (maxCount <= 0 && maxBytes <= 0) return true;
    if (this.count < 0) this.recount();
    const existing = this.store.retainedSize(topic);
    if (size === 0) {
      if (existing !== null) {
        this.count--;
        this.bytes -= existing;
      }
      return true;
    }
    const over = () =>
      (maxCount > 0 && this.count + (existing === null ? 1 : 0) > maxCount) || (maxBytes > 0 && this.bytes - (existing ?? 0) + size > maxBytes);
    if (over()) {
      this.recount();
      if (over()) return false;
    }
    this.count += existing === null ? 1 : 0;
    this.bytes += size - (existing ?? 0);
    return true;
  }

  private recount(): void {
    this.store.deleteExpiredRetained(this.now()); // expired messages never hold quota [MQTT-3.3.2-5]
    const usage = this.store.retainedUsage();
    this.count = usage.count;
    this.bytes = usage.bytes;
  }
}
