// A session handed from one shard to another when the namespace's number of shards is raised
// (docs/scale-out.md §9): what it is as link entries (src/shards/wire.ts), and back. The old shard
// writes the entries and forgets the session in one event; the link applies them exactly once on
// the new shard, so the session is in exactly one place whatever crashes.
import type { MoveEntry } from "../shards/wire";
import { MoveOp } from "../shards/wire";
import type { DeliveryState, RetainedCursorRow, SessionRow, SubscriptionRow } from "../storage/store";
import { entryMessage, messageEntry, type Message } from "./message";
import { backlogRows } from "./retained";
import type { Session } from "./session";

/** A session's own state, less its will's message (in the entry's `msg`). */
interface SessionMeta {
  version: SessionRow["version"];
  expiry: number;
  expiresAt: number | null;
  willAt: number | null;
  /** the will's delay (seconds), when there is a will */
  willDelay: number | null;
  owner: string | null;
  grant: SessionRow["grant"];
  durable: boolean;
  backlog: RetainedCursorRow[] | null;
  subs: Omit<SubscriptionRow, "clientId">[];
  qos2: number[];
}

/** One of its deliveries, less the message. */
export interface DeliveryMeta {
  qos: 0 | 1 | 2;
  retain: boolean;
  state: DeliveryState;
  packetId: number | null;
  subIds: number[] | null;
  share: string | null;
}

/** A delivery as the exporting shard holds it. */
export interface HeldDelivery extends DeliveryMeta {
  msg: Message;
  /** storage order (durable sessions); memory order otherwise */
  order: number;
}

/** The moved session as the importing shard rebuilds it. */
export interface MovedSession {
  row: SessionRow;
  subs: SubscriptionRow[];
  qos2: number[];
}

/** The session entry, then one entry per delivery in order. */
export function sessionEntries(session: Session, deliveries: HeldDelivery[]): MoveEntry[] {
  const will = session.will;
  const meta: SessionMeta = {
    version: session.version,
    expiry: session.expiryInterval,
    expiresAt: session.expiresAt,
    willAt: session.willAt,
    willDelay: will ? will.delay : null,
    owner: session.owner,
    grant: session.grant,
    durable: session.durable,
    backlog: backlogRows(session),
    subs: [...session.subscriptions.values()].map(({ filter, qos, noLocal, retainAsPublished, retainHandling, subscriptionId }) => ({ filter, qos, noLocal, retainAsPublished, retainHandling, subscriptionId })),
    qos2: [...session.inboundQos2],
  };
  const out: MoveEntry[] = [{ kind: "move", op: MoveOp.Session, clientId: session.clientId, meta: JSON.stringify(meta), msg: will ? messageEntry(will) : null }];
  deliveries.sort((a, b) => a.order - b.order);
  for (const d of deliveries) {
    const m: DeliveryMeta = { qos: d.qos, retain: d.retain, state: d.state, packetId: d.packetId, subIds: d.subIds, share: d.share };
    out.push({ kind: "move", op: MoveOp.Delivery, clientId: session.clientId, meta: JSON.stringify(m), msg: messageEntry(d.msg) });
  }
  return out;
}

/** The session entry read back (the session is stored as not connected: its socket stayed behind). */
export function movedSession(e: MoveEntry): MovedSession {
  const m = JSON.parse(e.meta) as SessionMeta;
  const will = e.msg && m.willDelay !== null ? { topic: e.msg.topic, payload: e.msg.payload, qos: e.msg.qos, retain: e.msg.retain, properties: e.msg.properties, delay: m.willDelay } : null;
  return {
    row: {
      clientId: e.clientId,
      version: m.version,
      expiry: m.expiry,
      connected: false,
      expiresAt: m.expiresAt,
      will,
      willAt: m.willAt,
      owner: m.owner,
      grant: m.grant,
      durable: m.durable,
      retainedBacklog: m.backlog,
    },
    subs: m.subs.map((s) => ({ clientId: e.clientId, ...s })),
    qos2: m.qos2,
  };
}

export function movedDelivery(e: MoveEntry): { meta: DeliveryMeta; msg: Message } {
  return { meta: JSON.parse(e.meta) as DeliveryMeta, msg: entryMessage(e.msg!) };
}
