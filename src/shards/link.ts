// The links of one shard with the other shards of its namespace (docs/scale-out.md §3.2–3.3): per
// ordered pair, a FIFO of numbered chunks stored in shard_outbox before the caller acknowledges
// anything, at most one call outstanding, and a receiver that applies each chunk once (its
// watermark commits with what the chunk did). At-least-once transport + idempotent apply = exactly once.
// QoS 0 entries ride along in memory ("volatile" runs), each applied right after the chunk it followed.
import type { LinkAck, LinkBatch } from "./peer";
import type { Store } from "../storage/store";
import { concatEntries } from "./wire";
import { retryDelay } from "../rules/retry";

/** What the links need of the Durable Object that holds them. */
export interface LinkHost {
  /** this shard's index */
  readonly self: number;
  /** shards in the namespace */
  readonly k: number;
  now(): number;
  /** the peer's `shardLink(batch)` (a DO RPC in production); rejects when the call failed */
  call(target: number, batch: LinkBatch): Promise<LinkAck>;
  /** resolves once every write made so far is durable (ctx.storage.sync()) */
  sync(): Promise<void>;
  /** an alarm at `ms` (retries after a failure); the holder calls `due(now)` when it fires */
  wakeAt(ms: number): void;
  /** runs `fn` in a later event, at least `ms` from now when given */
  later(fn: () => void, ms?: number): void;
  log(level: "info" | "warn" | "error", message: string): void;
  /** a call to `target` failed: what it carried of volatile entries is lost (tunnels over it break) */
  onFailure?(target: number): void;
}

export interface LinkStats {
  /** calls made (each carries every pending chunk, up to the caps) */
  calls: number;
  /** chunks carried by calls, resends included */
  chunksSent: number;
  /** entries given to send (durable and volatile) */
  entries: number;
  /** volatile runs carried by calls */
  volatileSent: number;
  /** calls that failed (rejected, or answered with less than they carried) */
  failures: number;
  /** volatile entries dropped: their call failed, or the link's volatile buffer was full */
  volatileLost: number;
  /** receiver: chunks applied, chunks skipped as already applied, batches refused for a gap */
  chunksApplied: number;
  duplicates: number;
  gapsRefused: number;
}

/** Most chunks one call carries. */
export const MAX_CALL_CHUNKS = 1000;
/** Most chunk bytes one call carries (the first chunk goes whatever its size). */
export const MAX_CALL_BYTES = 1024 * 1024;
/** Most bytes of volatile entries a link keeps while it cannot send (QoS 0: the rest is dropped). */
export const MAX_VOLATILE_BYTES = 1024 * 1024;
/**
 * A call unanswered this long counts as failed (its chunks go again; the watermark makes a late
 * copy harmless), and a link with chunks pending keeps an alarm this far ahead: a shard that
 * crashed with chunks in its outbox wakes to send them even if nothing else wakes it.
 */
export const CALL_TIMEOUT_MS = 30_000;
/** Retry after a failure: 100 ms doubling to 30 s (src/rules/retry.ts takes seconds). */
const RETRY = { RULES_RETRY_BASE: 0.1, RULES_RETRY_MAX: 30 };

interface Run {
  /** the last chunk seq assigned on the link before these entries were sent (0: none) */
  after: number;
  parts: Uint8Array[];
  bytes: number;
}

/** This shard's side of the link to one target. */
class Outgoing {
  /** the highest seq assigned (never reused: restored as max(acked, stored)) */
  lastSeq = 0;
  /** the highest seq the target acknowledged */
  acked = 0;
  /** chunks not yet acknowledged, ascending */
  chunks: { seq: number; entries: Uint8Array }[] = [];
  runs: Run[] = [];
  volatileBytes = 0;
  inFlight = false;
  scheduled = false;
  /** failed calls in a row */
  failures = 0;
  /** while backing off after a failure: when to call again */
  retryAt: number | null = null;
  /** when the oldest chunk still pending started waiting (its safety alarm counts from here) */
  pendingSince = 0;
  /** when the last call started (ms; the link interval counts from here) */
  lastCallAt = -Infinity;
  waiters: { seq: number; resolve: () => void }[] = [];
  /** durable entries sent while a batch is open (Links.batchBegin), stored as one chunk at its end */
  held: Uint8Array[] = [];
  constructor(readonly target: number) {}
}

