// Outbound delivery: QoS flows, the in-flight window, queues and redelivery. A durable session
// writes each QoS 1/2 delivery to storage (body once, a row per session); others stay in memory.
import { MAX_PACKET_ID } from "../protocol/limits";
import type { QoS } from "../protocol/codec";
import type { Peer } from "./peer";
import { isExpired, sizeOf, type Message } from "./message";
import type { Inflight, Session, Subscription } from "./session";
import type { SharedGroup } from "../topics/trie";
import { pickMember } from "../topics/router";
import type { BrokerConfig } from "../config";
import { DeliveryState, type Store } from "../storage/store";
import { connMayRead } from "../auth/rights";
import { DROP, countDrop, type DropCounts } from "./drops";

export interface DeliveryContext extends DropCounts {
  readonly config: BrokerConfig;
  readonly store: Store;
  now(): number;
  /** removes an acknowledged delivery from storage, possibly a little later (batched) */
  forgetDelivery(seq: number): void;
  /** run `fn` in a later event (continues work bounded per turn) */
  later(fn: () => void): void;
  /** sends more of a session's retained backlog (session/retained.ts), once its queue is empty */
  continueRetained(session: Session, conn: Peer): void;
  /** the shared group a stored delivery came through ("$share/<group>/<filter>"), if it still exists */
  sharedGroup(share: string | null): Group;
}

/** How a delivery's shared group is stored with it. */
export function shareOf(group: Group): string | null {
  return group ? `$share/${group.name}/${group.filter}` : null;
}

type Group = SharedGroup<Subscription> | null;

/**
 * Sends (or queues) one message to one session at the QoS and RETAIN flag the router chose.
 * `group` is the shared subscription it came through, if any.
 */
export function deliver(ctx: DeliveryContext, session: Session, msg: Message, qos: QoS, retain: boolean, subIds: number[] | null, group: Group = null): void {
  if (isExpired(msg, ctx.now())) return countDrop(ctx, DROP.EXPIRED);
  const conn = session.conn;
  const online = conn !== null && conn.state === "connected";
  if (qos === 0) {
    if (online) {
      if (!conn.sendPublish(msg, 0, retain, subIds, 0, false, ctx.now())) countDrop(ctx, DROP.TOO_LARGE);
    } else if (session.durable && ctx.config.QUEUE_QOS0) enqueue(ctx, session, msg, 0, retain, subIds, group);
    return;
  }
  if (!online) {
    if (session.durable) enqueue(ctx, session, msg, qos, retain, subIds, group);
    return;
  }
  // Order is kept: while anything waits, new messages wait behind it.
  if (session.queuedCount > 0 || !hasRoom(ctx, session, conn, msg)) {
    enqueue(ctx, session, msg, qos, retain, subIds, group);
    return;
  }
  sendInflight(ctx, session, conn, msg, qos, retain, subIds, undefined, group);
}

/** Flow control: at most min(client's Receive Maximum, MAX_INFLIGHT) unacknowledged sends. */
export function windowOf(ctx: DeliveryContext, conn: Peer): number {
  return Math.min(conn.receiveMaximum, ctx.config.MAX_INFLIGHT, MAX_PACKET_ID);
}

/** Room in the window for `msg`: a free slot, and its bytes within MAX_INFLIGHT_BYTES (one always fits). */
function hasRoom(ctx: DeliveryContext, session: Session, conn: Peer, msg: Message): boolean {
  if (session.inflight.size >= windowOf(ctx, conn)) return false;
  const max = ctx.config.MAX_INFLIGHT_BYTES;
  return max <= 0 || session.inflight.size === 0 || session.inflightBytes + sizeOf(msg) <= max;
}

/** Whether a QoS 1/2 message for this session would go out now rather than wait in its queue. */
export function goesOutNow(ctx: DeliveryContext, session: Session, conn: Peer, msg: Message): boolean {
  return session.queuedCount === 0 && hasRoom(ctx, session, conn, msg);
}

/** Whether a session would take a message now or in its queue (not drop it for a full queue). */
function canTake(ctx: DeliveryContext, session: Session, msg: Message): boolean {
  const conn = session.conn;
  if (conn && conn.state === "connected" && goesOutNow(ctx, session, conn, msg)) return true;
  return session.queuedCount < ctx.config.MAX_QUEUED_MESSAGES && session.queuedBytes + sizeOf(msg) <= ctx.config.MAX_QUEUED_BYTES;
}

