// A namespace as the HTTP API, RPC and /metrics see it: one, whatever number of shards it spans
// (docs/scale-out.md §8). At one shard every call is the one object's, unchanged; at K > 1 reads
// ask every shard and merge, and per-shard figures are kept in `shards`.
import type { Env } from "../env";
import type { ClientDetail, ClientInfo, ExternalMessage, PublishOutcome, RetainedMessage } from "../broker/admin";
import { mergeStats, type MergedStats } from "../broker/merge";
import { loadConfig } from "../config";
import { shardName, shardOf } from "../shards/layout";

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

  /**
   * A publish is accepted by one shard, which forwards it to the others' subscribers: the same one
   * for a topic (its hash), so that publishes made one after the other on a topic arrive in that order.
   */
  publish(msg: ExternalMessage): Promise<PublishOutcome> {
    return this.shard(shardOf(msg.topic, this.k)).publish(msg);
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
    // one version for every shard (the topic's shard makes it), so they all decide alike about copies on their way
    const first = shardOf(topic, this.k);
    const made = await this.shard(first).removeRetained(topic, null);
    const rest = await Promise.all(Array.from({ length: this.k }, (_, i) => (i === first ? null : this.shard(i).removeRetained(topic, made.version))));
    return made.deleted || rest.some((r) => r?.deleted === true);
  }

  async stats(): Promise<MergedStats> {
    if (this.k === 1) return this.shard().stats();
    return mergeStats(await this.all((s) => s.stats()));
  }
}
