// What this shard announces of its own subscriptions, and what it knows of every other shard's
// (docs/scale-out.md §5 and §7), so a PUBLISH is forwarded only to shards with a matching
// subscriber. Pure memory: the caller stores the ops it applies and reloads them with `load`.
//
// This round announces whole filter strings (not the fingerprints of §5.1): add when the local
// count of a filter string goes 0 → 1, remove at 1 → 0. The views are kept so that a topic costs
// one Map probe plus a trie walk, whatever the number of peers:
//   exact    Map<filter, peer | sorted peers>  — filters without + or #; a topic matches only itself
//   wild     FilterTrie of ordinary filters with + or #
//   shared   FilterTrie of `$share/<group>/<filter>` by inner filter (exact or not)
import { FilterTrie, addPeer, removePeer, type FilterNode, type FilterVisitor } from "./filter-trie";
import { parseSharedFilter } from "../topics/validate";

/** One row of a stored view: peer `peer` announced `filter`. */
export interface InterestRow {
  peer: number;
  filter: string;
}

export type GroupCallback = (shareFilter: string, shards: readonly number[]) => void;

export class Interest {
  /**
   * The result of the last `targets` call, slots 0 … count − 1, ascending. Reused: read it before
   * the next call.
   */
  readonly shards: Int32Array;

  private readonly local = new Map<string, number>();
  private localChars = 0;
  /** exact filter → the one peer having it, or the sorted peers (2 or more) */
  private readonly exact = new Map<string, number | number[]>();
  private exactPairs = 0;
  private exactChars = 0;
  private exactMulti = 0;
  private readonly wild = new FilterTrie();
  private readonly shared = new FilterTrie();
  /** filters of every kind per peer: stats, and clearPeer's fast path */
  private readonly perPeer: Int32Array;

  // targets(): a peer is in the result when seen[peer] === stamp (no clearing per call)
  private readonly seen: Uint32Array;
  private stamp = 0;
  private found = 0;
  private readonly collect: FilterVisitor = { visit: (node) => this.collectNode(node) };
  private onGroup: GroupCallback | null = null;
  private readonly groupVisitor: FilterVisitor = { visit: (node) => this.visitGroups(node) };

  constructor(
    readonly self: number,
    readonly k: number,
  ) {
    this.shards = new Int32Array(k);
    this.seen = new Uint32Array(k);
    this.perPeer = new Int32Array(k);
  }

  // ---- own summary ----

  /** A local subscription with `filter` was added; true when it is the first: announce an add. */
  localAdded(filter: string): boolean {
    const n = this.local.get(filter) ?? 0;
    this.local.set(filter, n + 1);
    if (n === 0) this.localChars += filter.length;
    return n === 0;
  }

  /** A local subscription with `filter` went; true when it was the last: announce a remove. */
  localRemoved(filter: string): boolean {
    const n = this.local.get(filter);
    if (n === undefined) return false;
    if (n > 1) {
      this.local.set(filter, n - 1);
      return false;
    }
    this.local.delete(filter);
    this.localChars -= filter.length;
    return true;
  }

  /** The filters this shard announces (for a snapshot or digest a peer asks for). */
  localFilters(): IterableIterator<string> {
    return this.local.keys();
  }

  // ---- views of the peers ----

  /**
   * Applies an announcement of `peer`. Idempotent: an add of a filter the peer has, or a remove of
   * one it has not, changes nothing. Returns whether the view changed. Ops from self, from a peer
   * outside 0 … k − 1 or with a malformed `$share/` filter are ignored.
   */
  apply(peer: number, add: boolean, filter: string): boolean {
    if (peer === this.self || !(peer >= 0 && peer < this.k) || !Number.isInteger(peer)) return false;
    const changed = isWild(filter) ? this.applyWild(peer, add, filter) : this.applyExact(peer, add, filter);
    if (changed) this.perPeer[peer]! += add ? 1 : -1;
    return changed;
  }

  /** Adds every row, as `apply(peer, true, filter)` does. To replace a peer's view, clearPeer first. */
  load(rows: Iterable<InterestRow>): void {
    for (const row of rows) this.apply(row.peer, true, row.filter);
  }

  /** Forgets everything `peer` announced; returns how many filters that was. */
  clearPeer(peer: number): number {
    if (!(peer >= 0 && peer < this.k) || this.perPeer[peer] === 0) return 0;
    let removed = 0;
    if (this.exactPairs > 0) {
      this.exact.forEach((v, filter) => {
        if (typeof v === "number") {
          if (v !== peer) return;
          this.exact.delete(filter);
          this.exactChars -= filter.length;
        } else {
          if (!removePeer(v, peer)) return;
          if (v.length === 1) {
            this.exact.set(filter, v[0]!); // replacing the current entry while iterating is safe
            this.exactMulti--;
          }
        }
        this.exactPairs--;
        removed++;
      });
    }
    removed += this.wild.clearPeer(peer) + this.shared.clearPeer(peer);
    this.perPeer[peer] = 0;
    return removed;
  }

  // ---- lookups (hot path: no allocation) ----

  /** Whether any peer announced anything: when false, a publish needs no other lookup. */
  hasAny(): boolean {
    return this.exactPairs > 0 || this.wild.size > 0 || this.shared.size > 0;
  }

  /** Whether any peer announced a shared filter: when false, `groups` has nothing to report. */
  hasShared(): boolean {
    return this.shared.size > 0;
  }

