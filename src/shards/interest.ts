// What this shard announces of its own subscriptions, and what it knows of every other shard's
// (docs/scale-out.md §5 and §7), so a PUBLISH is forwarded only to shards with a matching
// subscriber. Pure memory: the caller stores the ops it applies and reloads them with `load` (strings)
// and `loadFingerprints`.
//
// Exact filters (no + or #, not shared) are announced as 32-bit fingerprints (§5.1, fingerprint.ts):
// add when the local count of a FINGERPRINT goes 0 → 1, remove at 1 → 0, so two local filters
// sharing one are one announcement. Wildcard and shared filters are announced as whole strings,
// counted per string. The views are kept so that a topic costs one hash, one probe and a trie walk,
// whatever the number of peers:
//   exact    FingerprintPairs: (fingerprint, peer) in typed arrays, ≈ 10 bytes per remote filter
//   wild     FilterTrie of ordinary filters with + or #
//   shared   FilterTrie of `$share/<group>/<filter>` by inner filter (exact or not)
// A topic whose fingerprint a peer's exact filter shares, without being that filter, gets a copy the
// peer's router matches to nobody: a false positive costs a useless copy, never a lost one.
import { FilterTrie, type FilterNode, type FilterVisitor } from "./filter-trie";
import { FingerprintCounts, FingerprintPairs, fingerprint, isExactFilter, type ShardVisitor } from "./fingerprint";
import { parseSharedFilter } from "../topics/validate";

/** One row of a stored view: peer `peer` announced `filter`. */
export interface InterestRow {
  peer: number;
  filter: string;
}

/** One stored exact filter of a peer, as its fingerprint. */
export interface FingerprintRow {
  peer: number;
  fp: number;
}

export type GroupCallback = (shareFilter: string, shards: readonly number[]) => void;

export class Interest {
  /**
   * The result of the last `targets` call, slots 0 … count − 1, ascending. Reused: read it before
   * the next call.
   */
  readonly shards: Int32Array;

  /** own wildcard and shared filters: count per string */
  private readonly local = new Map<string, number>();
  private localChars = 0;
  /** own exact filters: count per fingerprint */
  private readonly localExact = new FingerprintCounts();
  /** the peers' exact filters: (fingerprint, peer) pairs */
  private readonly exact: FingerprintPairs;
  private readonly wild = new FilterTrie();
  private readonly shared = new FilterTrie();
  /** filters of every kind per peer: stats, and clearPeer's fast path */
  private readonly perPeer: Int32Array;

  // targets(): a peer is in the result when seen[peer] === stamp (no clearing per call)
  private readonly seen: Uint32Array;
  private stamp = 0;
  private found = 0;
  private readonly collect: FilterVisitor = { visit: (node) => this.collectNode(node) };
  private readonly collectShard: ShardVisitor = { shard: (peer) => this.mark(peer) };
  private onGroup: GroupCallback | null = null;
  private readonly groupVisitor: FilterVisitor = { visit: (node) => this.visitGroups(node) };

  constructor(
    readonly self: number,
    readonly k: number,
  ) {
    this.shards = new Int32Array(k);
    this.seen = new Uint32Array(k);
    this.perPeer = new Int32Array(k);
    this.exact = new FingerprintPairs(k);
  }

  // ---- own summary ----

  /**
   * A local subscription with `filter` was added; true when it is the first: announce an add (of
   * the fingerprint when `isExactFilter(filter)`, of the string otherwise).
   */
  localAdded(filter: string): boolean {
    if (isExactFilter(filter)) return this.localExact.increment(fingerprint(filter)) === 1;
    const n = this.local.get(filter) ?? 0;
    this.local.set(filter, n + 1);
    if (n === 0) this.localChars += filter.length;
    return n === 0;
  }

