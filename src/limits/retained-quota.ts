// The retained-message quota of a namespace (MAX_RETAINED_MESSAGES / MAX_RETAINED_BYTES).
import type { BrokerConfig } from "../config";
import type { Store } from "../storage/store";

/**
 * Retained messages per namespace: count and payload bytes. Counters live in memory, read
 * from storage once; whoever stores a retained message asks `admit` first. Other writers
 * (expiry, an admin API) may make the counters drift, so they are recounted from storage
 * before anything is refused: a refusal is always based on the stored truth.
 */
/**
 * The broker's retained presence entries (`$events/presence/<id>`, PRESENCE_RETAINED): one per
 * session, so bounded by the sessions, and kept out of the clients' quota, which they would
 * otherwise fill (a fleet of sessions getting the clients' own retained messages refused).
 */
export const PRESENCE_PREFIX = "$events/presence/";

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
    if (topic.startsWith(PRESENCE_PREFIX)) return true; // not the clients' (see PRESENCE_PREFIX)
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

  /** A retained write this object may not refuse (a copy another shard admitted): booked, before it is stored. */
  book(topic: string, size: number): void {
    const { MAX_RETAINED_MESSAGES: maxCount, MAX_RETAINED_BYTES: maxBytes } = this.config;
    if ((maxCount <= 0 && maxBytes <= 0) || this.count < 0 || topic.startsWith(PRESENCE_PREFIX)) return; // counted from storage when first needed
    const existing = this.store.retainedSize(topic);
    this.count += (size > 0 ? 1 : 0) - (existing !== null ? 1 : 0);
    this.bytes += size - (existing ?? 0);
  }

  private recount(): void {
    this.store.deleteExpiredRetained(this.now()); // expired messages never hold quota [MQTT-3.3.2-5]
    const usage = this.store.retainedUsage(PRESENCE_PREFIX);
    this.count = usage.count;
    this.bytes = usage.bytes;
  }
}
