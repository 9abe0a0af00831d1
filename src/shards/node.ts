// One shard's part in a namespace spread over K objects (docs/scale-out.md): the copies of a
// message other shards owe their subscribers, the interest it announces, and what it applies from
// the others. Only made when K > 1: at K = 1 the broker never reaches this file.
import { entryMessage, messageEntry, type Message } from "../session/message";
import type { Store } from "../storage/store";
import { fingerprint, isExactFilter } from "./fingerprint";
import { Interest } from "./interest";
import { Links, type LinkHost, type LinkLimits } from "./link";
import { planStore } from "./grow";
import type { LinkAck, LinkBatch } from "./peer";
import { TunnelOp, decodeEntries, encodeEntry, type Entry, type MoveEntry, type PublishEntry, type TunnelEntry } from "./wire";

const EMPTY = new Uint8Array(0);
/** a Data entry's code for a text frame from the client (its bytes are not MQTT) */
export const TEXT_FRAME = 1;

/**
 * Longest a SUBACK waits for the peers to apply the interest (docs/scale-out.md §1.1): a peer that
 * does not answer must not hold it for ever (an object backing off a link may hibernate, and a
 * wait kept in memory would be lost with the SUBACK).
 */
export const SUBACK_WAIT_MS = 5_000;

/** What the shard needs of the broker it is part of. */
export interface ShardHost {
  /**
   * Delivers a message another shard accepted to this shard's matching sessions (never to a
   * shared group: those get `share` copies), or, with `share`, to one member of that group.
   * Returns the sessions it went to (0: a copy nobody here wanted).
   */
  deliverForwarded(msg: Message, share: string | null): number;
  /** whether this shard holds a member of the shared group `share` (it then gets the group's copy) */
  hasSharedMember(share: string): boolean;
  /** a retained message (or its removal: empty payload) another shard accepted, with its version */
  retainedForwarded(msg: Message, version: number): void;
  /** the home side of a tunnel (open, data, close from the entrance shard `from`): src/broker/tunnels.ts */
  tunnelAtHome(from: number, e: TunnelEntry): void;
  /** a call to shard `peer` failed: connections tunnelled from it are lost */
  peerLost(peer: number): void;
  /** state an old shard handed this one while K was raised (a session, its deliveries, a retained message) */
  moveArrived(e: MoveEntry): void;
}

/** The entrance side of a tunnel: the client's socket, here. */
export interface TunnelSocket {
  send(bytes: Uint8Array): void;
  close(code: number, reason: string): void;
}

interface Entrance {
  home: number;
  socket: TunnelSocket;
  /** frames sent to the home, and received from it (0 after a wake: the next one is taken as it comes) */
  sent: number;
  received: number;
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
  /**
   * ordinary copies from other shards that matched no session here: a fingerprint shared by the
   * topic and another exact filter (docs/scale-out.md §5.2), or a subscriber gone while it travelled
   */
  forwardedUnmatched: number;
}

/** Counters of the shard's traffic with the others (stats, bench). */
export interface ShardCounters {
  /** messages this shard sent copies of to other shards, and the copies */
  forwardedMessages: number;
  forwardedCopies: number;
  /** entries applied from other shards, and the message copies among them */
  appliedEntries: number;
  forwardedIn: number;
  /** ordinary copies applied here that matched no session (ShardStats.forwardedUnmatched) */
  forwardedUnmatched: number;
}

export class ShardNode {
  readonly interest: Interest;
  readonly links: Links;
  readonly counters: ShardCounters = { forwardedMessages: 0, forwardedCopies: 0, appliedEntries: 0, forwardedIn: 0, forwardedUnmatched: 0 };
  /** last retained version this shard gave (ms × 256 + shard index: unique, rising) */
  private lastVersion = 0;
  /** the shared-group copy goes to the group's shards in turn */
  private groupTurn = 0;
  /** interest entries sent, and how many of them every peer is known to have applied (a SUBACK waits for the rest) */
  private interestSent = 0;
  private interestAcked = 0;

  constructor(
    readonly self: number,
    readonly k: number,
    private readonly store: Store,
    linkHost: LinkHost,
    private readonly host: ShardHost,
    limits: Partial<LinkLimits> = {},
  ) {
    this.interest = new Interest(self, k);
    this.links = new Links(linkHost, store, limits);
  }

