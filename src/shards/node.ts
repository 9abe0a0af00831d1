// One shard's part in a namespace spread over K objects (docs/scale-out.md): the copies of a
// message other shards owe their subscribers, the interest it announces, and what it applies from
// the others. Only made when K > 1: at K = 1 the broker never reaches this file.
import type { Message } from "../session/message";
import type { Store } from "../storage/store";
import { Interest } from "./interest";
import { Links, type LinkHost } from "./link";
import type { LinkAck, LinkBatch } from "./peer";
import { decodeEntries, encodeEntry, type Entry } from "./wire";

/** What the shard needs of the broker it is part of. */
export interface ShardHost {
  /**
   * Delivers a message another shard accepted to this shard's matching sessions (never to a
   * shared group: those get `share` copies), or, with `share`, to one member of that group.
   */
  deliverForwarded(msg: Message, share: string | null): void;
  /** whether this shard holds a member of the shared group `share` (it then gets the group's copy) */
  hasSharedMember(share: string): boolean;
  /** a retained message (or its removal: empty payload) another shard accepted, with its version */
  retainedForwarded(msg: Message, version: number): void;
}

/** A shard's traffic with the other shards of its namespace (src/shards/node.ts). */
export interface ShardStats {
  index: number;
  k: number;
  /** copies of messages from other shards applied here */
  forwardedIn: number;
  /** messages accepted here that other shards' subscribers needed, and the copies sent */
  forwardedMessages: number;
  forwardedCopies: number;
  /** link calls made to other shards, failed ones among them, and chunks not yet acknowledged */
  linkCalls: number;
  linkFailures: number;
  pendingChunks: number;
}

/** Counters of the shard's traffic with the others (stats, bench). */
export interface ShardCounters {
  /** messages this shard sent copies of to other shards, and the copies */
  forwardedMessages: number;
  forwardedCopies: number;
  /** entries applied from other shards */
  appliedEntries: number;
}

export class ShardNode {
  readonly interest: Interest;
  readonly links: Links;
  readonly counters: ShardCounters = { forwardedMessages: 0, forwardedCopies: 0, appliedEntries: 0 };
  /** last retained version this shard gave (ms × 256 + shard index: unique, rising) */
  private lastVersion = 0;
  /** the shared-group copy goes to the group's shards in turn */
  private groupTurn = 0;
  /** an interest entry sent whose acknowledgement is not known yet (SUBACK waits for it) */
  private interestUnacked = false;

  constructor(
    readonly self: number,
    readonly k: number,
    private readonly store: Store,
    linkHost: LinkHost,
    private readonly host: ShardHost,
  ) {
    this.interest = new Interest(self, k);
    this.links = new Links(linkHost, store);
  }

  /** The object started or woke: the peers' interest and the links come back from storage. */
  restore(): void {
    this.interest.load(this.store.loadInterest());
    this.links.restore();
  }

  /**
   * The version a retained message accepted here now gets: the newest write of a topic wins on
   * every shard, whichever order the copies arrive in.
   */
  retainedVersion(now: number): number {
    const v = Math.max(now * 256 + this.self, this.lastVersion + 256);
    this.lastVersion = v;
    return v;
  }

  /**
   * After a message was routed here: one copy to each other shard with a matching subscriber
   * (every shard for a retained message, which each keeps), and one per shared group without a
   * member here to a shard with one. QoS ≥ 1 and retained copies are stored before this returns,
   * so the publisher's PUBACK/PUBREC sent after it leaves only once they are durable. Returns the
   * shards that got a copy.
   */
  forward(msg: Message, version: number): number {
    const durable = msg.qos > 0 || msg.retain;
    let plain: Uint8Array | null = null;
    let copies = 0;
    if (msg.retain) {
      plain = this.encode(msg, null, version);
      for (let p = 0; p < this.k; p++) {
        if (p === this.self) continue;
        this.links.send(p, plain, true);
        copies++;
      }
    } else {
      const interest = this.interest;
      if (!interest.hasAny()) return 0;
      const n = interest.targets(msg.topic);
      const shards = interest.shards;
      for (let i = 0; i < n; i++) {
        plain ??= this.encode(msg, null, 0);
        this.links.send(shards[i]!, plain, durable);
        copies++;
      }
    }
    this.interest.groups(msg.topic, (share, shards) => {
      if (shards.length === 0 || this.host.hasSharedMember(share)) return; // a member here got it
      const target = shards[this.groupTurn++ % shards.length]!;
      this.links.send(target, this.encode(msg, share, 0), durable);
      copies++;
    });
    if (copies > 0) {
      this.counters.forwardedMessages++;
      this.counters.forwardedCopies += copies;
    }
    return copies;
  }

  /** A local subscription on `filter` was made (add) or ended: the peers hear when the first comes or the last goes. */
  localInterest(filter: string, add: boolean): void {
    const changed = add ? this.interest.localAdded(filter) : this.interest.localRemoved(filter);
    if (!changed) return;
    const entry = encodeEntry({ kind: "interest", add, filter });
    for (let p = 0; p < this.k; p++) if (p !== this.self) this.links.send(p, entry, true);
    this.interestUnacked = true;
  }

  /**
   * Resolves once every peer applied the interest this shard announced so far (null: nothing
   * unacknowledged): a SUBACK waits for it, so a publish on another shard after the SUBACK is
   * routed here.
   */
  interestSettled(): Promise<void> | null {
    if (!this.interestUnacked) return null;
    const settled = this.links.flushedAll();
    void settled.then(() => {
      this.interestUnacked = false;
    });
    return settled;
  }

  /** A call on the link from another shard, applied in this one event (docs/scale-out.md §3.3). */
  receive(batch: LinkBatch): LinkAck {
    return this.links.receive(batch, (from, entries) => decodeEntries(entries, (e) => this.apply(from, e)));
  }

  private apply(from: number, e: Entry): void {
    this.counters.appliedEntries++;
    if (e.kind === "interest") {
      if (this.interest.apply(from, e.add, e.filter)) {
        if (e.add) this.store.addInterest(from, e.filter);
        else this.store.removeInterest(from, e.filter);
      }
      return;
    }
    const msg: Message = {
      topic: e.topic,
      payload: e.payload,
      qos: e.qos,
      retain: e.retain,
      origin: e.origin ?? undefined,
      properties: e.properties,
      expiresAt: e.expiresAt,
      storedId: undefined,
      encoded: undefined,
      encodedSlot: undefined,
      encodings: undefined,
    };
    if (e.retain && e.share === null) this.host.retainedForwarded(msg, e.version);
    this.host.deliverForwarded(msg, e.share);
  }

  /** for the stats (forwardedIn is the broker's count) */
  figures(): ShardStats {
    const l = this.links.stats;
    return {
      index: this.self,
      k: this.k,
      forwardedIn: 0,
      forwardedMessages: this.counters.forwardedMessages,
      forwardedCopies: this.counters.forwardedCopies,
      linkCalls: l.calls,
      linkFailures: l.failures,
      pendingChunks: this.links.pendingAll(),
    };
  }

  private encode(msg: Message, share: string | null, version: number): Uint8Array {
    return encodeEntry({
      kind: "publish",
      topic: msg.topic,
      payload: msg.payload,
      qos: msg.qos,
      retain: msg.retain,
      properties: msg.properties,
      expiresAt: msg.expiresAt,
      origin: msg.origin ?? null,
      share,
      version,
    });
  }
}