/** Caps of a link (the defaults above; tests make them small). */
export interface LinkLimits {
  maxCallChunks: number;
  maxCallBytes: number;
  maxVolatileBytes: number;
  /**
   * ms between the starts of two calls on one link (0: none). With K − 1 peers each sending,
   * a receiver gets at most (K − 1) / interval calls a second, whatever the traffic: the bound
   * that keeps the mesh within an object's events. The first call after a quiet spell leaves at once.
   */
  minInterval: number;
}

export class Links {
  private readonly out = new Map<number, Outgoing>();
  /** receiver side: per peer, the highest chunk applied here */
  private readonly applied = new Map<number, number>();
  private restored = false;
  readonly stats: LinkStats = { calls: 0, chunksSent: 0, entries: 0, volatileSent: 0, failures: 0, volatileLost: 0, chunksApplied: 0, duplicates: 0, gapsRefused: 0 };

  private readonly limits: LinkLimits;
  /** open batches (batchBegin without its batchEnd), and the links holding entries for them */
  private batching = 0;
  private readonly holding: Outgoing[] = [];

  constructor(
    private readonly host: LinkHost,
    private readonly store: Store,
    limits: Partial<LinkLimits> = {},
  ) {
    this.limits = { maxCallChunks: MAX_CALL_CHUNKS, maxCallBytes: MAX_CALL_BYTES, maxVolatileBytes: MAX_VOLATILE_BYTES, minInterval: 0, ...limits };
  }

  /**
   * Loads the stored chunks and watermarks (once, when the object starts; the first send or
   * receive does it otherwise) and schedules sending whatever is pending: a retry time still to
   * come is kept (wakeAt) rather than retried at once.
   */
  restore(): void {
    if (this.restored) return;
    this.restored = true;
    // What is owed a shard numbered K or more (SHARDS lowered before a growth moved anything) stays
    // stored, dormant: sent if K is raised again (its retained copies carry versions), never waited for now.
    for (const l of this.store.loadLinks()) {
      if (l.peer >= this.host.k) continue;
      if (l.appliedSeq > 0) this.applied.set(l.peer, l.appliedSeq);
      const o = this.link(l.peer);
      o.acked = l.ackedSeq;
      o.lastSeq = Math.max(o.lastSeq, l.ackedSeq);
    }
    for (const c of this.store.loadChunks()) {
      if (c.target >= this.host.k) continue;
      const o = this.link(c.target);
      o.lastSeq = Math.max(o.lastSeq, c.seq);
      if (c.seq <= o.acked) continue; // acknowledged; its delete did not commit
      if (o.chunks.length === 0 && c.attempts > 0) {
        o.failures = c.attempts;
        if (c.nextAt > this.host.now()) o.retryAt = c.nextAt;
      }
      o.chunks.push({ seq: c.seq, entries: c.entries });
      o.pendingSince = this.host.now();
    }
    for (const o of this.out.values()) {
      if (o.chunks.length === 0) continue;
      if (o.retryAt !== null) this.host.wakeAt(o.retryAt);
      else this.schedule(o);
    }
  }