  /**
   * Why this shard refuses to serve (null: it serves): the namespace was set up with another
   * number of shards. Its sessions' homes would move, and a client would not find its session;
   * refusing keeps every session intact until SHARDS is set back (docs/scale-out.md §9).
   */
  layoutProblem: string | null = null;
  /** a shard other than 0 that has not heard shard 0 confirm the layout yet (confirmLayout) */
  layoutUnconfirmed = false;

  /** Shard 0's answer to `layout()`: the K it serves with, or why it refuses, or that it is growing. */
  layout(): { k: number; problem: string | null; growing: string | null } {
    return { k: this.k, problem: this.layoutProblem, growing: this.growingFrom !== null ? this.growingNotice() : null };
  }

  /** what a refused socket is told while the namespace grows */
  growingNotice(): string {
    return `namespace is moving to SHARDS=${this.k}${this.growingFrom !== null ? ` from SHARDS=${this.growingFrom}` : ""}: sessions are moving to their new shards; try again in a moment`;
  }

  /** Re-sharding: state for shard `target` (a session, its deliveries, a retained message), stored before this event ends. */
  sendMove(target: number, e: MoveEntry): void {
    this.links.send(target, encodeEntry(e), true);
  }

  /**
   * Re-sharding: the new shards (`from` … K − 1) hear every filter this shard's sessions hold, as
   * if each had just been subscribed (they knew none of them).
   */
  announceAllTo(from: number): void {
    const entries: Uint8Array[] = [];
    for (const fp of this.interest.localFingerprints()) entries.push(encodeEntry({ kind: "fingerprint", add: true, fp }));
    for (const filter of this.interest.localFilters()) entries.push(encodeEntry({ kind: "interest", add: true, filter }));
    if (entries.length === 0) return;
    for (let p = from; p < this.k; p++) if (p !== this.self) for (const e of entries) this.links.send(p, e, true);
    this.interestSent++;
  }

  /**
   * Takes shard 0's answer: the same K, served (and stored, so it is asked once); else refused.
   * While the namespace grows (`growing`) nothing is decided: asked again at the next socket.
   */
  confirmLayout(answer: { k: number; problem: string | null; growing?: string | null }): void {
    if (answer.growing) return;
    this.layoutUnconfirmed = false;
    if (answer.problem !== null) this.layoutProblem = answer.problem;
    else if (answer.k !== this.k) this.layoutProblem = `shard 0 of this namespace serves with SHARDS=${answer.k}, this shard with SHARDS=${this.k}: refused until they agree`;
    else this.store.saveShardLayout(this.k);
  }

  /**
   * Shard 0, while the namespace grows from `from` shards to this K (docs/scale-out.md §9, reshard.ts):
   * the number it grows from. Null when it is not growing.
   */
  growingFrom: number | null = null;
  /**
   * Any shard from shard 0's "begin" to its "end" of a growth: no socket, no publish, no timer that
   * publishes (wills, expiry events), so that no message is routed while subscriptions move.
   */
  paused = false;

  /**
   * The object started or woke: the peers' interest and the links come back from storage.
   * `holdsData`: this shard has sessions or retained messages (made under some number of shards).
   */
  restore(holdsData: boolean): void {
    const k = this.store.loadShardLayout();
    const plan = planStore(this.store).load();
    if (this.self === 0 && k !== null && k > this.k) {
      this.layoutProblem = `namespace was set up with SHARDS=${k}; SHARDS=${this.k} would hide its sessions, so it is refused (set SHARDS back to ${k}: lowering it is not supported)`;
    } else if (this.self === 0 && ((k !== null && k < this.k) || (k === null && holdsData))) {
      // raised (or a namespace of one object with data, made with one shard): sessions move to their new homes
      this.growingFrom = k ?? 1;
    } else if (this.self === 0 && plan !== null) {
      // a growth to this K whose end did not finish (shard 0 clears its plan as it records K)
      this.growingFrom = plan.from;
    } else if (k === null && this.self === 0) {
      this.store.saveShardLayout(this.k);
    } else if (this.self !== 0 && k !== this.k) {
      // Another shard asks shard 0 before its first socket. It may hold data already (retained
      // copies, tunnelled sessions: all come over links, from a namespace serving at some K), so
      // only shard 0's answer says whether that K is this one, or that the namespace is growing to it.
      this.layoutUnconfirmed = true;
    }
    this.paused = this.growingFrom !== null || plan !== null;
    this.loadInterest();
    this.links.restore();
    // chunks left unacknowledged by an earlier life may announce filters: until they are, a SUBACK waits
    if (this.links.pendingAll() > 0) this.interestSent = 1;
  }

