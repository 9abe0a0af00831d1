// One shard's part in raising the namespace's number of shards (src/shards/grow.ts drives it from
// shard 0; docs/scale-out.md §9): pause, hand over what moved, resume. Each call is one event, so
// what it stores and what it sends on the links commit together.
import type { BrokerCore } from "./core";
import { ProtocolError } from "../protocol/errors";
import { RC } from "../protocol/reason-codes";
import { home } from "../shards/layout";
import { MoveOp } from "../shards/wire";
import { sessionEntries } from "../session/transfer";
import { messageEntry } from "../session/message";
import type { ShardStatus } from "../shards/grow";


/** what a connection ended by a growth is told */
const CHANGING = "the namespace's shards are changing; reconnect";

/** entries (a session's own, and one per delivery) sent per export call: bounds one event's work */
export const EXPORT_PAGE_ENTRIES = 2_000;
/** retained messages copied to the new shards per export call */
export const RETAINED_PAGE = 500;

interface ExportProgress {
  to: number;
  /** shard 0: the last retained topic copied (null: none yet) */
  retainedAfter: string | null;
  done: boolean;
}

/**
 * Pauses this shard (stored, so a restart stays paused) and ends its connections as a restart
 * would: their wills go out now, before any subscription moves, and the links carry them.
 */
export function beginGrowth(core: BrokerCore, from: number, to: number): void {
  if (ended(core, to)) return;
  const node = core.shards!;
  if (node.self !== 0 && core.store.loadReshard("plan") === null) core.store.saveReshard("plan", JSON.stringify({ from, to }));
  node.paused = true;
  node.closeEntrances(1012, CHANGING);
  for (const conn of [...core.connections]) core.fail(conn, new ProtocolError(RC.SERVER_SHUTTING_DOWN, CHANGING));
}

/**
 * This shard already ended the growth to `to` (its end records the layout): a "begin" or "export"
 * arriving now was sent by a drive whose shard 0 died, and was delivered late. Acting on it would
 * pause the shard again, with no growth left to end the pause.
 */
function ended(core: BrokerCore, to: number): boolean {
  return core.store.loadShardLayout() === to;
}

/** What the coordinator needs to know the links are quiet. */
export function growthStatus(core: BrokerCore): ShardStatus {
  const links = core.shards!.links;
  links.due(core.now()); // a link backing off tries now: the growth waits for it
  // QoS 0 copies ride in memory: a will published at "begin" must be applied before its subscriber moves
  return { pending: links.unsettled(), sent: links.sentTotal() };
}

/**
 * One page of an old shard's hand-over: sessions whose home moved (each with its deliveries, then
 * forgotten here), then (shard 0) the retained messages every new shard keeps a copy of, then this
 * shard's remaining filters to the new shards. True once all of it is sent.
 */
export function exportPage(core: BrokerCore, from: number, to: number): boolean {
  if (ended(core, to)) return true;
  const links = core.shards!.links;
  links.batchBegin(); // one chunk per new shard for the page, not a row per entry
  try {
    return exportPageBatched(core, from, to);
  } finally {
    links.batchEnd();
  }
}

function exportPageBatched(core: BrokerCore, from: number, to: number): boolean {
  const node = core.shards!;
  const saved = core.store.loadReshard("export");
  const stored = saved ? (JSON.parse(saved) as ExportProgress) : null;
  // progress of an earlier growth (to a smaller K, which never ended) counts for nothing here
  const progress: ExportProgress = stored && stored.to === to ? stored : { to, retainedAfter: null, done: false };
  if (progress.done) return true;
  let budget = EXPORT_PAGE_ENTRIES;
  for (const session of [...core.sessions.values()]) {
    const target = home(session.clientId, to);
    if (target === node.self) continue;
    if (budget <= 0) return false;
    // none is connected while paused (beginGrowth ended them, sockets are refused); one would be ended here
    for (const conn of [...core.connections]) if (conn.session === session) core.fail(conn, new ProtocolError(RC.SERVER_SHUTTING_DOWN, CHANGING));
    const entries = sessionEntries(session, core.sessions.heldDeliveries(session, (seq) => core.isForgotten(seq)));
    for (const e of entries) node.sendMove(target, e);
    core.sessions.detach(session);
    core.lifecycle.sessionLeft(session.clientId);
    budget -= entries.length;
  }
  if (node.self === 0) {
    // every shard keeps every retained message: the new ones get a copy of each, with its version
    const page = core.store.retainedAfter("", progress.retainedAfter, RETAINED_PAGE);
    for (const m of page) {
      // presence entries are kept at the session's home only (lifecycle.ts); $SYS is each shard's own
      if (m.topic.startsWith("$events/") || m.topic.startsWith("$SYS/")) continue;
      const e = { kind: "move" as const, op: MoveOp.Retained, clientId: "", meta: "", msg: messageEntry(m, core.store.retainedVersion(m.topic) ?? 0) };
      for (let p = from; p < to; p++) node.sendMove(p, e);
    }
    if (page.length === RETAINED_PAGE) {
      core.store.saveReshard("export", JSON.stringify({ to, retainedAfter: page[page.length - 1]!.topic, done: false } satisfies ExportProgress));
      return false;
    }
  }
  node.announceAllTo(from);
  core.store.saveReshard("export", JSON.stringify({ to, retainedAfter: null, done: true } satisfies ExportProgress));
  return true;
}

/** The namespace serves with `to` shards: recorded here, and the timers held meanwhile run. */
export function endGrowth(core: BrokerCore, to: number): void {
  const node = core.shards!;
  core.store.saveShardLayout(to);
  core.store.saveReshard("plan", null);
  core.store.saveReshard("export", null);
  node.paused = false;
  node.growingFrom = null;
  node.layoutUnconfirmed = false;
  core.alarm();
}
