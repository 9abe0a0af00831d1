// Retained messages for new subscriptions [MQTT-3.3.1-6]: every matching one, however many, and
// this is the one place they are sent. A session keeps a backlog: per subscription a cursor (the
// last topic handled), read from storage a page at a time, so nothing is held in memory or in the
// queue. It is paced twice: by the client's window (QoS 1/2 wait for acknowledgements, which
// continue it through drainQueue), and per turn (RETAINED_BYTES_PER_TURN bytes, ROWS_PER_TURN rows;
// the rest follows in a later event), so a SUBSCRIBE matching megabytes cannot hold the
// namespace's single thread. A durable session stores its backlog, so a wake or restart continues.
import type { Peer } from "./peer";
import type { QoS } from "../protocol/codec";
import type { RetainedCursorRow } from "../storage/store";
import type { Session, Subscription } from "./session";
import { deliver, drainQueue, goesOutNow, windowOf, type DeliveryContext } from "./delivery";
import { isExpired, sizeOf } from "./message";
import { literalPrefix, topicMatches } from "../topics/validate";
import { mayRead } from "../auth/rights";

/** Rows per storage read, and at most per turn (a filter such as `+/x` skips most rows it reads). */
const PAGE_ROWS = 64;
const ROWS_PER_TURN = 4096;

/**
 * Owes `subs` (new or replaced subscriptions, retain handling already judged) their retained
 * messages and sends what the window and this turn allow. A filter already owed starts over (it
 * was subscribed again) rather than being owed twice.
 */
export function sendRetained(ctx: DeliveryContext, session: Session, subs: Subscription[]): void {
  if (subs.length === 0) return;
  const backlog = (session.retainedBacklog ??= []);
  for (const sub of subs) {
    const i = backlog.findIndex((c) => c.sub.filter === sub.filter);
    if (i >= 0) backlog.splice(i, 1);
    backlog.push({ sub, prefix: literalPrefix(sub.filter), after: null });
  }
  session.retainedUnsaved = true;
  drainQueue(ctx, session); // the queue first, then the backlog (which saves what it changed)
  if (session.retainedUnsaved) saveBacklog(ctx, session);
}

/** One turn of the backlog (drainQueue calls it once the queue is empty and the window has room). */
export function continueRetained(ctx: DeliveryContext, session: Session, conn: Peer): void {
  const backlog = session.retainedBacklog!;
  const window = windowOf(ctx, conn);
  const budget = ctx.config.RETAINED_BYTES_PER_TURN;
  const now = ctx.now();
  let bytes = 0;
  let rows = 0;
  let moved = false;
  try {
    while (backlog.length) {
      const cursor = backlog[0]!;
      const sub = cursor.sub;
      if (session.subscriptions.get(sub.filter) !== sub) {
        backlog.shift(); // unsubscribed or replaced meanwhile
        moved = true;
        continue;
      }
      if (session.inflight.size >= window || session.queuedCount > 0) return; // acknowledgements continue it
      const page = ctx.store.retainedAfter(cursor.prefix, cursor.after, PAGE_ROWS);
      moved = true;
      for (const msg of page) {
        const size = sizeOf(msg);
        // the turn's budget: stop before this message (it is read again next turn)
        if (rows >= ROWS_PER_TURN || (budget > 0 && bytes > 0 && bytes + size > budget)) return later(ctx, session);
        rows++;
        if (topicMatches(sub.filter, msg.topic) && mayRead(sub, msg.topic)) {
          if (isExpired(msg, now)) ctx.store.deleteRetained(msg.topic); // expired while retained [MQTT-3.3.2-5]
          else {
            const qos = (sub.qos < msg.qos ? sub.qos : msg.qos) as QoS;
            // the window: stop before a message that would wait in the queue (and could be dropped
            // there); acknowledgements continue from it
            if (qos > 0 && !goesOutNow(ctx, session, conn, msg)) return;
            deliver(ctx, session, msg, qos, true, sub.subscriptionId ? [sub.subscriptionId] : null);
            bytes += size;
          }
        }
        cursor.after = msg.topic;
      }
      if (page.length < PAGE_ROWS) backlog.shift(); // the last page: this subscription has all of them
    }
    session.retainedBacklog = null;
  } finally {
    if (moved || session.retainedUnsaved) saveBacklog(ctx, session);
  }
}

/** The turn's budget is spent: the rest in a later event (one pending at a time). */
function later(ctx: DeliveryContext, session: Session): void {
  if (session.retainedLater) return;
  session.retainedLater = true;
  ctx.later(() => {
    session.retainedLater = false;
    drainQueue(ctx, session);
  });
}

/** A durable session's backlog is stored with it. */
function saveBacklog(ctx: DeliveryContext, session: Session): void {
  session.retainedUnsaved = false;
  if (session.durable) ctx.store.saveRetainedBacklog(session.clientId, backlogRows(session));
}

/**
 * A subscription replaced (SUBSCRIBE again, same filter): retained messages still owed for it
 * follow the new subscription, whatever its Retain Handling says of new ones [MQTT-3.8.4-3].
 */
export function rebindBacklog(session: Session, sub: Subscription): void {
  const cursor = session.retainedBacklog?.find((c) => c.sub.filter === sub.filter);
  if (cursor) cursor.sub = sub;
}

/** The backlog as stored with the session. */
export function backlogRows(session: Session): RetainedCursorRow[] | null {
  return session.retainedBacklog?.map((c) => ({ filter: c.sub.filter, after: c.after })) ?? null;
}

/** Restores a stored backlog (subscriptions already loaded; a cursor without one is done). */
export function restoreBacklog(session: Session, rows: RetainedCursorRow[] | null): void {
  const cursors = (rows ?? []).flatMap((r) => {
    const sub = session.subscriptions.get(r.filter);
    return sub ? [{ sub, prefix: literalPrefix(sub.filter), after: r.after }] : [];
  });
  session.retainedBacklog = cursors.length ? cursors : null;
}