  /**
   * Sends packed entries (src/shards/wire.ts) to shard `target`, after everything sent to it before.
   * Durable: stored now as the next chunk (in the caller's event, so an acknowledgement the caller
   * sends in the same event leaves only once the chunk is stored), returns its seq. Volatile: kept in
   * memory and applied right after the last durable chunk sent before it; may be lost; returns 0.
   */
  send(target: number, entries: Uint8Array, durable: boolean): number {
    if (!Number.isInteger(target) || target < 0 || target >= this.host.k || target === this.host.self) throw new RangeError(`link: no shard ${target} to send to`);
    if (!this.restored) this.restore(); // never number a chunk before knowing the stored ones
    const o = this.link(target);
    this.stats.entries++;
    let seq = 0;
    if (durable) {
      if (this.batching > 0) {
        // one chunk (one row) for everything the batch sends this target, stored at its end
        if (o.held.length === 0) this.holding.push(o);
        o.held.push(entries);
        return 0;
      }
      seq = this.store1(o, entries);
    } else {
      if (o.held.length > 0) this.storeHeld(o); // a volatile entry follows the durable ones sent before it
      // the first entry goes whatever its size (a tunnel frame of a packet near MAX_PACKET_SIZE
      // would else never pass, and its client would reconnect for it for ever)
      if (o.volatileBytes > 0 && o.volatileBytes + entries.byteLength > this.limits.maxVolatileBytes) {
        this.stats.volatileLost++;
        return 0;
      }
      const last = o.runs[o.runs.length - 1];
      if (last && last.after === o.lastSeq) {
        last.parts.push(entries);
        last.bytes += entries.byteLength;
      } else o.runs.push({ after: o.lastSeq, parts: [entries], bytes: entries.byteLength });
      o.volatileBytes += entries.byteLength;
    }
    this.schedule(o);
    return seq;
  }

  /**
   * Opens a batch: until the matching batchEnd (in the same event), durable entries to a target
   * are gathered and stored as one chunk (a few when they exceed a call's bytes), not one row
   * each. Order is kept: a volatile entry or a wait for acknowledgements stores what was gathered
   * first. Batches nest.
   */
  batchBegin(): void {
    this.batching++;
  }

  batchEnd(): void {
    if (--this.batching > 0) return;
    this.batching = 0;
    while (this.holding.length > 0) this.storeHeld(this.holding.pop()!);
  }

  /** Stores `entries` as the link's next chunk; returns its seq. */
  private store1(o: Outgoing, entries: Uint8Array): number {
    const seq = ++o.lastSeq;
    const now = this.host.now();
    this.store.addChunk(o.target, seq, entries, now);
    o.chunks.push({ seq, entries });
    if (o.chunks.length === 1) {
      o.pendingSince = now;
      this.host.wakeAt(now + CALL_TIMEOUT_MS);
    }
    return seq;
  }

  /** The entries a batch gathered for one link, as few chunks as a call's bytes allow. */
  private storeHeld(o: Outgoing): void {
    const parts = o.held;
    if (parts.length === 0) return;
    o.held = [];
    let from = 0;
    let bytes = 0;
    for (let i = 0; i < parts.length; i++) {
      const size = parts[i]!.byteLength;
      if (i > from && bytes + size > this.limits.maxCallBytes) {
        this.store1(o, concatEntries(parts.slice(from, i)));
        from = i;
        bytes = 0;
      }
      bytes += size;
    }
    this.store1(o, parts.length - from === 1 ? parts[from]! : concatEntries(parts.slice(from)));
    this.schedule(o);
  }

  /**
   * Applies a batch from a peer, synchronously in the caller's event: chunks already applied are
   * skipped, a gap refuses the whole batch, volatile runs go right after the chunk they follow, and
   * the watermark is stored once if it moved. `apply` gets each chunk's or run's packed entries.
   * An exception from `apply` on a chunk keeps the chunks before it and is rethrown (the call fails).
   */
  receive(batch: LinkBatch, apply: (from: number, entries: Uint8Array) => void): LinkAck {
    const from = batch.from;
    if (!Number.isInteger(from) || from < 0 || from >= this.host.k || from === this.host.self) throw new RangeError(`link: no shard ${from} to receive from`);
    if (!this.restored) this.restore();
    const start = this.applied.get(from) ?? 0;
    const chunks = batch.chunks;
    let i = 0;
    while (i < chunks.length && chunks[i]!.seq <= start) i++;
    this.stats.duplicates += i;
    for (let j = i; j < chunks.length; j++) {
      if (chunks[j]!.seq !== start + 1 + (j - i)) {
        this.stats.gapsRefused++;
        this.host.log("error", `link ${from}→${this.host.self}: chunk ${chunks[j]!.seq} where ${start + 1 + (j - i)} was due; batch refused`);
        return { applied: start };
      }
    }
    const runs = batch.volatile ?? [];
    let r = 0;
    let w = start;
    try {
      for (let j = i; j < chunks.length; j++) {
        const c = chunks[j]!;
        for (; r < runs.length && runs[r]!.after < c.seq; r++) this.applyVolatile(from, runs[r]!, w, apply);
        apply(from, c.entries);
        w = c.seq;
        this.stats.chunksApplied++;
      }
      for (; r < runs.length; r++) this.applyVolatile(from, runs[r]!, w, apply);
    } finally {
      if (w > start) {
        this.applied.set(from, w);
        this.store.saveApplied(from, w);
      }
    }
    return { applied: w };
  }