function sendInflight(ctx: DeliveryContext, session: Session, conn: Peer, msg: Message, qos: 1 | 2, retain: boolean, subIds: number[] | null, seq: number | undefined, group: Group): void {
  const packetId = session.nextPacketId()!; // the window (≤ 65535) guarantees a free id
  if (!conn.sendPublish(msg, qos, retain, subIds, packetId, false, ctx.now())) {
    if (seq !== undefined) ctx.store.deleteDelivery(seq); // too large for this client: dropped [MQTT-3.1.2-25]
    countDrop(ctx, DROP.TOO_LARGE);
    return;
  }
  if (session.durable) {
    if (seq === undefined) seq = ctx.store.addDelivery(session.clientId, msg, qos, retain, DeliveryState.Sent, packetId, subIds, shareOf(group));
    else ctx.store.markSent(seq, packetId);
  }
  session.putInflight({ packetId, msg, qos, retain, released: false, seq, subIds: subIds ?? undefined, group: group ?? undefined });
}

/**
 * Queues a message within the session's bounds. At the limit the oldest queued QoS 0 message
 * makes room; if there is none, the new message is dropped and counted (`session.dropped`).
 */
function enqueue(ctx: DeliveryContext, session: Session, msg: Message, qos: QoS, retain: boolean, subIds: number[] | null, group: Group): void {
  const bytes = sizeOf(msg);
  const full = () => session.queuedCount >= ctx.config.MAX_QUEUED_MESSAGES || session.queuedBytes + bytes > ctx.config.MAX_QUEUED_BYTES;
  if (full()) dropExpired(ctx, session); // expired messages never displace live ones
  while (full()) {
    if (!dropOldestQos0(ctx, session)) {
      session.dropped++;
      countDrop(ctx, DROP.QUEUE_FULL);
      return;
    }
  }
  if (session.durable) ctx.store.addDelivery(session.clientId, msg, qos, retain, DeliveryState.Queued, null, subIds, shareOf(group));
  else session.queue.push({ msg, qos, retain, bytes, subIds: subIds ?? undefined, group: group ?? undefined });
  session.queuedCount++;
  session.queuedBytes += bytes;
}

/** Removes the queued messages whose Message Expiry has passed [MQTT-3.3.2-5]. */
function dropExpired(ctx: DeliveryContext, session: Session): void {
  const now = ctx.now();
  let count = 0;
  let bytes = 0;
  if (session.durable) ({ count, bytes } = ctx.store.dropExpiredQueued(session.clientId, now));
  else {
    let kept = 0;
    for (const q of session.queue) {
      if (isExpired(q.msg, now)) {
        count++;
        bytes += q.bytes;
      } else session.queue[kept++] = q;
    }
    session.queue.length = kept;
  }
  session.queuedCount -= count;
  session.queuedBytes -= bytes;
  if (count > 0) countDrop(ctx, DROP.EXPIRED, count);
}

function dropOldestQos0(ctx: DeliveryContext, session: Session): boolean {
  let freed: number | null = null;
  if (session.durable) freed = ctx.store.dropOldestQos0(session.clientId);
  else {
    const i = session.queue.findIndex((q) => q.qos === 0);
    if (i >= 0) freed = session.queue.splice(i, 1)[0]!.bytes;
  }
  if (freed === null) return false;
  session.queuedCount--;
  session.queuedBytes -= freed;
  session.dropped++;
  countDrop(ctx, DROP.QUEUE_FULL);
  return true;
}

/** Sends queued messages, oldest first, while the client's window allows. */
export function drainQueue(ctx: DeliveryContext, session: Session): void {
  const conn = session.conn;
  if (!conn || conn.state !== "connected") return;
  conn.cork(); // one frame for the batch
  try {
    sendQueued(ctx, session, conn);
    if (session.retainedBacklog && session.queuedCount === 0) ctx.continueRetained(session, conn);
  } finally {
    conn.uncork();
  }
}

function sendQueued(ctx: DeliveryContext, session: Session, conn: Peer): void {
  const window = windowOf(ctx, conn);
  while (session.queuedCount > 0) {
    const room = window - session.inflight.size;
    if (room <= 0) return;
    const now = ctx.now();
    // A QoS 1/2 message over the byte bound stops the batch: it and those behind it stay queued.
    const fits = (msg: Message, qos: QoS) => qos === 0 || hasRoom(ctx, session, conn, msg);
    if (session.durable) {
      const rows = ctx.store.nextQueued(session.clientId, room);
      if (rows.length === 0) return forgetQueue(session); // the counters drifted from storage; storage is the truth
      for (const r of rows) {
        if (!fits(r.msg, r.qos)) return;
        sendDequeued(ctx, session, conn, r.msg, r.qos, r.retain, r.subIds, r.seq, r.share ? ctx.sharedGroup(r.share) : null, now);
      }
    } else {
      if (session.queue.length === 0) return forgetQueue(session);
      // the batch's QoS 1/2 bytes count against the bound before any of it is in flight
      const max = ctx.config.MAX_INFLIGHT_BYTES;
      let n = 0;
      let flying = session.inflight.size;
      let batchBytes = session.inflightBytes;
      while (n < room && n < session.queue.length) {
        const q = session.queue[n]!;
        if (q.qos > 0) {
          if (max > 0 && flying > 0 && batchBytes + q.bytes > max) break; // one always fits
          flying++;
          batchBytes += q.bytes;
        }
        n++;
      }
      if (n === 0) return;
      for (const q of session.queue.splice(0, n)) sendDequeued(ctx, session, conn, q.msg, q.qos, q.retain, q.subIds ?? null, undefined, q.group ?? null, now);
      if (n < room && session.queue.length > 0) return; // stopped by the byte bound
    }
  }
}

