// Outbound delivery: QoS flows, the in-flight window, queues and redelivery. A durable session
// writes each QoS 1/2 delivery to storage (body once, a row per session); others stay in memory.
import { encode, publishIdOffset, withPacketId, type QoS } from "../protocol/codec";
import type { Connection } from "../broker/connection";
import { encodedPublish, type Message } from "./message";
import type { Session, Subscription } from "./session";
import type { SharedGroup } from "../topics/trie";
import { pickMember } from "../topics/router";
import type { BrokerConfig } from "../config";
import { DeliveryState, type Store } from "../storage/store";
import { connMayRead, mayRead } from "../auth/rights";

export interface DeliveryContext {
  readonly config: BrokerConfig;
  readonly store: Store;
  now(): number;
  /** removes an acknowledged delivery from storage, possibly a little later (batched) */
  forgetDelivery(seq: number): void;
}

type Group = SharedGroup<Subscription> | null;

/**
 * Sends (or queues) one message to one session at the QoS and RETAIN flag the router chose.
 * `group` is the shared subscription it came through, if any.
 */
export function deliver(ctx: DeliveryContext, session: Session, msg: Message, qos: QoS, retain: boolean, subIds: number[] | null, group: Group = null): void {
  if (msg.expiresAt !== undefined && msg.expiresAt <= ctx.now()) return;
  const conn = session.conn;
  const online = conn !== null && conn.state === "connected";
  if (qos === 0) {
    if (online) {
      const bytes = publishBytes(conn, msg, 0, retain, subIds, 0, false, ctx.now());
      if (bytes) conn.sendBytes(bytes);
    } else if (session.durable && ctx.config.QUEUE_QOS0) enqueue(ctx, session, msg, 0, retain, subIds, group);
    return;
  }
  if (!online) {
    if (session.durable) enqueue(ctx, session, msg, qos, retain, subIds, group);
    return;
  }
  // Order is kept: while anything waits, new messages wait behind it.
  if (session.queuedCount > 0 || session.inflight.size >= windowOf(ctx, conn)) {
    enqueue(ctx, session, msg, qos, retain, subIds, group);
    return;
  }
  sendInflight(ctx, session, conn, msg, qos, retain, subIds, undefined, group);
}

/** Flow control: at most min(client's Receive Maximum, MAX_INFLIGHT) unacknowledged sends. */
function windowOf(ctx: DeliveryContext, conn: Connection): number {
  return Math.min(conn.receiveMaximum, ctx.config.MAX_INFLIGHT, 65535);
}

function sendInflight(ctx: DeliveryContext, session: Session, conn: Connection, msg: Message, qos: 1 | 2, retain: boolean, subIds: number[] | null, seq: number | undefined, group: Group): void {
  const packetId = session.nextPacketId()!; // the window (≤ 65535) guarantees a free id
  const bytes = publishBytes(conn, msg, qos, retain, subIds, packetId, false, ctx.now());
  if (!bytes) {
    if (seq !== undefined) ctx.store.deleteDelivery(seq); // too large for this client: dropped [MQTT-3.1.2-25]
    return;
  }
  if (session.durable) {
    if (seq === undefined) seq = ctx.store.addDelivery(session.clientId, msg, qos, retain, DeliveryState.Sent, packetId, subIds);
    else ctx.store.markSent(seq, packetId);
  }
  session.inflight.set(packetId, { packetId, msg, qos, retain, released: false, seq, subIds: subIds ?? undefined, group: group ?? undefined });
  conn.sendBytes(bytes);
}

/**
 * Queues a message within the session's bounds. At the limit the oldest queued QoS 0 message
 * makes room; if there is none, the new message is dropped and counted (`session.dropped`).
 */
function enqueue(ctx: DeliveryContext, session: Session, msg: Message, qos: QoS, retain: boolean, subIds: number[] | null, group: Group): void {
  const bytes = msg.payload.byteLength + msg.topic.length;
  while (session.queuedCount >= ctx.config.MAX_QUEUED_MESSAGES || session.queuedBytes + bytes > ctx.config.MAX_QUEUED_BYTES) {
    if (!dropOldestQos0(ctx, session)) {
      session.dropped++;
      return;
    }
  }
  if (session.durable) ctx.store.addDelivery(session.clientId, msg, qos, retain, DeliveryState.Queued, null, subIds);
  else session.queue.push({ msg, qos, retain, bytes, subIds: subIds ?? undefined, group: group ?? undefined });
  session.queuedCount++;
  session.queuedBytes += bytes;
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
  return true;
}

/** Sends queued messages, oldest first, while the client's window allows. */
export function drainQueue(ctx: DeliveryContext, session: Session): void {
  const conn = session.conn;
  if (!conn || conn.state !== "connected") return;
  conn.cork(); // one frame for the batch
  try {
    sendQueued(ctx, session, conn);
  } finally {
    conn.uncork();
  }
}

function sendQueued(ctx: DeliveryContext, session: Session, conn: Connection): void {
  const window = windowOf(ctx, conn);
  while (session.queuedCount > 0) {
    const room = window - session.inflight.size;
    if (room <= 0) return;
    const now = ctx.now();
    let taken: number;
    if (session.durable) {
      const rows = ctx.store.nextQueued(session.clientId, room);
      for (const r of rows) sendDequeued(ctx, session, conn, r.msg, r.qos, r.retain, r.subIds, r.seq, null, now);
      taken = rows.length;
    } else {
      const items = session.queue.splice(0, room);
      for (const q of items) sendDequeued(ctx, session, conn, q.msg, q.qos, q.retain, q.subIds ?? null, undefined, q.group ?? null, now);
      taken = items.length;
    }
    if (taken === 0) {
      session.queuedCount = 0; // the counters drifted from storage; storage is the truth
      session.queuedBytes = 0;
      return;
    }
  }
}

