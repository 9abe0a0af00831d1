import type { Store } from "./store";

/**
 * Acknowledged deliveries of durable sessions are removed from storage in batches, a few
 * milliseconds after the acknowledgement, so a stream of PUBACKs costs one commit per batch
 * instead of one per packet. Safe to lose in a crash: a delivery still stored is re-sent after a
 * restart (QoS 1 allows the duplicate; for QoS 2 the same packet id comes back, which the client
 * recognises [MQTT-4.3.3]). Only the removal is deferred, never a state a later send relies on.
 */
export class DeferredDeletes {
  private seqs: number[] = [];

  constructor(
    private readonly store: Store,
    private readonly later: (fn: () => void) => void,
  ) {}

  add(seq: number): void {
    if (this.seqs.push(seq) === 1) this.later(() => this.flush());
  }

  /** whether `seq` is acknowledged and waits for its removal */
  has(seq: number): boolean {
    return this.seqs.includes(seq);
  }

  flush(): void {
    if (this.seqs.length === 0) return;
    const seqs = this.seqs;
    this.seqs = [];
    this.store.deleteDeliveries(seqs);
  }
}