  /** The peers' views from storage: wildcard and shared filters as strings, exact ones as fingerprints. */
  private loadInterest(): void {
    const rows = this.store.loadInterest();
    for (const row of rows) {
      // an exact filter stored as a string (before fingerprints): stored again as its fingerprint
      if (!isExactFilter(row.filter)) continue;
      this.store.addInterestFp(row.peer, fingerprint(row.filter));
      this.store.removeInterest(row.peer, row.filter);
    }
    this.interest.load(rows);
    this.store.loadInterestFps((peer, fp) => this.interest.applyFingerprint(peer, true, fp));
  }

  /**
   * The version a retained message accepted here now gets: the newest write of a topic wins on
   * every shard, whichever order the copies arrive in.
   */
  retainedVersion(now: number, stored: number | null): number {
    // above the version this shard holds for the topic (a peer's clock may be ahead of ours): a
    // write accepted here after a copy arrived must win here and on the peers alike
    const base = Math.max(now, Math.floor(this.lastVersion / 256) + 1, stored === null ? 0 : Math.floor(stored / 256) + 1);
    const v = base * 256 + this.self;
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
    if (this.interest.hasShared()) {
      this.groupMsg = msg;
      this.groupCopies = 0;
      this.interest.groups(msg.topic, this.onGroup);
      this.groupMsg = null;
      copies += this.groupCopies;
    }
    if (copies > 0) {
      this.counters.forwardedMessages++;
      this.counters.forwardedCopies += copies;
    }
    return copies;
  }

  /** Whether another shard has a subscriber or a shared group for `topic` (before building a message only they need). */
  wants(topic: string): boolean {
    const interest = this.interest;
    if (!interest.hasAny()) return false;
    if (interest.targets(topic) > 0) return true;
    let any = false;
    interest.groups(topic, () => {
      any = true;
    });
    return any;
  }

  // the shared groups of the message being forwarded (a callback made once, not per message)
  private groupMsg: Message | null = null;
  private groupCopies = 0;
  private readonly onGroup = (share: string, shards: readonly number[]): void => {
    const msg = this.groupMsg!;
    if (shards.length === 0 || this.host.hasSharedMember(share)) return; // a member here got it
    const target = shards[this.groupTurn++ % shards.length]!;
    this.links.send(target, this.encode(msg, share, 0), msg.qos > 0);
    this.groupCopies++;
  };

  /** A local subscription on `filter` was made (add) or ended: the peers hear when the first comes or the last goes. */
  localInterest(filter: string, add: boolean): void {
    const changed = add ? this.interest.localAdded(filter) : this.interest.localRemoved(filter);
    if (!changed) return;
    // an exact filter goes as its fingerprint (5 bytes): the receivers keep no string of it
    const entry = encodeEntry(isExactFilter(filter) ? { kind: "fingerprint", add, fp: fingerprint(filter) } : { kind: "interest", add, filter });
    for (let p = 0; p < this.k; p++) if (p !== this.self) this.links.send(p, entry, true);
    this.interestSent++;
  }

