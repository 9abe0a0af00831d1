// Raising the number of shards of a namespace (docs/scale-out.md §9), driven by shard 0. Jump
// hashing moves a client id's home only to one of the new shards, so the old shards hand the
// sessions whose home moved to their new homes, over the ordinary links (exactly once, in order),
// while nothing publishes: every shard refuses sockets and API publishes and holds the timers that
// publish (wills, expiry events) from "begin" to "end". Each step is idempotent and its progress is
// stored on shard 0, so a crash anywhere resumes where it stopped and nothing is lost or doubled:
//   begin   every shard pauses, closing its connections as a restart would (their wills go now)
//   drain   until no shard has a chunk unacknowledged: every copy published before is applied
//   export  each old shard, page by page, sends its moved sessions (and shard 0 the retained
//           messages) to the new shards, forgets them, then announces its remaining filters to them
//   settle  until no shard has a chunk unacknowledged twice in a row with nothing sent between:
//           every session, its queue, every filter announced is applied everywhere
//   end     every shard records the new number and serves again.
// Pure: the calls to the shards are given; plain Node runs it in tests.
import type { Store } from "../storage/store";

export type GrowthPhase = "begin" | "drain" | "export" | "settle" | "end";

export interface GrowthPlan {
  from: number;
  to: number;
  phase: GrowthPhase;
  /** settle: the shards' chunk counts at the last reading (ShardStatus.sent) */
  sent?: number[];
  /**
   * the shards that export (default `from`): more when SHARDS was raised again before a growth
   * ended, as the earlier growth's new shards may hold sessions whose home moved again
   */
  exporters?: number;
  /** export: the shards (from 0) whose export is complete */
  exported?: number;
}

export interface ShardStatus {
  /** chunks not yet acknowledged */
  pending: number;
  /** chunks ever numbered (grows only) */
  sent: number;
}

/** What the coordinator asks of shard `i` (shard 0 answers its own calls directly). */
export interface GrowthCalls {
  begin(i: number, from: number, to: number): Promise<void>;
  status(i: number): Promise<ShardStatus>;
  /** one page of the old shard `i`'s export; true once it has nothing more to send */
  exportPage(i: number, from: number, to: number): Promise<boolean>;
  end(i: number, to: number): Promise<void>;
}

export interface PlanStore {
  load(): GrowthPlan | null;
  save(plan: GrowthPlan | null): void;
}

/**
 * Shard 0's growth plan, kept in its storage. (Another shard keeps `{from, to}` under the same
 * key from "begin" to "end": only whether it is there counts, its pause.)
 */
export function planStore(store: Store): PlanStore {
  return {
    load: () => {
      const json = store.loadReshard("plan");
      return json === null ? null : (JSON.parse(json) as GrowthPlan);
    },
    save: (plan) => store.saveReshard("plan", plan === null ? null : JSON.stringify(plan)),
  };
}

/**
 * Moves the plan on as far as it can now. Returns true once the growth is complete; false when a
 * later call must go on (links still busy). Throws when a shard did not answer (the caller retries).
 */
export async function advanceGrowth(store: PlanStore, from: number, to: number, calls: GrowthCalls): Promise<boolean> {
  let plan: GrowthPlan = store.load() ?? { from, to, phase: "begin" };
  if (plan.from === from && plan.to !== to && to >= from) {
    // SHARDS changed again before the growth to plan.to ended (shard 0 has not recorded it). Raised:
    // the growth starts over towards `to`, every shard that may hold a moved session exporting.
    // Set back before anything moved: the same, to `to` (which may be `from`: the shards resume).
    const exporters = Math.max(plan.exporters ?? plan.from, plan.to);
    const nothingMoved = (plan.phase === "begin" || plan.phase === "drain") && (plan.exporters ?? from) <= to;
    if (plan.to < to) plan = { from, to, phase: "begin", exporters };
    else if (nothingMoved) plan = { from, to, phase: "begin", ...(plan.exporters !== undefined ? { exporters: plan.exporters } : {}) };
  }
  if (plan.to !== to || plan.from !== from) throw new Error(`a growth from SHARDS=${plan.from} to SHARDS=${plan.to} is under way and sessions have moved: set SHARDS back to ${plan.to} (or more) until it ends`);
  const exporters = plan.exporters ?? from;
  const next = (phase: GrowthPhase, extra: Partial<GrowthPlan> = {}) => {
    plan = { from, to, phase, ...(exporters !== from ? { exporters } : {}), ...extra };
    store.save(plan);
  };
  const all = Array.from({ length: to }, (_, i) => i);
  if (plan.phase === "begin") {
    store.save(plan); // from here every shard, shard 0 first, stays paused until "end"
    for (const i of all) await calls.begin(i, from, to);
    next("drain");
  }
  if (plan.phase === "drain") {
    const statuses = await Promise.all(all.map((i) => calls.status(i)));
    if (statuses.some((s) => s.pending > 0)) return false;
    next("export");
  }
  if (plan.phase === "export") {
    // one page a call at most: shard 0's own pages are no RPC, so without this its whole export would
    // be one event (one transaction, one CPU budget) however many sessions it holds
    for (let i = plan.exported ?? 0; i < exporters; i++) {
      if (!(await calls.exportPage(i, from, to))) return false;
      next("export", { exported: i + 1 });
    }
    next("settle");
  }
  if (plan.phase === "settle") {
    const statuses = await Promise.all(all.map((i) => calls.status(i)));
    const sent = statuses.map((s) => s.sent);
    // Quiet: nothing pending at two readings in a row and nothing numbered between them. (Whatever
    // was applied after a shard's first reading came from a chunk acknowledged before its sender's
    // first reading, so what it made is counted by the second reading.)
    const idle = statuses.every((s) => s.pending === 0);
    const quiet = idle && plan.sent !== undefined && sent.every((n, i) => n === plan.sent![i]);
    if (!quiet) {
      next("settle", idle ? { sent } : {});
      return false;
    }
    next("end");
  }
  // shard 0 last: its "end" records the new number and clears this plan in one event
  for (const i of all.slice(1)) await calls.end(i, to);
  await calls.end(0, to);
  return true;
}
