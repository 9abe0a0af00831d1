// A rate limit with a burst, shared by the publish rate (per connection) and the password
// verification throttles (auth/throttle.ts). The values come from src/config.ts; 0 switches it off.

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
