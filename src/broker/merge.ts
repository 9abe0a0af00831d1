// The stats of a namespace's shards as one namespace's (the HTTP API, RPC, /metrics and `$SYS` at
// K > 1; docs/scale-out.md §8). Pure.
import type { NamespaceStats } from "./stats";

/** What one shard says of itself in the merged stats. */
export interface ShardFigures {
  shard: number;
  connected: number;
  sessions: number;
  subscriptions: number;
  events: NamespaceStats["events"];
  messages: NamespaceStats["messages"];
  /** copies of messages received from other shards, and sent to them */
  forwardedIn: number;
  forwardedCopies: number;
  /** copies from other shards that matched no session here */
  forwardedUnmatched: number;
}

export type MergedStats = NamespaceStats & { shards?: ShardFigures[] };

/**
 * The shards' stats as one namespace's: counts and counters add up; retained messages (every shard
 * keeps them all) and the longest queue are the largest; each shard's own figures in `shards`.
 */
export function mergeStats(list: readonly NamespaceStats[]): MergedStats {
  const out = structuredClone(list[0]!) as MergedStats;
  for (let i = 1; i < list.length; i++) add(out as unknown as Record<string, unknown>, list[i] as unknown as Record<string, unknown>, "");
  out.shards = list.map((s, i) => ({
    shard: s.shard?.index ?? i,
    connected: s.clients.connected,
    sessions: s.clients.total,
    subscriptions: s.subscriptions,
    events: s.events,
    messages: s.messages,
    forwardedIn: s.shard?.forwardedIn ?? 0,
    forwardedCopies: s.shard?.forwardedCopies ?? 0,
    forwardedUnmatched: s.shard?.forwardedUnmatched ?? 0,
  }));
  out.shards.sort((a, b) => a.shard - b.shard);
  return out;
}

/** fields that are the namespace's once, not per shard: the largest stands */
const LARGEST = new Set(["time", "uptime", "retained", "retainedBytes", "queued.maxPerSession", "events.since", "shard.index", "shard.k"]);

function add(into: Record<string, unknown>, from: Record<string, unknown>, path: string): void {
  for (const [key, value] of Object.entries(from)) {
    const at = path ? `${path}.${key}` : key;
    const mine = into[key];
    if (typeof value === "number") {
      if (typeof mine !== "number") into[key] = value;
      else if (at === "events.since") into[key] = Math.min(mine, value);
      else into[key] = LARGEST.has(at) ? Math.max(mine, value) : mine + value;
    } else if (Array.isArray(value)) {
      if (!Array.isArray(mine)) into[key] = structuredClone(value);
      else if (value.every((v) => typeof v === "number")) into[key] = mine.map((m, i) => (m as number) + ((value[i] as number) ?? 0));
      else {
        // lists of records in the same order on every shard (the rules, one config): element by element
        for (let i = 0; i < value.length && i < mine.length; i++) {
          const v = value[i];
          const m = mine[i];
          if (v && m && typeof v === "object" && typeof m === "object") add(m as Record<string, unknown>, v as Record<string, unknown>, `${at}[]`);
        }
      }
    } else if (value && typeof value === "object") {
      if (!mine || typeof mine !== "object") into[key] = structuredClone(value);
      else add(mine as Record<string, unknown>, value as Record<string, unknown>, at);
    }
  }
}
