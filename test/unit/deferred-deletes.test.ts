// Acknowledged deliveries are removed from storage in batches (pure, with a fake store and timer).
import { describe, expect, test } from "vitest";
import { DeferredDeletes } from "../../src/storage/deferred-deletes";
import type { Store } from "../../src/storage/store";

describe("DeferredDeletes", () => {
  test("one removal per batch, one timer per batch, and pending rows are known until removed", () => {
    const removed: number[][] = [];
    const timers: (() => void)[] = [];
    const store = { deleteDeliveries: (seqs: number[]) => removed.push([...seqs]) } as unknown as Store;
    const acked = new DeferredDeletes(store, (fn) => timers.push(fn));
    acked.add(3);
    acked.add(5);
    expect(timers).toHaveLength(1);
    expect([acked.has(3), acked.has(5), acked.has(4)]).toEqual([true, true, false]);
    timers.shift()!();
    expect(removed).toEqual([[3, 5]]);
    expect(acked.has(3)).toBe(false);
    acked.add(7);
    expect(timers).toHaveLength(1); // a new batch, a new timer
    acked.flush();
    acked.flush(); // nothing left: no empty removal
    expect(removed).toEqual([[3, 5], [7]]);
  });
});
