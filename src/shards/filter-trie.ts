// A topic trie of the filters other shards announced (docs/scale-out.md §5.2): each filter's node
// holds the peers that have it, or for shared filters the groups and their peers. It mirrors
// src/topics/trie.ts but stores small peer lists instead of a Map per subscriber, and its walk
// hands nodes to a visitor object, so a match allocates nothing (levels are cached per topic).

/** A shared filter `$share/<group>/<filter>` and the peers that announced it (sorted, no repeats). */
export interface SharedInterest {
  readonly shareFilter: string;
  readonly group: string;
  readonly peers: number[];
}

export class FilterNode {
  /** literal levels; `+` and `#` have their own fields, so a walk reads them without a Map probe */
  children: Map<string, FilterNode> | null = null;
  plus: FilterNode | null = null;
  hash: FilterNode | null = null;
  /** peers with this (non-shared) filter, sorted; null when none */
  peers: number[] | null = null;
  /** shared groups whose inner filter is this node's filter; null when none */
  groups: SharedInterest[] | null = null;

  isEmpty(): boolean {
    return !this.children?.size && !this.plus && !this.hash && !this.peers && !this.groups;
  }

  child(level: string): FilterNode | null {
    return level === "+" ? this.plus : level === "#" ? this.hash : (this.children?.get(level) ?? null);
  }

  setChild(level: string, node: FilterNode): void {
    if (level === "+") this.plus = node;
    else if (level === "#") this.hash = node;
    else (this.children ??= new Map()).set(level, node);
  }

  deleteChild(level: string): void {
    if (level === "+") this.plus = null;
    else if (level === "#") this.hash = null;
    else if (this.children) {
      this.children.delete(level);
      if (this.children.size === 0) this.children = null;
    }
  }
}

export interface FilterVisitor {
  visit(node: FilterNode): void;
}

/** Inserts `peer` into a sorted list; false when it was there. */
export function addPeer(list: number[], peer: number): boolean {
  let i = list.length;
  while (i > 0 && list[i - 1]! > peer) i--;
  if (i > 0 && list[i - 1] === peer) return false;
  list.splice(i, 0, peer);
  return true;
}

/** Removes `peer` from a list; false when it was not there. */
export function removePeer(list: number[], peer: number): boolean {
  const i = list.indexOf(peer);
  if (i < 0) return false;
  list.splice(i, 1);
  return true;
}

const LEVEL_CACHE = 4096;

export class FilterTrie {
  private readonly root = new FilterNode();
  /** (filter, peer) pairs, or (shared filter, peer) pairs */
  private pairs = 0;
  /** distinct filters (nodes with peers or groups: one per group) */
  private filters = 0;
  private nodes = 1;

  get size(): number {
    return this.pairs;
  }

  get filterCount(): number {
    return this.filters;
  }

  get nodeCount(): number {
    return this.nodes;
  }

  addPeer(filter: string, peer: number): boolean {
    const node = this.nodeFor(filter);
    if (!node.peers) {
      node.peers = [peer];
      this.filters++;
    } else if (!addPeer(node.peers, peer)) return false;
    this.pairs++;
    return true;
  }

  removePeer(filter: string, peer: number): boolean {
    const path = this.pathTo(filter);
    if (!path) return false;
    const node = path[path.length - 1]!;
    if (!node.peers || !removePeer(node.peers, peer)) return false;
    this.pairs--;
    if (node.peers.length === 0) {
      node.peers = null;
      this.filters--;
      this.prune(filter, path);
    }
    return true;
  }

  addShared(shareFilter: string, group: string, filter: string, peer: number): boolean {
    const node = this.nodeFor(filter);
    node.groups ??= [];
    let g = node.groups.find((x) => x.group === group);
    if (!g) {
      g = { shareFilter, group, peers: [] };
      node.groups.push(g);
      this.filters++;
    }
    if (!addPeer(g.peers, peer)) return false;
    this.pairs++;
    return true;
  }

  removeShared(group: string, filter: string, peer: number): boolean {
    const path = this.pathTo(filter);
    if (!path) return false;
    const node = path[path.length - 1]!;
    const at = node.groups?.findIndex((x) => x.group === group) ?? -1;
    if (at < 0) return false;
    const g = node.groups![at]!;
    if (!removePeer(g.peers, peer)) return false;
    this.pairs--;
    if (g.peers.length === 0) {
      node.groups!.splice(at, 1);
      if (node.groups!.length === 0) node.groups = null;
      this.filters--;
      this.prune(filter, path);
    }
    return true;
  }

