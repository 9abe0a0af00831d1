// A topic trie of subscriptions. Matching only: it reports who matches, it never delivers.
// Levels live in Maps, so a level called `__proto__` is just a key.

export interface SharedGroup<T> {
  readonly name: string;
  readonly filter: string;
  readonly members: Map<string, T>;
  /** round-robin cursor, owned by the router */
  cursor: number;
}

class TrieNode<T> {
  readonly children = new Map<string, TrieNode<T>>();
  subs: Map<string, T> | null = null;
  groups: Map<string, SharedGroup<T>> | null = null;

  isEmpty(): boolean {
    return this.children.size === 0 && !this.subs?.size && !this.groups?.size;
  }
}

export class TopicTrie<T> {
  private readonly root = new TrieNode<T>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(filter: string, key: string, value: T): void {
    const node = this.nodeFor(filter, true)!;
    node.subs ??= new Map();
    if (!node.subs.has(key)) this.count++;
    node.subs.set(key, value);
  }

  remove(filter: string, key: string): boolean {
    const path = this.pathTo(filter);
    if (!path) return false;
    const node = path[path.length - 1]!;
    const removed = node.subs?.delete(key) ?? false;
    if (removed) {
      this.count--;
      this.prune(filter, path);
    }
    return removed;
  }

  addShared(group: string, filter: string, key: string, value: T): void {
    const node = this.nodeFor(filter, true)!;
    node.groups ??= new Map();
    let g = node.groups.get(group);
    if (!g) {
      g = { name: group, filter, members: new Map(), cursor: 0 };
      node.groups.set(group, g);
    }
    if (!g.members.has(key)) this.count++;
    g.members.set(key, value);
  }

  /** The shared group `group` of `filter`, while it has members. */
  sharedGroup(group: string, filter: string): SharedGroup<T> | null {
    return this.nodeFor(filter, false)?.groups?.get(group) ?? null;
  }

  removeShared(group: string, filter: string, key: string): boolean {
    const path = this.pathTo(filter);
    if (!path) return false;
    const node = path[path.length - 1]!;
    const g = node.groups?.get(group);
    if (!g || !g.members.delete(key)) return false;
    this.count--;
    if (g.members.size === 0) node.groups!.delete(group);
    this.prune(filter, path);
    return true;
  }

  /**
   * Calls `onSub` for every ordinary subscription and `onGroup` for every shared group whose
   * filter matches `topic`. A subscriber with several matching filters is reported once per filter.
   */
  match(topic: string, onSub: (value: T) => void, onGroup: (group: SharedGroup<T>) => void): void {
    const levels = this.levelsOf(topic);
    // [MQTT-4.7.2-1] `$` topics are not matched by a filter that starts with a wildcard
    const dollar = topic.charCodeAt(0) === 0x24;
    this.walk(this.root, levels, 0, dollar, onSub, onGroup);
  }

  /** Topic levels, cached: most traffic repeats a bounded set of topics, so no split per message. */
  private levels = new Map<string, string[]>();

  private levelsOf(topic: string): string[] {
    let levels = this.levels.get(topic);
    if (!levels) {
      if (this.levels.size >= 4096) this.levels = new Map(); // bounded: start over
      levels = topic.split("/");
      this.levels.set(topic, levels);
    }
    return levels;
  }

  private walk(
    node: TrieNode<T>,
    levels: string[],
    i: number,
    dollar: boolean,
    onSub: (value: T) => void,
    onGroup: (group: SharedGroup<T>) => void,
  ): void {
    const wildcardsAllowed = !(dollar && i === 0);
    if (wildcardsAllowed) {
      const hash = node.children.get("#");
      if (hash) visit(hash, onSub, onGroup);
    }
    if (i === levels.length) {
      visit(node, onSub, onGroup);
      return;
    }
    if (wildcardsAllowed) {
      const plus = node.children.get("+");
      if (plus) this.walk(plus, levels, i + 1, dollar, onSub, onGroup);
    }
    const exact = node.children.get(levels[i]!);
    if (exact) this.walk(exact, levels, i + 1, dollar, onSub, onGroup);
  }

  private nodeFor(filter: string, create: boolean): TrieNode<T> | null {
    let node = this.root;
    for (const level of filter.split("/")) {
      let next = node.children.get(level);
      if (!next) {
        if (!create) return null;
        next = new TrieNode<T>();
        node.children.set(level, next);
      }
      node = next;
    }
    return node;
  }

  private pathTo(filter: string): TrieNode<T>[] | null {
    const path = [this.root];
    let node = this.root;
    for (const level of filter.split("/")) {
      const next = node.children.get(level);
      if (!next) return null;
      path.push(next);
      node = next;
    }
    return path;
  }

  /** Drops nodes left empty by a removal so the trie does not grow without bound. */
  private prune(filter: string, path: TrieNode<T>[]): void {
    const levels = filter.split("/");
    for (let i = path.length - 1; i > 0; i--) {
      if (!path[i]!.isEmpty()) return;
      path[i - 1]!.children.delete(levels[i - 1]!);
    }
  }
}

function visit<T>(node: TrieNode<T>, onSub: (v: T) => void, onGroup: (g: SharedGroup<T>) => void): void {
  // forEach rather than for…of: no iterator object per visited node (the callbacks ignore the key)
  if (node.subs) node.subs.forEach(onSub);
  if (node.groups) node.groups.forEach(onGroup);
}
