// Outbound delivery: QoS flows, in-flight windows, offline queues and redelivery.
import { encode, publishIdOffset, withPacketId, type QoS } from "../protocol/codec";
import type { Connection } from "../broker/connection";
import { encodedPublish, type Message } from "./message";
import type { Inflight, Session } from "./session";
import type { BrokerConfig } from "../config";

export interface DeliveryContext {
  readonly config: BrokerConfig;
  now(): number;
}

/** Sends (or queues) one message to one session at the QoS and RETAIN flag the router chose. */
export function deliver(ctx: DeliveryContext, session: Session, msg: Message, qos: QoS, retain: boolean, subIds: number[] | null): void {
  const conn = session.conn;
  if (msg.expiresAt !== undefined && msg.expiresAt <= ctx.now()) return;
  if (!conn || conn.state !== "connected") {
    if (session.persistent && (qos > 0 || ctx.config.QUEUE_QOS0)) enqueue(ctx, session, msg, qos, retain);
    return;
  }
  if (qos === 0) {
    conn.sendBytes(publishBytes(conn, msg, 0, retain, subIds, 0, false, ctx.now()));
    return;
  }
  // Flow control: at most Receive Maximum unacknowledged sends; the rest waits in order.
  if (session.inflight.size >= conn.receiveMaximum || session.queue.length > 0) {
    enqueue(ctx, session, msg, qos, retain);
    return;
  }
  sendInflight(ctx, session, conn, msg, qos, retain, subIds);
}

function sendInflight(ctx: DeliveryContext, session: Session, conn: Connection, msg: Message, qos: 1 | 2, retain: boolean, subIds: number[] | null): void {
  const packetId = session.nextPacketId();
  if (packetId === null) {
    enqueue(ctx, session, msg, qos, retain);
    return;
  }
  const entry: Inflight = { packetId, msg, qos, retain, released: false };
  session.inflight.set(packetId, entry);
  conn.sendBytes(publishBytes(conn, msg, qos, retain, subIds, packetId, false, ctx.now()));
}

function enqueue(ctx: DeliveryContext, session: Session, msg: Message, qos: QoS, retain: boolean): void {
  if (session.queue.length >= ctx.config.MAX_QUEUED_MESSAGES) return;
  session.queue.push({ msg, qos, retain });
}

/** Sends queued messages while the client's window allows. */
export function drainQueue(ctx: DeliveryContext, session: Session): void {
  const conn = session.conn;
  if (!conn || conn.state !== "connected") return;
  let sent = 0;
  while (sent < session.queue.length && session.inflight.size < conn.receiveMaximum) {
    const q = session.queue[sent++]!;
    if (q.msg.expiresAt !== undefined && q.msg.expiresAt <= ctx.now()) continue;
    if (q.qos === 0) conn.sendBytes(publishBytes(conn, q.msg, 0, q.retain, null, 0, false, ctx.now()));
    else sendInflight(ctx, session, conn, q.msg, q.qos, q.retain, null);
  }
  session.queue.splice(0, sent);
}

/** On reconnect to an existing session: unacknowledged messages first, with DUP, then the queue. */
export function resume(ctx: DeliveryContext, session: Session): void {
  const conn = session.conn;
  if (!conn) return;
  for (const f of session.inflight.values()) {
    if (f.released) conn.send({ cmd: "pubrel", messageId: f.packetId });
    else conn.sendBytes(publishBytes(conn, f.msg, f.qos, f.retain, null, f.packetId, true, ctx.now()));
  }
  drainQueue(ctx, session);
}

export function onPuback(ctx: DeliveryContext, session: Session, packetId: number): void {
  const f = session.inflight.get(packetId);
  if (!f || f.qos !== 1) return;
  session.inflight.delete(packetId);
  if (session.queue.length) drainQueue(ctx, session);
}

/** PUBREC: the message is delivered; answer PUBREL. Returns false for an unknown id. */
export function onPubrec(session: Session, packetId: number): boolean {
  const f = session.inflight.get(packetId);
  if (!f || f.qos !== 2) return false;
  f.released = true;
  return true;
}

export function onPubcomp(ctx: DeliveryContext, session: Session, packetId: number): void {
  const f = session.inflight.get(packetId);
  if (!f || !f.released) return;
  session.inflight.delete(packetId);
  if (session.queue.length) drainQueue(ctx, session);
}

/** The bytes of one PUBLISH to one connection: the shared encoding unless it needs its own properties. */
function publishBytes(conn: Connection, msg: Message, qos: QoS, retain: boolean, subIds: number[] | null, packetId: number, dup: boolean, now: number): Uint8Array {
  const v5 = conn.version === 5;
  const expiry = v5 && msg.expiresAt !== undefined ? Math.max(1, Math.ceil((msg.expiresAt - now) / 1000)) : undefined;
  const ownProps = v5 && (subIds !== null || (expiry !== undefined && expiry !== msg.properties?.messageExpiryInterval));
  if (ownProps) {
    const properties = { ...msg.properties };
    if (subIds) properties.subscriptionIdentifier = subIds.length === 1 ? subIds[0]! : subIds;
    if (expiry !== undefined) properties.messageExpiryInterval = expiry;
    return encode(
      { cmd: "publish", topic: msg.topic, payload: msg.payload as Buffer, qos, retain, dup, messageId: qos > 0 ? packetId : undefined, properties },
      conn.version,
    );
  }
  const base = encodedPublish(msg, conn.version, qos, retain);
  return qos === 0 ? base : withPacketId(base, publishIdOffset(base), packetId, dup);
}