  /**
   * The peers with at least one ordinary (non-shared) filter matching `topic`, in
   * `shards[0 … count − 1]`, ascending; never self. Returns the count.
   */
  targets(topic: string): number {
    this.found = 0;
    if (++this.stamp === 0xffffffff) {
      this.seen.fill(0);
      this.stamp = 1;
    }
    if (this.exactPairs > 0) {
      const v = this.exact.get(topic);
      if (v !== undefined) {
        if (typeof v === "number") this.mark(v);
        else for (let i = 0; i < v.length; i++) this.mark(v[i]!);
      }
    }
    if (this.wild.size > 0) this.wild.match(topic, this.collect);
    return this.found;
  }

  /**
   * Calls `onGroup` for every shared filter `$share/<group>/<f>` announced by peers whose `f`
   * matches `topic`, with those peers (ascending). The array is live: read it within the call.
   */
  groups(topic: string, onGroup: GroupCallback): void {
    if (this.shared.size === 0) return;
    this.onGroup = onGroup;
    try {
      this.shared.match(topic, this.groupVisitor);
    } finally {
      this.onGroup = null;
    }
  }

  // ---- stats ----

  sizes(): InterestSizes {
    return {
      localFilters: this.local.size,
      exactFilters: this.exact.size,
      exactPairs: this.exactPairs,
      wildFilters: this.wild.filterCount,
      wildPairs: this.wild.size,
      sharedFilters: this.shared.filterCount,
      sharedPairs: this.shared.size,
      perPeer: Array.from(this.perPeer),
    };
  }

  /**
   * Rough bytes held by the views and the local counts (V8 on 64 bits): per Map entry ≈ 40 bytes
   * with the table's slack, a string ≈ 24 + its length, a multi-peer list ≈ 48 + 8 per peer, a
   * trie node ≈ 150. Measured against the heap by bench/interest.ts.
   */
  memoryEstimate(): number {
    const exact = this.exact.size * (40 + 24) + this.exactChars + this.exactMulti * 48 + (this.exactPairs - this.exact.size) * 8;
    const local = this.local.size * (40 + 24) + this.localChars;
    const tries = (this.wild.nodeCount + this.shared.nodeCount) * 150 + (this.wild.size + this.shared.size) * 8;
    return exact + local + tries;
  }

  // ---- internals ----

  private applyExact(peer: number, add: boolean, filter: string): boolean {
    const v = this.exact.get(filter);
    if (add) {
      if (v === undefined) {
        this.exact.set(filter, peer);
        this.exactChars += filter.length;
      } else if (typeof v === "number") {
        if (v === peer) return false;
        this.exact.set(filter, v < peer ? [v, peer] : [peer, v]);
        this.exactMulti++;
      } else if (!addPeer(v, peer)) return false;
      this.exactPairs++;
      return true;
    }
    if (v === undefined) return false;
    if (typeof v === "number") {
      if (v !== peer) return false;
      this.exact.delete(filter);
      this.exactChars -= filter.length;
    } else {
      if (!removePeer(v, peer)) return false;
      if (v.length === 1) {
        this.exact.set(filter, v[0]!);
        this.exactMulti--;
      }
    }
    this.exactPairs--;
    return true;
  }

  private applyWild(peer: number, add: boolean, filter: string): boolean {
    const shared = parseSharedFilter(filter);
    if (shared === "invalid") return false;
    if (shared) {
      return add ? this.shared.addShared(filter, shared.group, shared.filter, peer) : this.shared.removeShared(shared.group, shared.filter, peer);
    }
    return add ? this.wild.addPeer(filter, peer) : this.wild.removePeer(filter, peer);
  }

  private mark(peer: number): void {
    if (this.seen[peer] === this.stamp) return;
    this.seen[peer] = this.stamp;
    // insertion keeps shards[] ascending; the result is short (≤ k − 1)
    let i = this.found++;
    while (i > 0 && this.shards[i - 1]! > peer) {
      this.shards[i] = this.shards[i - 1]!;
      i--;
    }
    this.shards[i] = peer;
  }

  private collectNode(node: FilterNode): void {
    const peers = node.peers;
    if (peers) for (let i = 0; i < peers.length; i++) this.mark(peers[i]!);
  }

  private visitGroups(node: FilterNode): void {
    const groups = node.groups;
    if (!groups) return;
    for (let i = 0; i < groups.length; i++) this.onGroup!(groups[i]!.shareFilter, groups[i]!.peers);
  }
}

export interface InterestSizes {
  /** distinct filter strings this shard announces */
  localFilters: number;
  /** distinct exact filters in the views, and (filter, peer) pairs */
  exactFilters: number;
  exactPairs: number;
  wildFilters: number;
  wildPairs: number;
  /** shared filters (one per group and filter) and (shared filter, peer) pairs */
  sharedFilters: number;
  sharedPairs: number;
  /** filters of every kind per peer (self: 0) */
  perPeer: number[];
}

/** Routed through a trie: a wildcard filter, or any shared one (`$share/g/f`). */
function isWild(filter: string): boolean {
  if (filter.charCodeAt(0) === 0x24 /* $ */ && filter.startsWith("$share/")) return true;
  for (let i = 0; i < filter.length; i++) {
    const c = filter.charCodeAt(i);
    if (c === 0x2b /* + */ || c === 0x23 /* # */) return true;
  }
  return false;
}