  private applyVolatile(from: number, run: { after: number; entries: Uint8Array }, watermark: number, apply: (from: number, entries: Uint8Array) => void): void {
    if (run.after > watermark) {
      // its chunk is not applied: it would overtake it (cannot happen with a well-behaved sender)
      this.host.log("error", `link ${from}→${this.host.self}: volatile entries after chunk ${run.after} dropped at watermark ${watermark}`);
      return;
    }
    try {
      apply(from, run.entries);
    } catch (err) {
      this.host.log("error", `link ${from}→${this.host.self}: volatile entries failed: ${String(err)}`);
    }
  }

  /** The alarm: calls again the links whose retry time came, and any with chunks left waiting. */
  due(now: number): void {
    for (const o of this.out.values()) {
      if (o.retryAt !== null) {
        if (o.retryAt > now) continue;
        o.retryAt = null;
      } else if (o.chunks.length === 0 || o.pendingSince + CALL_TIMEOUT_MS > now) continue;
      void this.flush(o);
    }
  }

  /** The earliest retry time of a link backing off, or safety alarm of one with chunks pending; null when none. */
  nextWake(): number | null {
    let at: number | null = null;
    for (const o of this.out.values()) {
      const t = o.retryAt ?? (o.chunks.length > 0 ? o.pendingSince + CALL_TIMEOUT_MS : null);
      if (t !== null && (at === null || t < at)) at = t;
    }
    return at;
  }

  /** Chunks sent to `target` and not yet acknowledged. */
  pending(target: number): number {
    return this.out.get(target)?.chunks.length ?? 0;
  }

  /** Resolves once `target` acknowledged chunk `seq` (at once if it did). Not kept across a restart. */
  whenAcked(target: number, seq: number): Promise<void> {
    const o = this.out.get(target);
    if (!o || seq <= o.acked) return Promise.resolve();
    return new Promise((resolve) => o.waiters.push({ seq, resolve }));
  }

  /** Resolves once every target acknowledged every chunk sent to it before this call. */
  flushedAll(): Promise<void> {
    for (const o of this.holding.splice(0)) this.storeHeld(o); // what a batch gathered so far is waited for too
    const waits: Promise<void>[] = [];
    for (const o of this.out.values()) if (o.lastSeq > o.acked) waits.push(this.whenAcked(o.target, o.lastSeq));
    return waits.length === 0 ? Promise.resolve() : Promise.all(waits).then(() => undefined);
  }

  /** Chunks ever numbered, over all targets (it only grows: two equal readings mean nothing was sent between). */
  sentTotal(): number {
    let n = 0;
    for (const o of this.out.values()) n += o.lastSeq;
    return n;
  }

  /** Chunks not yet acknowledged, over all targets. */
  pendingAll(): number {
    let n = 0;
    for (const o of this.out.values()) n += o.chunks.length;
    return n;
  }

  /**
   * Chunks not yet acknowledged, volatile runs not yet sent and calls under way, over all targets:
   * 0 only once everything given to send was applied (a QoS 0 copy included).
   */
  unsettled(): number {
    let n = 0;
    for (const o of this.out.values()) n += o.chunks.length + o.runs.length + (o.inFlight ? 1 : 0);
    return n;
  }

  private link(target: number): Outgoing {
    let o = this.out.get(target);
    if (!o) this.out.set(target, (o = new Outgoing(target)));
    return o;
  }

  private schedule(o: Outgoing): void {
    if (o.scheduled || o.inFlight || o.retryAt !== null) return;
    o.scheduled = true;
    const wait = o.lastCallAt + this.limits.minInterval - this.host.now();
    this.host.later(() => {
      o.scheduled = false;
      void this.flush(o);
    }, wait > 0 ? wait : undefined);
  }

