// 32-bit fingerprints of exact filters (docs/scale-out.md §5.1, §5.2): a shard announces an exact
// filter as its fingerprint, and a receiver keeps (fingerprint, shard) pairs in typed arrays, not
// strings: ≈ 10 bytes per remote filter instead of ≈ 77. A topic is hashed the same way and looked
// up once; two strings sharing a fingerprint only cost a useless copy (the receiver's router matches
// exactly), never a lost one. Pure; no allocation per lookup.

/**
 * MurmurHash3 (x86, 32 bits) over the string's UTF-16 code units, two per block: the same string
 * gives the same value on every shard, with no encoding step (filters and topics are JS strings).
 */
export function fingerprint(s: string): number {
  let h = 0x5bd1e995;
  const n = s.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    let k = s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < n) {
    let k = Math.imul(s.charCodeAt(i), 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
  }
  h ^= n * 2; // the length in bytes, as the reference does
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A filter without + or # that is not `$share/…`: announced as a fingerprint. */
export function isExactFilter(filter: string): boolean {
  if (filter.charCodeAt(0) === 0x24 /* $ */ && filter.startsWith("$share/")) return false;
  for (let i = 0; i < filter.length; i++) {
    const c = filter.charCodeAt(i);
    if (c === 0x2b /* + */ || c === 0x23 /* # */) return false;
  }
  return true;
}

const MIN_BITS = 4;
/** grow above this load; linear probing stays short (≈ 6 slots for a miss at the worst) */
const MAX_LOAD = 0.7;

/**
 * Open addressing with linear probing over a Uint32Array of fingerprints and a parallel array of
 * values where 0 marks an empty slot. Deletion shifts the following entries back (no tombstones),
 * so every entry of a fingerprint lies in one run after its home slot.
 */
abstract class Slots<V extends Uint8Array | Uint16Array | Uint32Array> {
  protected keys: Uint32Array;
  protected vals: V;
  protected mask: number;
  private shift: number;
  /** occupied slots */
  protected used = 0;

  constructor(private readonly makeVals: (n: number) => V) {
    this.keys = new Uint32Array(1 << MIN_BITS);
    this.vals = makeVals(1 << MIN_BITS);
    this.mask = (1 << MIN_BITS) - 1;
    this.shift = 32 - MIN_BITS;
  }

  /** bytes held by the arrays */
  get bytes(): number {
    return this.keys.byteLength + this.vals.byteLength;
  }

  /** Fibonacci hashing: the fingerprint's bits spread over the high bits, which index the table */
  protected home(fp: number): number {
    return Math.imul(fp, 0x9e3779b1) >>> this.shift;
  }

  /** room for one more entry */
  protected reserve(): void {
    if (this.used + 1 > (this.mask + 1) * MAX_LOAD) this.resize(this.used + 1);
  }

  /** after a removal: give memory back when the table is mostly empty */
  protected relax(): void {
    if (this.mask + 1 > 1 << MIN_BITS && this.used < (this.mask + 1) * MAX_LOAD * 0.25) this.resize(this.used);
  }

  /** Rehashes into the smallest table holding `count` entries under the load limit. */
  protected resize(count: number): void {
    const keys = this.keys;
    const vals = this.vals;
    this.alloc(count);
    for (let i = 0; i < keys.length; i++) if (vals[i] !== 0) this.place(keys[i]!, vals[i]!);
  }

  /** Empty arrays sized for `count` entries (the caller places them). */
  protected alloc(count: number): void {
    let bits = MIN_BITS;
    while ((1 << bits) * MAX_LOAD < count) bits++;
    this.keys = new Uint32Array(1 << bits);
    this.vals = this.makeVals(1 << bits);
    this.mask = (1 << bits) - 1;
    this.shift = 32 - bits;
  }

  protected place(fp: number, val: number): void {
    let i = this.home(fp);
    while (this.vals[i] !== 0) i = (i + 1) & this.mask;
    this.keys[i] = fp;
    this.vals[i] = val;
  }

  /** Empties slot `at`, moving back the entries after it that may not stay behind a hole. */
  protected deleteAt(at: number): void {
    const keys = this.keys;
    const vals = this.vals;
    let hole = at;
    let j = at;
    for (;;) {
      j = (j + 1) & this.mask;
      if (vals[j] === 0) break;
      const h = this.home(keys[j]!);
      // the entry at j stays when its home lies cyclically in (hole, j]
      const stays = hole <= j ? hole < h && h <= j : hole < h || h <= j;
      if (stays) continue;
      keys[hole] = keys[j]!;
      vals[hole] = vals[j]!;
      hole = j;
    }
    vals[hole] = 0;
    this.used--;
  }
}

/** Receives each shard found for a fingerprint (an object made once: no closure per lookup). */
export interface ShardVisitor {
  shard(peer: number): void;
}

/** The peers' exact filters: (fingerprint, shard) pairs, a multimap. One to two bytes of shard per slot. */
export class FingerprintPairs extends Slots<Uint8Array | Uint16Array> {
  /** fingerprints held by at least one shard */
  distinct = 0;

  constructor(k: number) {
    // a slot holds shard + 1 (0: empty)
    super(k < 0xff ? (n) => new Uint8Array(n) : (n) => new Uint16Array(n));
  }

  /** (fingerprint, shard) pairs */
  get size(): number {
    return this.used;
  }

  has(fp: number, shard: number): boolean {
    return this.find(fp, shard + 1) >= 0;
  }

  /** false when the pair was there */
  add(fp: number, shard: number): boolean {
    const tag = shard + 1;
    let i = this.home(fp);
    let seen = false;
    for (; this.vals[i] !== 0; i = (i + 1) & this.mask) {
      if (this.keys[i] !== fp) continue;
      if (this.vals[i] === tag) return false;
      seen = true;
    }
    if (!seen) this.distinct++;
    this.reserve();
    this.place(fp, tag);
    this.used++;
    return true;
  }

  /** false when the pair was not there */
  remove(fp: number, shard: number): boolean {
    const at = this.find(fp, shard + 1);
    if (at < 0) return false;
    this.deleteAt(at);
    if (this.find(fp, -1) < 0) this.distinct--;
    this.relax();
    return true;
  }

  /** Hands `visitor` every shard holding `fp`. */
  match(fp: number, visitor: ShardVisitor): void {
    const keys = this.keys;
    const vals = this.vals;
    for (let i = this.home(fp); vals[i] !== 0; i = (i + 1) & this.mask) if (keys[i] === fp) visitor.shard(vals[i]! - 1);
  }

  /** Drops every pair of `shard`; returns how many. */
  clearShard(shard: number): number {
    const tag = shard + 1;
    const keys = this.keys;
    const vals = this.vals;
    let kept = 0;
    for (let i = 0; i < vals.length; i++) if (vals[i] !== 0 && vals[i] !== tag) kept++;
    const removed = this.used - kept;
    if (removed === 0) return 0;
    // rebuilt rather than deleted in place: rare, and deleting while scanning a shifting table is subtle
    this.alloc(kept);
    for (let i = 0; i < vals.length; i++) if (vals[i] !== 0 && vals[i] !== tag) this.place(keys[i]!, vals[i]!);
    this.used = kept;
    this.distinct = 0;
    // a fingerprint counts once: at the first of its slots in its run
    for (let i = 0; i < this.vals.length; i++) if (this.vals[i] !== 0 && this.find(this.keys[i]!, -1) === i) this.distinct++;
    return removed;
  }

  /** The fingerprints `shard` holds, ascending. */
  of(shard: number): number[] {
    const out: number[] = [];
    const tag = shard + 1;
    for (let i = 0; i < this.vals.length; i++) if (this.vals[i] === tag) out.push(this.keys[i]!);
    return out.sort((a, b) => a - b);
  }

  /** the slot of (fp, tag), or of fp with any shard when tag is -1; -1 when absent */
  private find(fp: number, tag: number): number {
    for (let i = this.home(fp); this.vals[i] !== 0; i = (i + 1) & this.mask) {
      if (this.keys[i] === fp && (tag < 0 || this.vals[i] === tag)) return i;
    }
    return -1;
  }
}

/** This shard's own exact filters: a count per fingerprint (0: empty slot). 8 bytes per slot. */
export class FingerprintCounts extends Slots<Uint32Array> {
  constructor() {
    super((n) => new Uint32Array(n));
  }

  /** distinct fingerprints */
  get size(): number {
    return this.used;
  }

  /** Adds one; returns the new count. */
  increment(fp: number): number {
    const at = this.find(fp);
    if (at >= 0) return ++this.vals[at]!;
    this.reserve();
    this.place(fp, 1);
    this.used++;
    return 1;
  }

  /** Takes one; returns the new count, or -1 when `fp` had none. */
  decrement(fp: number): number {
    const at = this.find(fp);
    if (at < 0) return -1;
    const n = --this.vals[at]!;
    if (n === 0) {
      this.deleteAt(at);
      this.relax();
    }
    return n;
  }

  count(fp: number): number {
    const at = this.find(fp);
    return at < 0 ? 0 : this.vals[at]!;
  }

  /** every fingerprint with a count, ascending */
  keysSorted(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.vals.length; i++) if (this.vals[i] !== 0) out.push(this.keys[i]!);
    return out.sort((a, b) => a - b);
  }

  private find(fp: number): number {
    for (let i = this.home(fp); this.vals[i] !== 0; i = (i + 1) & this.mask) if (this.keys[i] === fp) return i;
    return -1;
  }
}
