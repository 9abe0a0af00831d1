// A namespace as the HTTP API, RPC and /metrics see it: one, whatever number of shards it spans
// (docs/scale-out.md §8). At one shard every call is the one object's, unchanged; at K > 1 reads
// ask every shard and merge, and per-shard figures are kept in `shards`.
import type { Env } from "../env";
import type { ClientDetail, ClientInfo, ExternalMessage, NamespaceStats, PublishOutcome, RetainedMessage } from "../broker/admin";
import { loadConfig } from "../config";
import { shardName } from "../shards/layout";

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
}

export type MergedStats = NamespaceStats & { shards?: ShardFigures[] };

export class NamespaceView {
  readonly k: number;

  constructor(
    private readonly env: Env,
    readonly namespace: string,
  ) {
    this.k = loadConfig(env).SHARDS;
  }

  /** the object of shard `i` (0: the namespace's own object, the only one at K = 1) */
  shard(i = 0) {
    return this.env.BROKER.get(this.env.BROKER.idFromName(shardName(this.namespace, i)));
  }

  private all<T>(call: (shard: ReturnType<NamespaceView["shard"]>) => Promise<T>): Promise<T[]> {
    return Promise.all(Array.from({ length: this.k }, (_, i) => call(this.shard(i))));
  }

  /** A publish is accepted by one shard, which forwards it to the others' subscribers. */
  publish(msg: ExternalMessage): Promise<PublishOutcome> {
    return this.shard(this.k > 1 ? Math.floor(Math.random() * this.k) : 0).publish(msg);
  }

  async clients(): Promise<ClientInfo[]> {
    if (this.k === 1) return this.shard().clients();
    return (await this.all((s) => s.clients())).flat().sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0));
  }

  async client(clientId: string): Promise<ClientDetail | null> {
    if (this.k === 1) return this.shard().client(clientId);
    return (await this.all((s) => s.client(clientId))).find((d) => d !== null) ?? null;
  }

  async disconnect(clientId: string): Promise<boolean> {
    if (this.k === 1) return this.shard().disconnect(clientId);
    return (await this.all((s) => s.disconnect(clientId))).some(Boolean);
  }

  /** Every shard keeps every retained message: one answers. */
  retained(filter: string, limit: number): Promise<{ messages: RetainedMessage[]; truncated: boolean }> {
    return this.shard().retained(filter, limit);
  }

  /** ...and each removes its copy. */
  async deleteRetained(topic: string): Promise<boolean> {
    if (this.k === 1) return this.shard().deleteRetained(topic);
    return (await this.all((s) => s.deleteRetained(topic))).some(Boolean);
  }

  async stats(): Promise<MergedStats> {
    if (this.k === 1) return this.shard().stats();
    return mergeStats(await this.all((s) => s.stats()));
  }
}

/**
 * The shards' stats as one namespace's: counts and counters add up; retained messages (every shard
 * keeps them all) and the longest queue are the largest; each shard's own figures in `shards`.
 */
export function mergeStats(list: readonly NamespaceStats[]): MergedStats {
  const out = structuredClone(list[0]!) as MergedStats;
  for (let i = 1; i < list.length; i++) add(out as unknown as Record<string, unknown>, list[i] as unknown as Record<string, unknown>, "");
  out.shards = list.map((s, i) => ({
    shard: i,
    connected: s.clients.connected,
    sessions: s.clients.total,
    subscriptions: s.subscriptions,
    events: s.events,
    messages: s.messages,
    forwardedIn: s.shard?.forwardedIn ?? 0,
    forwardedCopies: s.shard?.forwardedCopies ?? 0,
  }));
  // A message a client publishes is received once (by its shard); copies between shards are not messages.
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
    } else if (value && typeof value === "object") {
      if (!mine || typeof mine !== "object") into[key] = structuredClone(value);
      else add(mine as Record<string, unknown>, value as Record<string, unknown>, at);
    }
  }
}