  /**
   * Hands every node whose filter matches `topic` to `visitor` (MQTT matching: `+` one level, `#`
   * the rest including the parent level; a filter starting with a wildcard does not match a `$`
   * topic [MQTT-4.7.2-1]). A node is visited once per way it matches (`a/+` and `a/#` are
   * different nodes; one node is never reached twice for one topic).
   */
  match(topic: string, visitor: FilterVisitor): void {
    if (this.nodes === 1) return;
    this.walk(this.root, this.levelsOf(topic), 0, topic.charCodeAt(0) === 0x24, visitor);
  }

  /** Appends to `out` every filter (shared ones as `$share/<group>/<filter>`) that `peer` has. */
  filtersOf(peer: number, out: string[]): void {
    this.collectFilters(this.root, "", peer, out);
  }

  private collectFilters(node: FilterNode, filter: string, peer: number, out: string[]): void {
    if (node.peers?.includes(peer)) out.push(filter);
    if (node.groups) for (const g of node.groups) if (g.peers.includes(peer)) out.push(g.shareFilter);
    const under = (level: string) => (node === this.root ? level : `${filter}/${level}`);
    if (node.plus) this.collectFilters(node.plus, under("+"), peer, out);
    if (node.hash) this.collectFilters(node.hash, under("#"), peer, out);
    if (node.children) for (const [level, child] of node.children) this.collectFilters(child, under(level), peer, out);
  }

  /** Removes `peer` from every node; returns the number of pairs removed. */
  clearPeer(peer: number): number {
    const before = this.pairs;
    this.clearUnder(this.root, peer);
    return before - this.pairs;
  }

  private clearUnder(node: FilterNode, peer: number): void {
    if (node.peers && removePeer(node.peers, peer)) {
      this.pairs--;
      if (node.peers.length === 0) {
        node.peers = null;
        this.filters--;
      }
    }
    if (node.groups) {
      for (let i = node.groups.length - 1; i >= 0; i--) {
        const g = node.groups[i]!;
        if (!removePeer(g.peers, peer)) continue;
        this.pairs--;
        if (g.peers.length === 0) {
          node.groups.splice(i, 1);
          this.filters--;
        }
      }
      if (node.groups.length === 0) node.groups = null;
    }
    if (node.plus) this.clearChild(node, "+", node.plus, peer);
    if (node.hash) this.clearChild(node, "#", node.hash, peer);
    // deleting the current entry while iterating a Map is safe
    if (node.children) for (const [level, child] of node.children) this.clearChild(node, level, child, peer);
  }

  private clearChild(node: FilterNode, level: string, child: FilterNode, peer: number): void {
    this.clearUnder(child, peer);
    if (!child.isEmpty()) return;
    node.deleteChild(level);
    this.nodes--;
  }

  /** Topic levels, cached as TopicTrie does: most traffic repeats a bounded set of topics. */
  private levels = new Map<string, string[]>();

  private levelsOf(topic: string): string[] {
    let levels = this.levels.get(topic);
    if (!levels) {
      if (this.levels.size >= LEVEL_CACHE) this.levels = new Map(); // bounded: start over
      levels = topic.split("/");
      this.levels.set(topic, levels);
    }
    return levels;
  }

  private walk(node: FilterNode, levels: string[], i: number, dollar: boolean, visitor: FilterVisitor): void {
    const wildcardsAllowed = !(dollar && i === 0);
    if (node.hash && wildcardsAllowed) visitor.visit(node.hash);
    if (i === levels.length) {
      visitor.visit(node);
      return;
    }
    if (node.plus && wildcardsAllowed) this.walk(node.plus, levels, i + 1, dollar, visitor);
    const exact = node.children?.get(levels[i]!);
    if (exact) this.walk(exact, levels, i + 1, dollar, visitor);
  }

  private nodeFor(filter: string): FilterNode {
    let node = this.root;
    for (const level of filter.split("/")) {
      let next = node.child(level);
      if (!next) {
        next = new FilterNode();
        node.setChild(level, next);
        this.nodes++;
      }
      node = next;
    }
    return node;
  }

  private pathTo(filter: string): FilterNode[] | null {
    const path = [this.root];
    let node = this.root;
    for (const level of filter.split("/")) {
      const next = node.child(level);
      if (!next) return null;
      path.push(next);
      node = next;
    }
    return path;
  }

  /** Drops nodes left empty by a removal so the trie does not grow without bound. */
  private prune(filter: string, path: FilterNode[]): void {
    const levels = filter.split("/");
    for (let i = path.length - 1; i > 0; i--) {
      if (!path[i]!.isEmpty()) return;
      path[i - 1]!.deleteChild(levels[i - 1]!);
      this.nodes--;
    }
  }
}
