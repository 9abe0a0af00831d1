import type { HandlerContext } from "./context";
import type { Connection } from "../broker/connection";
import type { QoS, SubscribePacket, UnsubscribePacket } from "../protocol/codec";
import { protocolError } from "../protocol/errors";
import { RC } from "../protocol/reason-codes";
import type { Session, Subscription } from "../session/session";
import { sendRetained } from "../session/retained";
import { isValidTopicFilter, parseSharedFilter, withinTopicLimits } from "../topics/validate";
import { filterAccess } from "../auth/rights";

export function handleSubscribe(ctx: HandlerContext, conn: Connection, session: Session, p: SubscribePacket): void {
  const v5 = conn.version === 5;
  const subscriptionId = v5 ? (p.properties?.subscriptionIdentifier as number | undefined) : undefined;
  if (subscriptionId === 0) throw protocolError("subscription identifier 0");
  const config = ctx.config;
  const filters = p.subscriptions;
  // Bounded work per packet: filters beyond the limit are refused, each with its own code [MQTT-3.9.3-1].
  const max = config.MAX_FILTERS_PER_SUBSCRIBE > 0 ? Math.min(filters.length, config.MAX_FILTERS_PER_SUBSCRIBE) : filters.length;
  // A filter repeated in one packet is handled once, with its last copy's options: each copy
  // would replace the one before [MQTT-3.8.4-3], so only the last one is stored and sent retained messages.
  let last: Map<string, number> | null = null;
  if (max > 1) {
    last = new Map();
    for (let i = 0; i < max; i++) last.set(filters[i]!.topic, i);
    if (last.size === max) last = null; // no repeats
  }
  const granted: number[] = [];
  const retainedFor: Subscription[] = [];
  // the subscribed event's list, only when that event is on
  const made: { filter: string; qos: QoS }[] | null = ctx.lifecycle.enabled("subscribed") ? [] : null;

  for (let i = 0; i < max; i++) {
    const s = filters[i]!;
    if (last && last.get(s.topic) !== i) {
      granted.push(-1); // a copy replaced later in this packet: answered below, as the last copy is
      continue;
    }
    const shared = parseSharedFilter(s.topic);
    const valid = shared !== "invalid" && isValidTopicFilter(shared ? shared.filter : s.topic);
    if (!valid) {
      granted.push(v5 ? RC.TOPIC_FILTER_INVALID : 0x80);
      continue;
    }
    if (shared && s.nl) throw protocolError("No Local on a shared subscription"); // [MQTT-3.8.3-4]
    if (!withinTopicLimits(s.topic, config.MAX_TOPIC_LENGTH, config.MAX_TOPIC_LEVELS)) {
      granted.push(v5 ? RC.TOPIC_FILTER_INVALID : 0x80);
      continue;
    }
    const access = filterAccess(conn.readAcl, s.topic);
    if (access === "denied") {
      granted.push(v5 ? RC.NOT_AUTHORIZED : 0x80);
      continue;
    }
    if (config.MAX_SUBSCRIPTIONS > 0 && !session.subscriptions.has(s.topic) && session.subscriptions.size >= config.MAX_SUBSCRIPTIONS) {
      granted.push(v5 ? RC.QUOTA_EXCEEDED : 0x80);
      continue;
    }
    const qos = Math.min(s.qos, 2) as QoS;
    const sub: Subscription = {
      session,
      filter: s.topic,
      qos,
      noLocal: v5 && !!s.nl,
      retainAsPublished: v5 ? !!s.rap : false,
      retainHandling: v5 ? ((s.rh ?? 0) as 0 | 1 | 2) : 0,
      subscriptionId,
      aclCovered: access === "covered",
    };
    const existed = ctx.sessions.subscribe(session, sub);
    granted.push(qos);
    made?.push({ filter: s.topic, qos });
    // Shared subscriptions get no retained messages (MQTT 5.0 §4.8.2)
    if (!shared && sub.retainHandling !== 2 && !(sub.retainHandling === 1 && existed)) retainedFor.push(sub);
  }
  if (last) {
    // an earlier copy was granted its own QoS (then replaced), or refused as the last copy was
    for (let i = 0; i < max; i++) {
      if (granted[i] !== -1) continue;
      const final = granted[last.get(filters[i]!.topic)!]!;
      granted[i] = final < 0x80 ? Math.min(filters[i]!.qos, 2) : final;
    }
  }
  for (let i = max; i < filters.length; i++) granted.push(v5 ? RC.QUOTA_EXCEEDED : 0x80);
  // Several shards: the SUBACK waits until the others route the new filters here (and answers keep their order).
  const settled = ctx.interestSettled();
  if (settled === null && !conn.subackWait) {
    // one shard (and nothing to wait for): as always, SUBACK, the event, the retained messages
    suback(conn, p.messageId, granted);
    if (made) ctx.lifecycle.subscribed(session, made);
    sendRetained(ctx, session, retainedFor); // [MQTT-3.3.1-6] retained messages for the new subscriptions, with RETAIN set (paced)
    return;
  }
  if (made) ctx.lifecycle.subscribed(session, made);
  inOrder(conn, session, settled, () => {
    suback(conn, p.messageId, granted);
    sendRetained(ctx, session, retainedFor);
  });
}

/** SUBACK in a frame of its own, as CONNACK (see handlers/connect.ts) */
function suback(conn: Connection, messageId: number | undefined, granted: number[]): void {
  conn.send({ cmd: "suback", messageId, granted });
  conn.flush();
}

/**
 * An answer that waits: for `settled` (the other shards), and behind any answer of this
 * connection still waiting, so answers leave in their packets' order. Dropped if the connection
 * no longer holds the session by then.
 */
function inOrder(conn: Connection, session: Session, settled: Promise<void> | null, answer: () => void): void {
  const wait: Promise<void> = Promise.all([settled, conn.subackWait]).then(() => {
    if (conn.state !== "closed" && session.conn === conn) answer();
  });
  conn.subackWait = wait;
  void wait.finally(() => {
    if (conn.subackWait === wait) conn.subackWait = null;
  });
}

export function handleUnsubscribe(ctx: HandlerContext, conn: Connection, session: Session, p: UnsubscribePacket): void {
  const codes: number[] = [];
  const removed: string[] | null = ctx.lifecycle.enabled("unsubscribed") ? [] : null;
  for (const filter of p.unsubscriptions) {
    if (ctx.sessions.unsubscribe(session, filter)) {
      codes.push(RC.SUCCESS);
      removed?.push(filter);
    } else {
      const shared = parseSharedFilter(filter);
      const valid = shared !== "invalid" && isValidTopicFilter(shared ? shared.filter : filter);
      codes.push(valid ? RC.NO_SUBSCRIPTION_EXISTED : RC.TOPIC_FILTER_INVALID);
    }
  }
  // MQTT 3.1.1 UNSUBACK has no payload; the encoder writes the codes only for MQTT 5.
  if (!conn.subackWait) conn.send({ cmd: "unsuback", messageId: p.messageId, granted: codes });
  else inOrder(conn, session, null, () => conn.send({ cmd: "unsuback", messageId: p.messageId, granted: codes })); // behind a SUBACK still waiting
  if (removed) ctx.lifecycle.unsubscribed(session, removed);
}