  /**
   * A local subscription with `filter` went; true when it was the last: announce a remove. Only a
   * filter added before may be removed: an exact one is known by its fingerprint alone, so removing
   * one never added would take a count from another filter sharing its fingerprint.
   */
  localRemoved(filter: string): boolean {
    if (isExactFilter(filter)) return this.localExact.decrement(fingerprint(filter)) === 0;
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

  /** The wildcard and shared filters this shard announces (for a snapshot or digest a peer asks for). */
  localFilters(): IterableIterator<string> {
    return this.local.keys();
  }

  /** The fingerprints of the exact filters this shard announces, ascending. */
  localFingerprints(): number[] {
    return this.localExact.keysSorted();
  }

  // ---- views of the peers ----

  /**
   * Applies an announcement of `peer`. Idempotent: an add of a filter the peer has, or a remove of
   * one it has not, changes nothing. Returns whether the view changed. Ops from self, from a peer
   * outside 0 … k − 1 or with a malformed `$share/` filter are ignored.
   */
  apply(peer: number, add: boolean, filter: string): boolean {
    if (isExactFilter(filter)) return this.applyFingerprint(peer, add, fingerprint(filter));
    if (!this.fromPeer(peer)) return false;
    const changed = this.applyTrie(peer, add, filter);
    if (changed) this.perPeer[peer]! += add ? 1 : -1;
    return changed;
  }

  /** Applies a fingerprint a peer announced (an exact filter), as `apply` does a string. */
  applyFingerprint(peer: number, add: boolean, fp: number): boolean {
    if (!this.fromPeer(peer) || !(fp >= 0 && fp <= 0xffffffff) || !Number.isInteger(fp)) return false;
    const changed = add ? this.exact.add(fp, peer) : this.exact.remove(fp, peer);
    if (changed) this.perPeer[peer]! += add ? 1 : -1;
    return changed;
  }

  /** Adds every row, as `apply(peer, true, filter)` does. To replace a peer's view, clearPeer first. */
  load(rows: Iterable<InterestRow>): void {
    for (const row of rows) this.apply(row.peer, true, row.filter);
  }

  /** Adds every row, as `applyFingerprint(peer, true, fp)` does. */
  loadFingerprints(rows: Iterable<FingerprintRow>): void {
    for (const row of rows) this.applyFingerprint(row.peer, true, row.fp);
  }

  /** Forgets everything `peer` announced; returns how many filters that was. */
  clearPeer(peer: number): number {
    if (!(peer >= 0 && peer < this.k) || this.perPeer[peer] === 0) return 0;
    const removed = this.exact.clearShard(peer) + this.wild.clearPeer(peer) + this.shared.clearPeer(peer);
    this.perPeer[peer] = 0;
    return removed;
  }

  /** The wildcard and shared filters `peer` announced (a scan of the tries: not per message). */
  viewOf(peer: number): string[] {
    const out: string[] = [];
    if (!(peer >= 0 && peer < this.k) || this.perPeer[peer] === 0) return out;
    this.wild.filtersOf(peer, out);
    this.shared.filtersOf(peer, out);
    return out;
  }

  /** The fingerprints of the exact filters `peer` announced, ascending (a scan: not per message). */
  fingerprintsOf(peer: number): number[] {
    if (!(peer >= 0 && peer < this.k) || this.perPeer[peer] === 0) return [];
    return this.exact.of(peer);
  }

  // ---- lookups (hot path: no allocation) ----

  /** Whether any peer announced anything: when false, a publish needs no other lookup. */
  hasAny(): boolean {
    return this.exact.size > 0 || this.wild.size > 0 || this.shared.size > 0;
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
    if (this.exact.size > 0) this.exact.match(fingerprint(topic), this.collectShard);
    if (this.wild.size > 0) this.wild.match(topic, this.collect);
    return this.found;
  }

  /**
   * Calls `onGroup` for every shared filter `$share/<group>/<f>` announced by peers whose `f`
   * matches `topic`, with those peers (ascending). The array is live: read it within the call.
   */
  groups(topic: string, onGroup: GroupCallback): void {
    if (this.shared.size === 0) return;
    const outer = this.onGroup; // a callback may itself call groups()
    this.onGroup = onGroup;
    try {
      this.shared.match(topic, this.groupVisitor);
    } finally {
      this.onGroup = outer;
    }
  }

  // ---- stats ----

  sizes(): InterestSizes {
    return {
      localFilters: this.local.size + this.localExact.size,
      exactFilters: this.exact.distinct,
      exactPairs: this.exact.size,
      wildFilters: this.wild.filterCount,
      wildPairs: this.wild.size,
      sharedFilters: this.shared.filterCount,
      sharedPairs: this.shared.size,
      perPeer: Array.from(this.perPeer),
    };
  }

  /**
   * Rough bytes held by the views and the local counts (V8 on 64 bits, fitted by bench/interest.ts):
   * the fingerprint tables' arrays exactly, a Map entry with its string ≈ 50 + the string's length,
   * a trie node with its level ≈ 130. O(1).
   */
  memoryEstimate(): number {
    const local = this.local.size * 50 + this.localChars + this.localExact.bytes;
    const tries = (this.wild.nodeCount + this.shared.nodeCount) * 130 + (this.wild.size + this.shared.size) * 8;
    return this.exact.bytes + local + tries;
  }

  // ---- internals ----

  /** an op from a peer: not self, within 0 … k − 1 */
  private fromPeer(peer: number): boolean {
    return peer !== this.self && peer >= 0 && peer < this.k && Number.isInteger(peer);
  }

  private applyTrie(peer: number, add: boolean, filter: string): boolean {
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
  /** what this shard announces: distinct wildcard and shared filter strings, and exact filters' fingerprints */
  localFilters: number;
  /** distinct fingerprints of exact filters in the views, and (fingerprint, peer) pairs */
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

