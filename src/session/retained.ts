// Retained messages for new subscriptions [MQTT-3.3.1-6], paced. This is the one place they are
// sent. Each connection has a list of filters still owed their retained messages, each with a
// cursor (the last topic handled); a turn sends at most RETAINED_BYTES_PER_TURN bytes (and reads
// at most ROWS_PER_TURN rows), then the rest continues in a later event. So a SUBSCRIBE that
// matches megabytes of retained messages, or many such SUBSCRIBEs, cannot hold the namespace's
// single thread for long, and no backlog is held in memory: the cursor pages through storage.
// Nothing is dropped for pacing: every matching message is handed to `deliver` in topic order.
import type { Connection } from "../broker/connection";
import type { QoS } from "../protocol/codec";
import type { Subscription } from "./session";
import { deliver, type DeliveryContext } from "./delivery";
import { literalPrefix, topicMatches } from "../topics/validate";
import { mayRead } from "../auth/rights";

export interface RetainedContext extends DeliveryContext {
  /** runs `fn` in a later event */
  later(fn: () => void): void;
  /** ends a connection with the error as its reason (core.fail) */
  fail(conn: Connection, err: unknown): void;
}

/** one filter still owed its retained messages, and how far it got */
interface Owed {
  sub: Subscription;
  prefix: string;
  after: string | null;
}

interface Job {
  /** by filter, oldest first (a filter owed again moves to the end) */
  owed: Map<string, Owed>;
  /** a later turn is already asked for */
  scheduled: boolean;
}

/**
 * Rows read per storage query (a page is at most MAX_RETAINED_BYTES, whatever the sizes), and at
 * most per turn (filters such as `+/x` skip most rows they read).
 */
const PAGE_ROWS = 64;
const ROWS_PER_TURN = 4096;

const jobs = new WeakMap<Connection, Job>();

/**
 * Owes `subs` (new or replaced subscriptions of `conn`'s session, retain handling already
 * judged) their retained messages and sends what this turn allows. A filter already owed starts
 * over (it was subscribed again) instead of being owed twice, so the list stays within the
 * session's subscriptions.
 */
export function sendRetained(ctx: RetainedContext, conn: Connection, subs: Subscription[]): void {
  if (subs.length === 0) return;
  let job = jobs.get(conn);
  if (!job) jobs.set(conn, (job = { owed: new Map(), scheduled: false }));
  const owed = job.owed;
  for (const sub of subs) {
    owed.delete(sub.filter);
    owed.set(sub.filter, { sub, prefix: literalPrefix(sub.filter), after: null });
  }
  // Filters unsubscribed while waiting are dropped when reached; a client that churns through
  // many while a turn is pending cannot grow the list beyond its subscriptions for long.
  if (owed.size > 2 * Math.max(ctx.config.MAX_SUBSCRIPTIONS, 100)) {
    for (const [filter, o] of owed) if (conn.session?.subscriptions.get(filter) !== o.sub) owed.delete(filter);
  }
  if (!job.scheduled) pump(ctx, conn, job);
}

/** One turn of sending; asks for another while something is owed. */
function pump(ctx: RetainedContext, conn: Connection, job: Job): void {
  job.scheduled = false;
  const session = conn.session;
  if (conn.state !== "connected" || !session) {
    jobs.delete(conn); // the connection ended: nothing more is sent to it
    return;
  }
  const budget = ctx.config.RETAINED_BYTES_PER_TURN;
  const now = ctx.now();
  const expired: string[] = [];
  let bytes = 0;
  let rows = 0;
  conn.cork(); // one frame for the turn
  try {
    for (const owed of job.owed.values()) {
      const sub = owed.sub;
      let more = session.subscriptions.get(sub.filter) === sub; // else unsubscribed or replaced meanwhile
      while (more) {
        const page = ctx.store.retainedPage(owed.prefix, owed.after, PAGE_ROWS);
        more = page.length === PAGE_ROWS;
        for (const msg of page) {
          const size = msg.payload.byteLength + msg.topic.length;
          if (budget > 0 && ((bytes > 0 && bytes + size > budget) || rows >= ROWS_PER_TURN)) {
            job.scheduled = true;
            ctx.later(() => {
              try {
                pump(ctx, conn, job);
              } catch (err) {
                jobs.delete(conn);
                ctx.fail(conn, err);
              }
            });
            return;
          }
          rows++;
          owed.after = msg.topic;
          if (!topicMatches(sub.filter, msg.topic)) continue;
          if (msg.expiresAt !== undefined && msg.expiresAt <= now) {
            expired.push(msg.topic); // expired while retained [MQTT-3.3.2-5]
            continue;
          }
          if (!mayRead(sub, msg.topic)) continue; // never a retained message the client may not read
          const qos = (sub.qos < msg.qos ? sub.qos : msg.qos) as QoS;
          deliver(ctx, session, msg, qos, true, sub.subscriptionId ? [sub.subscriptionId] : null);
          bytes += size;
        }
      }
      job.owed.delete(sub.filter);
    }
    jobs.delete(conn);
  } finally {
    conn.uncork();
    for (const topic of expired) ctx.store.deleteRetained(topic);
  }
}