function forgetQueue(session: Session): void {
  session.queuedCount = 0;
  session.queuedBytes = 0;
}

/** One message leaving the queue: sent, or dropped when it expired or may no longer be read. */
function sendDequeued(ctx: DeliveryContext, session: Session, conn: Peer, msg: Message, qos: QoS, retain: boolean, subIds: number[] | null, seq: number | undefined, group: Group, now: number): void {
  session.queuedCount--;
  session.queuedBytes -= sizeOf(msg);
  const expired = isExpired(msg, now);
  // the connection's read ACL may be narrower than when the message was queued (auth/rights.ts)
  const dropped = expired || !connMayRead(conn, msg.topic);
  if (dropped) countDrop(ctx, expired ? DROP.EXPIRED : DROP.UNREADABLE);
  if (dropped || qos === 0) {
    if (!dropped && !conn.sendPublish(msg, 0, retain, subIds, 0, false, now)) countDrop(ctx, DROP.TOO_LARGE);
    if (seq !== undefined) ctx.store.deleteDelivery(seq);
    return;
  }
  sendInflight(ctx, session, conn, msg, qos, retain, subIds, seq, group);
}

/** On reconnect to an existing session: unacknowledged messages first, with DUP, then the queue. */
export function resume(ctx: DeliveryContext, session: Session): void {
  const conn = session.conn;
  if (!conn) return;
  conn.cork();
  try {
    resend(ctx, session, conn);
    drainQueue(ctx, session);
  } finally {
    conn.uncork();
  }
}

/**
 * Re-sends the unacknowledged messages, oldest first, with DUP and their packet ids
 * [MQTT-4.4.0-1], at most the client's window of them now [MQTT-3.3.4-9]; the rest follow as
 * acknowledgements arrive (`session.resendPending`). One that can no longer go to this client
 * (too large for its Maximum Packet Size, or not readable) is dropped.
 */
function resend(ctx: DeliveryContext, session: Session, conn: Peer): void {
  const window = windowOf(ctx, conn);
  const pending: number[] = [];
  let outstanding = 0;
  for (const f of [...session.inflight.values()]) {
    if (outstanding >= window) pending.push(f.packetId);
    else if (resendOne(ctx, session, conn, f)) outstanding++;
  }
  session.resendPending = pending.length ? pending : null;
}

function resendOne(ctx: DeliveryContext, session: Session, conn: Peer, f: Inflight): boolean {
  if (f.released) {
    conn.send({ cmd: "pubrel", messageId: f.packetId });
    return true;
  }
  const readable = connMayRead(conn, f.msg.topic); // another client may have taken the session
  if (readable && conn.sendPublish(f.msg, f.qos, f.retain, f.subIds ?? null, f.packetId, true, ctx.now())) return true;
  countDrop(ctx, readable ? DROP.TOO_LARGE : DROP.UNREADABLE);
  session.takeInflight(f.packetId); // dropped, without refilling while the re-sends are worked out
  if (f.seq !== undefined) ctx.store.deleteDelivery(f.seq); // at once: its packet id is free for the next send
  return false;
}

/**
 * After a wake, for a session whose connection lived on: which in-flight messages it had not
 * re-sent yet. Re-sends go out oldest first and fill the window before anything new is sent, so
 * the first `window` were sent on this connection and the rest still wait.
 */
export function restorePendingResends(ctx: DeliveryContext, session: Session, conn: Peer): void {
  const ids = [...session.inflight.keys()].slice(windowOf(ctx, conn));
  session.resendPending = ids.length ? ids : null;
}

/** Re-sends held back by the window, as acknowledgements make room. */
function resendMore(ctx: DeliveryContext, session: Session, conn: Peer): void {
  const pending = session.resendPending!;
  const window = windowOf(ctx, conn);
  while (pending.length && session.inflight.size - pending.length < window) {
    const f = session.inflight.get(pending.shift()!);
    if (f) resendOne(ctx, session, conn, f);
  }
  if (pending.length > 0) return;
  session.resendPending = null;
  // the last re-sends may have been dropped (too large now, or unreadable): the queue goes on
  if ((session.queuedCount > 0 || session.retainedBacklog) && session.inflight.size <= windowOf(ctx, conn) >> 1) drainQueue(ctx, session);
}

