// A read-only look at one namespace's broker: what memory and storage hold, and every place they
// disagree. Used by tests (through the Durable Object's `inspect` RPC method, which only code
// holding the BROKER binding can call) to prove that hostile input leaves the state consistent.
import { connectionOf } from "./connection";
import type { BrokerCore } from "./core";
import { PRESENCE_PREFIX } from "../limits/retained-quota";

export interface BrokerSnapshot {
  sessions: { clientId: string; connected: boolean; persistent: boolean; expiresAt: number | null; subscriptions: string[]; will: string | null; owner: string | null }[];
  connections: { clientId: string; state: string }[];
  retained: { count: number; bytes: number };
  /** empty when memory, storage and the router agree */
  problems: string[];
}

export function inspect(core: BrokerCore): BrokerSnapshot {
  const problems: string[] = [];
  const rows = new Map(core.store.loadSessions().map((r) => [r.clientId, r]));
  const storedSubs = new Set(core.store.loadSubscriptions().map((s) => `${s.clientId}\u0000${s.filter}`));
  let subCount = 0;
  for (const s of core.sessions.values()) {
    const id = s.clientId;
    const row = rows.get(id);
    if (!row) problems.push(`session ${id} is in memory but not stored`);
    else if (row.connected !== (s.conn !== null)) problems.push(`session ${id}: stored connected=${row.connected}, memory ${s.conn !== null}`);
    if (row && (row.owner ?? null) !== s.owner) problems.push(`session ${id}: stored owner ${row.owner ?? null}, memory ${s.owner}`);
    const conn = connectionOf(s);
    if (conn && (conn.session !== s || !core.connections.has(conn) || conn.state !== "connected")) {
      problems.push(`session ${id} holds a connection that does not hold it`);
    }
    for (const filter of s.subscriptions.keys()) {
      subCount++;
      if (!storedSubs.delete(`${id}\u0000${filter}`)) problems.push(`subscription ${id} ${filter} is not stored`);
    }
  }
  for (const id of rows.keys()) if (!core.sessions.has(id)) problems.push(`session ${id} is stored but not in memory`);
  for (const key of storedSubs) problems.push(`stored subscription ${key.replace("\u0000", " ")} has no session in memory`);
  if (core.router.subscriptionCount !== subCount) problems.push(`router holds ${core.router.subscriptionCount} subscriptions, sessions ${subCount}`);
  for (const c of core.connections) {
    if (c.state === "connected" && c.session?.conn !== c) problems.push(`connection ${c.clientId} is connected without its session`);
  }
  // Durable sessions: stored deliveries belong to a session, and match what memory holds.
  const storedInflight = new Map<string, Set<number>>();
  for (const row of core.store.loadInflight()) {
    if (core.isForgotten(row.seq)) continue; // acknowledged: its removal is batched (storage/deferred-deletes.ts)
    if (!core.sessions.has(row.clientId)) problems.push(`stored delivery ${row.seq} of unknown session ${row.clientId}`);
    let set = storedInflight.get(row.clientId);
    if (!set) storedInflight.set(row.clientId, (set = new Set()));
    set.add(row.seq);
  }
  const queued = new Map(core.store.queueStats().map((q) => [q.clientId, q.count]));
  for (const id of queued.keys()) if (!core.sessions.has(id)) problems.push(`stored queue of unknown session ${id}`);
  for (const s of core.sessions.values()) {
    const id = s.clientId;
    if (!s.durable) continue;
    const memory = [...s.inflight.values()].map((f) => f.seq ?? -1).sort((a, b) => a - b);
    const stored = [...(storedInflight.get(id) ?? [])].sort((a, b) => a - b);
    if (memory.join() !== stored.join()) problems.push(`session ${id}: in-flight ${memory.join()} in memory, ${stored.join()} stored`);
    if ((queued.get(id) ?? 0) !== s.queuedCount) problems.push(`session ${id}: ${s.queuedCount} queued in memory, ${queued.get(id) ?? 0} stored`);
  }
  const retained = core.store.retainedUsage();
  // the quota is the clients': the presence entries (one per session) are outside it
  const clients = core.store.retainedUsage(PRESENCE_PREFIX);
  const { MAX_RETAINED_MESSAGES: maxCount, MAX_RETAINED_BYTES: maxBytes } = core.config;
  if (maxCount > 0 && clients.count > maxCount) problems.push(`${clients.count} retained messages, limit ${maxCount}`);
  if (maxBytes > 0 && clients.bytes > maxBytes) problems.push(`${clients.bytes} retained bytes, limit ${maxBytes}`);
  const presence = retained.count - clients.count;
  if (core.config.PRESENCE_RETAINED && presence > core.sessions.size) problems.push(`${presence} retained presence entries for ${core.sessions.size} sessions`);
  return {
    sessions: [...core.sessions.values()].map((s) => ({
      clientId: s.clientId,
      connected: s.conn !== null,
      persistent: s.persistent,
      expiresAt: s.expiresAt,
      subscriptions: [...s.subscriptions.keys()],
      will: s.will ? s.will.topic : null,
      owner: s.owner,
    })),
    connections: [...core.connections].map((c) => ({ clientId: c.clientId, state: c.state })),
    retained,
    problems,
  };
}