/** One message leaving the queue: sent, or dropped when it expired or may no longer be read. */
function sendDequeued(ctx: DeliveryContext, session: Session, conn: Connection, msg: Message, qos: QoS, retain: boolean, subIds: number[] | null, seq: number | undefined, group: Group, now: number): void {
  session.queuedCount--;
  session.queuedBytes -= msg.payload.byteLength + msg.topic.length;
  const expired = msg.expiresAt !== undefined && msg.expiresAt <= now;
  // the connection's read ACL may be narrower than when the message was queued (auth/rights.ts)
  const dropped = expired || !connMayRead(conn, msg.topic);
  if (dropped || qos === 0) {
    const bytes = dropped ? null : publishBytes(conn, msg, 0, retain, subIds, 0, false, now);
    if (bytes) conn.sendBytes(bytes);
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

function resend(ctx: DeliveryContext, session: Session, conn: Connection): void {
  for (const f of session.inflight.values()) {
    if (f.released) {
      conn.send({ cmd: "pubrel", messageId: f.packetId });
      continue;
    }
    const readable = connMayRead(conn, f.msg.topic); // another client may have taken the session
    const bytes = readable ? publishBytes(conn, f.msg, f.qos, f.retain, f.subIds ?? null, f.packetId, true, ctx.now()) : null;
    if (bytes) conn.sendBytes(bytes);
    else complete(ctx, session, f.packetId, f.seq); // now too large for this client, or not readable: dropped
  }
}

/**
 * A shared-subscription member lost its connection: QoS 1 messages it had not acknowledged (and,
 * for a session that ends, those waiting in its memory queue) go to another connected member.
 * A QoS 2 delivery once started stays with its member: it completes when the member returns, or
 * is dropped with its session [MQTT-4.8.2-4, 4.8.2-5].
 */
export function rerouteShared(ctx: DeliveryContext, session: Session): void {
  for (const f of [...session.inflight.values()]) {
    if (!f.group || f.qos === 2) continue;
    const target = pickMember(f.group, session);
    if (!target || !mayRead(target, f.msg.topic)) continue; // nobody else (who may read it): it waits for this member
    session.inflight.delete(f.packetId);
    if (f.seq !== undefined) ctx.store.deleteDelivery(f.seq);
    deliverToMember(ctx, target, f.msg, f.group);
  }
  if (session.durable) return;
  for (const q of session.queue.splice(0)) {
    session.queuedCount--;
    session.queuedBytes -= q.bytes;
    const target = q.group ? pickMember(q.group, session) : null;
    if (target && mayRead(target, q.msg.topic)) deliverToMember(ctx, target, q.msg, q.group!);
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
  session.inflight.delete(packetId);
  if (seq !== undefined) ctx.forgetDelivery(seq);
  if (session.queuedCount > 0 && session.conn && session.inflight.size <= windowOf(ctx, session.conn) >> 1) drainQueue(ctx, session);
}

/**
 * The bytes of one PUBLISH to one connection: the shared encoding unless it needs its own
 * properties (subscription ids, a decremented expiry, a topic alias). Null when the packet would
 * exceed the client's Maximum Packet Size: it is then not sent to that client [MQTT-3.1.2-25].
 */
function publishBytes(conn: Connection, msg: Message, qos: QoS, retain: boolean, subIds: number[] | null, packetId: number, dup: boolean, now: number): Uint8Array | null {
  let bytes: Uint8Array;
  if (conn.version === 5) {
    // forward the expiry interval less the time the message waited [MQTT-3.3.2-6]
    const expiry = msg.expiresAt !== undefined ? Math.max(1, Math.ceil((msg.expiresAt - now) / 1000)) : undefined;
    const alias = conn.topicAliasMaximum > 0 ? outboundAlias(conn, msg.topic) : null;
    if (subIds !== null || alias !== null || (expiry !== undefined && expiry !== msg.properties?.messageExpiryInterval)) {
      const properties = { ...msg.properties };
      if (subIds) properties.subscriptionIdentifier = subIds.length === 1 ? subIds[0]! : subIds;
      if (expiry !== undefined) properties.messageExpiryInterval = expiry;
      if (alias) properties.topicAlias = alias.id;
      bytes = encode(
        { cmd: "publish", topic: alias?.known ? "" : msg.topic, payload: msg.payload as Buffer, qos, retain, dup, messageId: qos > 0 ? packetId : undefined, properties },
        5,
      );
      if (bytes.byteLength > conn.maxPacketSize) return null;
      if (alias && !alias.known) conn.outboundAliases!.set(msg.topic, alias.id); // the client learns it with this packet
      return bytes;
    }
  }
  const base = encodedPublish(msg, conn.version, qos, retain);
  bytes = qos === 0 ? base : withPacketId(base, publishIdOffset(base), packetId, dup);
  return bytes.byteLength > conn.maxPacketSize ? null : bytes;
}

/** Outbound topic aliases: the first Topic Alias Maximum distinct topics get one, for the connection's life. */
function outboundAlias(conn: Connection, topic: string): { id: number; known: boolean } | null {
  const aliases = (conn.outboundAliases ??= new Map());
  const id = aliases.get(topic);
  if (id !== undefined) return { id, known: true };
  if (aliases.size >= conn.topicAliasMaximum) return null;
  return { id: aliases.size + 1, known: false };
}