/**
 * A shared-subscription member lost its connection: QoS 1 messages it had not acknowledged (and,
 * for a session that ends, those waiting in its memory queue) go to another connected member.
 * A QoS 2 delivery once started stays with its member: it completes when the member returns, or
 * is dropped with its session [MQTT-4.8.2-4, 4.8.2-5].
 */
export function rerouteShared(ctx: DeliveryContext, session: Session, ending = false): void {
  for (const f of [...session.inflight.values()]) {
    if (!f.group || f.qos === 2) continue;
    const target = pickMember(f.group, session, f.msg.topic);
    // nobody else (who may read it, and has room for it): it waits for this member
    if (!target || !canTake(ctx, target.session, f.msg)) continue;
    session.takeInflight(f.packetId);
    // A clean member holds no row: a body id the message carries may be gone with another
    // session's acknowledged row, so the new member stores the body again.
    if (f.seq === undefined) f.msg.storedId = undefined;
    // The new delivery first: a durable member's row refers to the stored body, which the old
    // row's removal then keeps.
    deliverToMember(ctx, target, f.msg, f.group);
    if (f.seq !== undefined) {
      ctx.store.deleteDelivery(f.seq);
      if (!target.session.durable) f.msg.storedId = undefined; // the body may be gone with the row
    }
  }
  if (session.durable) {
    // a durable member's stored queue waits for it, unless its session ends
    if (ending && session.queuedCount > 0) rerouteStoredQueue(ctx, session);
    return;
  }
  for (const q of session.queue.splice(0)) {
    session.queuedCount--;
    session.queuedBytes -= q.bytes;
    const target = q.group ? pickMember(q.group, session, q.msg.topic) : null;
    if (!target) {
      if (q.group) countDrop(ctx, DROP.NO_SHARED_MEMBER); // (the rest ends with the session, as MQTT says)
      continue;
    }
    q.msg.storedId = undefined; // as above: a clean member's message may carry a stale body id
    deliverToMember(ctx, target, q.msg, q.group!);
  }
}

/** An ending durable member's stored queue: QoS 1 messages of a shared group go to another member. */
function rerouteStoredQueue(ctx: DeliveryContext, session: Session): void {
  for (const r of ctx.store.nextQueued(session.clientId, ctx.config.MAX_QUEUED_MESSAGES)) {
    const group = r.share ? ctx.sharedGroup(r.share) : null;
    if (!group || r.qos !== 1) continue;
    const target = pickMember(group, session, r.msg.topic);
    // the new row keeps the stored body, which the session's deletion then leaves in place
    if (target && canTake(ctx, target.session, r.msg)) deliverToMember(ctx, target, r.msg, group);
    else countDrop(ctx, DROP.NO_SHARED_MEMBER); // it ends with the session
  }
}

/** A message of a shared group delivered as the member's own subscription asks (QoS, RETAIN, id). */
function deliverToMember(ctx: DeliveryContext, member: Subscription, msg: Message, group: SharedGroup<Subscription>): void {
  const qos = (member.qos < msg.qos ? member.qos : msg.qos) as QoS;
  deliver(ctx, member.session, msg, qos, member.retainAsPublished && msg.retain, member.subscriptionId ? [member.subscriptionId] : null, group);
}

export function onPuback(ctx: DeliveryContext, session: Session, packetId: number): void {
  const f = session.inflight.get(packetId);
  if (!f || f.qos !== 1) return;
  complete(ctx, session, packetId, f.seq);
}

/** PUBREC: the client has the message; we answer PUBREL. Returns false for an unknown id. */
export function onPubrec(ctx: DeliveryContext, session: Session, packetId: number): boolean {
  const f = session.inflight.get(packetId);
  if (!f || f.qos !== 2) return false;
  if (!f.released && f.seq !== undefined) ctx.store.markReleased(f.seq);
  f.released = true;
  return true;
}

export function onPubcomp(ctx: DeliveryContext, session: Session, packetId: number): void {
  const f = session.inflight.get(packetId);
  if (!f || !f.released) return;
  complete(ctx, session, packetId, f.seq);
}

/**
 * Ends an outbound exchange (acknowledged, or refused by an MQTT 5 reason code ≥ 0x80). The
 * queue refills once half the window is free, so a stream of acknowledgements sends (and
 * writes) in batches rather than one message per acknowledgement.
 */
export function complete(ctx: DeliveryContext, session: Session, packetId: number, seq: number | undefined): void {
  session.takeInflight(packetId);
  if (seq !== undefined) ctx.forgetDelivery(seq);
  const conn = session.conn;
  if (!conn || conn.state !== "connected") return;
  if (session.resendPending) return resendMore(ctx, session, conn);
  if ((session.queuedCount > 0 || session.retainedBacklog) && session.inflight.size <= windowOf(ctx, conn) >> 1) drainQueue(ctx, session);
}
