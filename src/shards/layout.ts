// Where things live when a namespace spans K Durable Objects (docs/scale-out.md §1). Pure.
// Shard 0 is the object a namespace always had (idFromName(ns)), so K = 1 is exactly today;
// shard i > 0 is idFromName(ns + "#" + i) ("#" is outside the namespace alphabet: no clash).

/** Most shards a namespace may span. */
export const MAX_SHARDS = 128;

export function shardName(namespace: string, index: number): string {
  return index === 0 ? namespace : `${namespace}#${index}`;
}

/** The namespace and shard index an object's name stands for ("ns#3" → ["ns", 3]). */
export function parseShardName(name: string): { namespace: string; index: number } {
  const at = name.lastIndexOf("#");
  if (at < 0) return { namespace: name, index: 0 };
  const index = Number(name.slice(at + 1));
  return Number.isInteger(index) && index > 0 ? { namespace: name.slice(0, at), index } : { namespace: name, index: 0 };
}

const encoder = new TextEncoder();
const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK64 = (1n << 64n) - 1n;

/** 64-bit FNV-1a of a string's UTF-8 bytes. */
export function fnv1a64(key: string): bigint {
  let h = FNV_OFFSET;
  for (const b of encoder.encode(key)) h = ((h ^ BigInt(b)) * FNV_PRIME) & MASK64;
  return h;
}

/**
 * Jump consistent hash (Lamping and Veach, 2014): a bucket in [0, k). Raising k to k' moves only
 * the keys whose new bucket is ≥ k (a fraction 1 − k/k'), never a key between old buckets.
 */
export function jump(key: bigint, k: number): number {
  let b = -1;
  let j = 0;
  let h = key;
  while (j < k) {
    b = j;
    h = (h * 2862933555777941757n + 1n) & MASK64;
    j = Math.floor(((b + 1) * 2 ** 31) / (Number(h >> 33n) + 1));
  }
  return b;
}

/** The shard a key belongs to (a client id: its home; a topic: the shard the API's writes on it go to). */
export function shardOf(key: string, k: number): number {
  return k <= 1 ? 0 : jump(fnv1a64(key), k);
}

/** The shard a client id belongs to: where a hinted connection goes and where its session lives. */
export const home = shardOf;

/** The shard a new WebSocket goes to: the hinted client's home, else any shard (uniformly). */
export function place(hint: string | null, k: number, random: () => number = Math.random): number {
  if (k <= 1) return 0;
  return hint !== null && hint !== "" ? home(hint, k) : Math.min(k - 1, Math.floor(random() * k));
}