  /**
   * Resolves once every peer applied the interest this shard announced so far (null: nothing
   * unacknowledged): a SUBACK waits for it, so a publish on another shard after the SUBACK is
   * routed here.
   */
  interestSettled(): Promise<void> | null {
    if (this.interestAcked === this.interestSent) return null;
    // an older wait settling must not clear a newer announcement still in flight
    const upTo = this.interestSent;
    const settled = this.links.flushedAll();
    void settled.then(() => {
      if (upTo > this.interestAcked) this.interestAcked = upTo;
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, SUBACK_WAIT_MS);
    });
    return Promise.race([settled, bound]).finally(() => clearTimeout(timer));
  }

  /** A call on the link from another shard, applied in this one event (docs/scale-out.md §3.3). */
  receive(batch: LinkBatch): LinkAck {
    // what applying it sends on (a tunnelled client's publishes, filters, sessions adopted) goes as one chunk per target
    this.links.batchBegin();
    try {
      return this.links.receive(batch, (from, entries) => decodeEntries(entries, (e) => this.apply(from, e)));
    } finally {
      this.links.batchEnd();
    }
  }

  // ——— tunnels: a client that connected here, without the hint, to an id whose home is another shard ———

  private readonly entrances = new Map<string, Entrance>();

  /** The socket `id` here speaks for a client whose home is `home`: its first bytes go there. */
  tunnelOpen(home: number, id: string, socket: TunnelSocket, bytes: Uint8Array, facts: { ip?: string; br?: string }): void {
    this.entrances.set(id, { home, socket, sent: 1, received: 0 });
    this.tunnelSend(home, TunnelOp.Open, id, 1, bytes, 0, JSON.stringify(facts));
  }

  /** A socket that was a tunnel before the object slept. */
  tunnelRestore(home: number, id: string, socket: TunnelSocket): void {
    this.entrances.set(id, { home, socket, sent: -1, received: 0 }); // next frame numbered 0: a new start
  }

  /**
   * A frame from the client of tunnel `id` (`text`: a text frame, which the home answers as MQTT
   * requires); false when the tunnel is gone (the caller closes the socket).
   */
  tunnelData(id: string, bytes: Uint8Array, text = false): boolean {
    const t = this.entrances.get(id);
    if (!t) return false;
    this.tunnelSend(t.home, TunnelOp.Data, id, ++t.sent, bytes, text ? TEXT_FRAME : 0, "");
    return true;
  }

  /** The client's socket closed: the home must hear it (stored, so it does even across a failure). */
  tunnelClosed(id: string): void {
    const t = this.entrances.get(id);
    if (!t) return;
    this.entrances.delete(id);
    this.tunnelNotice(t.home, TunnelOp.Close, id, t.sent + 1);
  }

  /** Home side: bytes for the client at `entrance` (in order; lost only with the link, which then ends the tunnel). */
  tunnelOut(entrance: number, id: string, n: number, bytes: Uint8Array): void {
    this.tunnelSend(entrance, TunnelOp.Out, id, n, bytes, 0, "");
  }

  /** Home side: the connection ended; the entrance closes the socket (stored: it must arrive). */
  tunnelEnd(entrance: number, id: string, code: number, reason: string): void {
    this.tunnelNotice(entrance, TunnelOp.End, id, 0, code, reason);
  }

  /** Every tunnel whose socket is here ends (the namespace's shards change): its home hears it. */
  closeEntrances(code: number, reason: string): void {
    for (const [id, t] of this.entrances) {
      this.entrances.delete(id);
      t.socket.close(code, reason);
      this.tunnelNotice(t.home, TunnelOp.Close, id, t.sent + 1);
    }
  }

  /** A call to `peer` failed: frames to it may be lost, so the tunnels it carried end (both sides). */
  linkFailed(peer: number): void {
    for (const [id, t] of this.entrances) {
      if (t.home !== peer) continue;
      this.entrances.delete(id);
      t.socket.close(1011, "the session's shard is unreachable");
      this.tunnelNotice(peer, TunnelOp.Close, id);
    }
    this.host.peerLost(peer);
  }

  private tunnelSend(target: number, op: TunnelOp, id: string, n: number, bytes: Uint8Array, code: number, text: string): void {
    this.links.send(target, encodeEntry({ kind: "tunnel", op, id, n, bytes, code, text }), false);
  }

  /** A tunnel's end, either way (Close, End): stored, so it arrives even across a failed call. */
  private tunnelNotice(target: number, op: TunnelOp, id: string, n = 0, code = 0, reason = ""): void {
    this.links.send(target, encodeEntry({ kind: "tunnel", op, id, n, bytes: EMPTY, code, text: reason }), true);
  }

  /** the last unknown tunnel a Close was sent back for (one Close for a burst of its frames) */
  private unknownClosed = "";

  private atEntrance(from: number, e: TunnelEntry): void {
    const t = this.entrances.get(e.id);
    if (!t) {
      // closed here meanwhile (the home hears that from our Close), or lost with a restart of this
      // shard: then the home must hear it too, or its connection stays open with no socket behind it
      if (e.op === TunnelOp.Out && this.unknownClosed !== e.id) {
        this.unknownClosed = e.id;
        this.tunnelNotice(from, TunnelOp.Close, e.id);
      }
      return;
    }
    if (e.op === TunnelOp.End) {
      this.entrances.delete(e.id);
      t.socket.close(e.code, e.text);
      return;
    }
    if (t.received !== 0 && e.n !== 0 && e.n !== t.received + 1) {
      // a frame for the client was lost (a failed call): the stream cannot go on
      this.entrances.delete(e.id);
      t.socket.close(1011, "frames from the session's shard were lost");
      this.tunnelNotice(t.home, TunnelOp.Close, e.id);
      return;
    }
    t.received = e.n;
    t.socket.send(e.bytes);
  }

  private apply(from: number, e: Entry): void {
    this.counters.appliedEntries++;
    if (e.kind === "move") {
      this.host.moveArrived(e);
      return;
    }
    if (e.kind === "tunnel") {
      if (e.op === TunnelOp.Out || e.op === TunnelOp.End) this.atEntrance(from, e);
      else this.host.tunnelAtHome(from, e);
      return;
    }
    if (e.kind === "fingerprint") {
      this.applyFingerprint(from, e.add, e.fp);
      return;
    }
    if (e.kind === "interest") {
      // an exact filter as a string: from a shard that announced before fingerprints
      if (isExactFilter(e.filter)) this.applyFingerprint(from, e.add, fingerprint(e.filter));
      else if (this.interest.apply(from, e.add, e.filter)) {
        if (e.add) this.store.addInterest(from, e.filter);
        else this.store.removeInterest(from, e.filter);
      }
      return;
    }
    if (e.share !== null && !this.host.hasSharedMember(e.share) && this.passOn(from, e)) return;
    const msg = entryMessage(e);
    if (e.retain && e.share === null) this.host.retainedForwarded(msg, e.version);
    this.counters.forwardedIn++;
    if (this.host.deliverForwarded(msg, e.share) === 0 && e.share === null) this.counters.forwardedUnmatched++;
  }

  private applyFingerprint(from: number, add: boolean, fp: number): void {
    if (!this.interest.applyFingerprint(from, add, fp)) return;
    if (add) this.store.addInterestFp(from, fp);
    else this.store.removeInterestFp(from, fp);
  }

  /**
   * A shared group's copy for a group with no member left here (the last one left while it
   * travelled): on to another shard the view says has one, at most k − 1 passes (counted in the
   * entry's `version`, unused for group copies). False when there is none: the host drops it.
   */
  private passOn(from: number, e: PublishEntry): boolean {
    const passes = e.version + 1;
    if (passes >= this.k) return false;
    let target = -1;
    this.interest.groups(e.topic, (share, shards) => {
      if (share !== e.share || target >= 0) return;
      const n = shards.length;
      for (let i = 0; i < n; i++) {
        const p = shards[(this.groupTurn + i) % n]!;
        if (p !== from && p !== this.self) {
          target = p;
          break;
        }
      }
    });
    if (target < 0) return false;
    this.groupTurn++;
    this.links.send(target, encodeEntry({ ...e, version: passes }), e.qos > 0);
    return true;
  }

  /** for the stats */
  figures(): ShardStats {
    const l = this.links.stats;
    return {
      index: this.self,
      k: this.k,
      forwardedIn: this.counters.forwardedIn,
      forwardedMessages: this.counters.forwardedMessages,
      forwardedCopies: this.counters.forwardedCopies,
      linkCalls: l.calls,
      linkFailures: l.failures,
      pendingChunks: this.links.pendingAll(),
      forwardedUnmatched: this.counters.forwardedUnmatched,
    };
  }

  private encode(msg: Message, share: string | null, version: number): Uint8Array {
    return encodeEntry(messageEntry(msg, version, share));
  }
}