  /** One call with every pending chunk (up to the caps) and the volatile runs that may follow them. */
  private async flush(o: Outgoing): Promise<void> {
    if (o.inFlight || o.retryAt !== null || (o.chunks.length === 0 && o.runs.length === 0)) return;
    o.inFlight = true;
    o.lastCallAt = this.host.now();
    // what goes is taken before the sync: only writes made before it are sure to be durable after it
    let n = 0;
    let bytes = 0;
    const { maxCallChunks, maxCallBytes } = this.limits;
    while (n < o.chunks.length && n < maxCallChunks && (n === 0 || bytes + o.chunks[n]!.entries.byteLength <= maxCallBytes)) bytes += o.chunks[n++]!.entries.byteLength;
    const chunks = o.chunks.slice(0, n);
    // a run may go only with (or after) every chunk it follows
    const limit = n < o.chunks.length ? o.chunks[n - 1]!.seq : Infinity;
    let r = 0;
    while (r < o.runs.length && o.runs[r]!.after <= limit) r++;
    const runs = o.runs.splice(0, r);
    let volatileCount = 0;
    for (const run of runs) {
      o.volatileBytes -= run.bytes;
      volatileCount += run.parts.length;
    }
    const batch: LinkBatch = { from: this.host.self, chunks, volatile: runs.map((run) => ({ after: run.after, entries: concatEntries(run.parts) })) };
    const sentUpTo = n > 0 ? chunks[n - 1]!.seq : 0;
    let ack: LinkAck | null = null;
    let error: unknown = null;
    try {
      await this.host.sync();
      this.stats.calls++;
      this.stats.chunksSent += n;
      this.stats.volatileSent += runs.length;
      ack = await withTimeout(this.host.call(o.target, batch), CALL_TIMEOUT_MS);
    } catch (err) {
      error = err;
    }
    o.inFlight = false;
    const applied = ack !== null && Number.isSafeInteger(ack.applied) && ack.applied >= 0 ? ack.applied : null;
    if (applied !== null) this.acknowledged(o, applied);
    if (applied === null || applied < sentUpTo) {
      const why = applied === null ? String(error ?? "bad answer") : `applied ${applied} of ${sentUpTo}`;
      this.failed(o, volatileCount, why);
    } else {
      o.failures = 0;
      if (o.chunks.length > 0 || o.runs.length > 0) this.schedule(o);
    }
  }

  private acknowledged(o: Outgoing, applied: number): void {
    if (applied > o.lastSeq) {
      // the peer has seen seqs of ours we never made: our outbox was lost; never reuse them
      this.host.log("error", `link ${this.host.self}→${o.target}: peer acknowledged ${applied}, beyond our last chunk ${o.lastSeq}`);
      o.lastSeq = applied;
    }
    let n = 0;
    while (n < o.chunks.length && o.chunks[n]!.seq <= applied) n++;
    if (n > 0) {
      o.chunks.splice(0, n);
      o.pendingSince = this.host.now();
      this.store.deleteChunksUpTo(o.target, applied);
    }
    if (applied <= o.acked) return;
    o.acked = applied;
    this.store.saveAcked(o.target, applied);
    if (o.waiters.length > 0) {
      const still: Outgoing["waiters"] = [];
      for (const w of o.waiters) {
        if (w.seq <= applied) w.resolve();
        else still.push(w);
      }
      o.waiters = still;
    }
  }

  /** A call that did not get everything through: its volatile entries are lost, the chunks wait. */
  private failed(o: Outgoing, volatileCount: number, why: string): void {
    this.stats.failures++;
    this.stats.volatileLost += volatileCount;
    o.failures++;
    const at = this.host.now() + retryDelay(o.failures, RETRY);
    o.retryAt = at;
    if (o.chunks.length > 0) this.store.updateChunkRetry(o.target, o.chunks[0]!.seq, o.failures, at);
    this.host.wakeAt(at);
    this.host.log("warn", `link ${this.host.self}→${o.target}: call failed (${why}); retry #${o.failures} in ${at - this.host.now()} ms`);
    this.host.onFailure?.(o.target);
  }
}

/** `p`, or a rejection after `ms` (the timer goes with the answer) */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
