// The sessions of a namespace: the one owner that creates, restores, takes up, subscribes,
// expires and ends them, keeping memory, the router and storage in step (the invariant
// `inspect()` checks). Handlers and the core ask it; nothing else changes `sessions`.
import type { BrokerConfig } from "../config";
import type { ProtocolVersion } from "../protocol/codec";
import type { Grant } from "../auth/grant";
import type { TopicAcl } from "../auth/acl";
import { judgeSubscriptions } from "../auth/rights";
import { DeliveryState, type SessionRow, type Store } from "../storage/store";
import type { Router } from "../topics/router";
import { NEVER_EXPIRES, Session, type Peer, type Subscription, type Will } from "./session";
import { rerouteShared, restorePendingResends, shareOf, type DeliveryContext } from "./delivery";
import { sizeOf, type Message } from "./message";
import type { DeliveryMeta, HeldDelivery, MovedSession } from "./transfer";
import { backlogRows, rebindBacklog, restoreBacklog } from "./retained";
import { cancelDelayedWill, willIfDue, willOnConnectionEnd, willOnSessionEnd, type WillContext } from "./will";

export interface RegistryContext extends DeliveryContext, WillContext {
  readonly config: BrokerConfig;
  readonly store: Store;
  readonly router: Router;
  wakeAt(ms: number): void;
  /** the read rights a grant gives a client (for sessions that wait offline) */
  readAcl(grant: Grant, clientId: string): TopicAcl | null;
  /** told after a session was ended because its expiry passed (the lifecycle events) */
  sessionExpired?(session: Session): void;
  /** told when a subscription is made (add) or removed, not when restored: other shards' interest */
  interestChanged?(filter: string, add: boolean): void;
}

/** What a CONNECT asks of its session. */
export interface SessionRequest {
  clientId: string;
  clean: boolean;
  version: ProtocolVersion;
  /** seconds, already capped (0: the session ends with the connection) */
  expiry: number;
  will: Will | null;
  grant: Grant;
  owner: string | null;
}

export class SessionRegistry {
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly ctx: RegistryContext) {}

  get(clientId: string): Session | undefined {
    return this.sessions.get(clientId);
  }

  has(clientId: string): boolean {
    return this.sessions.has(clientId);
  }

  get size(): number {
    return this.sessions.size;
  }

  values(): IterableIterator<Session> {
    return this.sessions.values();
  }

  /** Persistent sessions, connected or not, but `except` (for MAX_SESSIONS). */
  persistentCount(except?: Session): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.persistent && s !== except) n++;
    return n;
  }

  /**
   * Rebuilds every session from storage (the object started or woke). Returns the ids stored as
   * connected: the caller re-attaches the sockets still open and reports the others lost.
   */
  restore(): Set<string> {
    const { store, router } = this.ctx;
    const rows = store.loadSessions();
    for (const row of rows) this.sessions.set(row.clientId, sessionFromRow(row));
    for (const row of store.loadSubscriptions()) {
      const session = this.sessions.get(row.clientId);
      if (!session) continue;
      const sub: Subscription = { ...row, session };
      session.subscriptions.set(row.filter, sub);
      router.add(sub);
    }
    for (const row of rows) restoreBacklog(this.sessions.get(row.clientId)!, row.retainedBacklog);
    for (const row of store.loadInflight()) {
      const session = this.sessions.get(row.clientId);
      if (!session || row.packetId === null || row.qos === 0) continue;
      // A packet id is reused only once its exchange ended; an acknowledged row whose batched
      // removal a crash prevented can still be stored under it: the newer row is the live one.
      const older = session.inflight.get(row.packetId);
      if (older?.seq !== undefined) {
        session.takeInflight(row.packetId);
        store.deleteDelivery(older.seq);
      }
      const group = this.ctx.sharedGroup(row.share) ?? undefined;
      session.putInflight({ packetId: row.packetId, msg: row.msg, qos: row.qos, retain: row.retain, released: row.state === DeliveryState.Released, seq: row.seq, subIds: row.subIds ?? undefined, group });
    }
    for (const q of store.queueStats()) {
      const session = this.sessions.get(q.clientId);
      if (!session) continue;
      session.queuedCount = q.count;
      session.queuedBytes = q.bytes;
    }
    for (const { clientId, packetId } of store.loadInboundQos2()) this.sessions.get(clientId)?.inboundQos2.add(packetId);
    return new Set(rows.filter((r) => r.connected).map((r) => r.clientId));
  }

  /** A socket that lived through a wake holds its session again; false if it has none to hold. */
  reattach(conn: Peer): boolean {
    const session = this.sessions.get(conn.clientId);
    if (!session || session.conn) return false;
    session.conn = conn;
    restorePendingResends(this.ctx, session, conn);
    return true;
  }

  /**
   * After a restore: subscriptions are judged again with the rights of the connection holding
   * the session, or of the last one for a session that waits offline.
   */
  judgeAll(): void {
    for (const session of this.sessions.values()) {
      const read = session.conn ? session.conn.readAcl : session.grant ? this.ctx.readAcl(session.grant, session.clientId) : null;
      judgeSubscriptions(session, read);
    }
  }

  /**
   * A CONNECT accepted for `conn` (any older connection already taken over): Clean Start ends
   * the old session; else it is taken up, a delayed will cancelled and its expiry stopped.
   */
  open(conn: Peer, req: SessionRequest): { session: Session; present: boolean } {
    let session = this.sessions.get(req.clientId);
    if (session && !session.conn && session.expiresAt !== null && session.expiresAt <= this.ctx.now()) {
      // its expiry passed before the alarm came to end it (alarms can be late): it is over [MQTT-3.1.2-23]
      this.end(session);
      this.ctx.sessionExpired?.(session);
      session = undefined;
    }
    if (session && req.clean) {
      this.end(session); // Clean Start discards the old session (and publishes an owed will)
      session = undefined;
    }
    const present = session !== undefined;
    if (!session) {
      session = new Session(req.clientId, req.expiry > 0);
      this.sessions.set(req.clientId, session);
    }
    cancelDelayedWill(session);
    session.expiresAt = null;
    session.version = req.version;
    session.expiryInterval = req.expiry === NEVER_EXPIRES ? NEVER_EXPIRES : req.expiry;
    session.will = req.will;
    session.owner = req.owner;
    session.grant = req.grant;
    session.conn = conn;
    judgeSubscriptions(session, conn.readAcl);
    this.save(session);
    return { session, present };
  }

  /** A subscription made or replaced: memory, router and storage. Returns whether it replaced one. */
  subscribe(session: Session, sub: Subscription): boolean {
    const existed = session.subscriptions.has(sub.filter);
    session.subscriptions.set(sub.filter, sub);
    if (existed) rebindBacklog(session, sub);
    else this.ctx.interestChanged?.(sub.filter, true);
    this.ctx.router.add(sub);
    const { filter, qos, noLocal, retainAsPublished, retainHandling, subscriptionId } = sub;
    this.ctx.store.saveSubscription({ clientId: session.clientId, filter, qos, noLocal, retainAsPublished, retainHandling, subscriptionId });
    return existed;
  }

  /** Returns whether the subscription existed. */
  unsubscribe(session: Session, filter: string): boolean {
    if (!session.subscriptions.delete(filter)) return false;
    this.ctx.router.remove(session, filter);
    this.ctx.interestChanged?.(filter, false);
    this.ctx.store.deleteSubscription(session.clientId, filter);
    return true;
  }

  /**
   * The session's connection ended (`clean`: with a normal DISCONNECT). The will and expiry
   * rules [MQTT-3.1.2-8, 3.1.2-10]: a session that ends with its connection ends now.
   */
  connectionLost(session: Session, clean: boolean): void {
    session.conn = null;
    session.resendPending = null; // everything in flight is re-sent at the next connection
    rerouteShared(this.ctx, session);
    const willAt = willOnConnectionEnd(this.ctx, session, clean);
    if (!session.persistent) {
      this.end(session);
      return;
    }
    session.expiresAt = session.expiryInterval === NEVER_EXPIRES ? null : this.ctx.now() + session.expiryInterval * 1000;
    this.save(session);
    if (willAt !== null) this.ctx.wakeAt(willAt);
    if (session.expiresAt !== null) this.ctx.wakeAt(session.expiresAt);
  }

  /** Ends a session and everything it holds; an owed delayed will goes out now. */
  end(session: Session): void {
    willOnSessionEnd(this.ctx, session);
    rerouteShared(this.ctx, session, true); // its shared-group QoS 1 messages go to another member
    this.detach(session);
  }

  // ——— re-sharding (docs/scale-out.md §9, session/transfer.ts): a session leaves for another shard ———

  /** Its deliveries as held here, in order: in flight (memory), then queued (storage or memory). */
  heldDeliveries(session: Session, isForgotten: (seq: number) => boolean): HeldDelivery[] {
    const out: HeldDelivery[] = [];
    let order = 0;
    for (const f of session.inflight.values()) {
      if (f.seq !== undefined && isForgotten(f.seq)) continue;
      out.push({ msg: f.msg, qos: f.qos, retain: f.retain, state: f.released ? DeliveryState.Released : DeliveryState.Sent, packetId: f.packetId, subIds: f.subIds ?? null, share: shareOf(f.group ?? null), order: f.seq ?? order++ });
    }
    if (session.durable) {
      for (const r of this.ctx.store.nextQueued(session.clientId, Number.MAX_SAFE_INTEGER)) {
        if (isForgotten(r.seq)) continue;
        out.push({ msg: r.msg, qos: r.qos, retain: r.retain, state: DeliveryState.Queued, packetId: null, subIds: r.subIds, share: r.share, order: r.seq });
      }
    } else {
      for (const q of session.queue) out.push({ msg: q.msg, qos: q.qos, retain: q.retain, state: DeliveryState.Queued, packetId: null, subIds: q.subIds ?? null, share: shareOf(q.group ?? null), order: order++ });
    }
    return out;
  }

  /**
   * The session left for another shard (its entries are written in this same event): gone from
   * here without a will or an event, its subscriptions withdrawn, nothing re-routed.
   */
  detach(session: Session): void {
    for (const filter of session.subscriptions.keys()) {
      this.ctx.router.remove(session, filter);
      this.ctx.interestChanged?.(filter, false);
    }
    session.subscriptions.clear();
    this.sessions.delete(session.clientId);
    this.ctx.store.deleteSession(session.clientId);
  }

  /** A session that came from another shard: stored and live here as it was there (offline). */
  adopt(moved: MovedSession): void {
    const old = this.sessions.get(moved.row.clientId);
    if (old) this.detach(old); // cannot happen while the layout changes (no client connects): the newer copy wins
    const session = sessionFromRow(moved.row);
    this.sessions.set(session.clientId, session);
    this.ctx.store.saveSession(moved.row);
    for (const row of moved.subs) {
      const sub: Subscription = { ...row, session };
      session.subscriptions.set(row.filter, sub);
      this.ctx.router.add(sub);
      this.ctx.interestChanged?.(row.filter, true);
      this.ctx.store.saveSubscription(row);
    }
    restoreBacklog(session, moved.row.retainedBacklog);
    for (const id of moved.qos2) {
      session.inboundQos2.add(id);
      if (session.durable) this.ctx.store.addInboundQos2(session.clientId, id); // as inbound.ts: a PUBREL forgets it there only then
    }
    judgeSubscriptions(session, session.grant ? this.ctx.readAcl(session.grant, session.clientId) : null);
    if (session.willAt !== null) this.ctx.wakeAt(session.willAt);
    if (session.expiresAt !== null) this.ctx.wakeAt(session.expiresAt);
  }

  /** One delivery of a session adopted just before (in order): in flight or queued, as it was. */
  adoptDelivery(clientId: string, d: DeliveryMeta, msg: Message): void {
    const session = this.sessions.get(clientId);
    if (!session) return;
    const group = this.ctx.sharedGroup(d.share) ?? undefined;
    if (d.state === DeliveryState.Queued) {
      if (session.durable) this.ctx.store.addDelivery(clientId, msg, d.qos, d.retain, DeliveryState.Queued, null, d.subIds, d.share);
      else session.queue.push({ msg, qos: d.qos, retain: d.retain, bytes: sizeOf(msg), subIds: d.subIds ?? undefined, group });
      session.queuedCount++;
      session.queuedBytes += sizeOf(msg);
      return;
    }
    if (d.packetId === null || d.qos === 0) return;
    const seq = session.durable ? this.ctx.store.addDelivery(clientId, msg, d.qos, d.retain, d.state, d.packetId, d.subIds, d.share) : undefined;
    session.putInflight({ packetId: d.packetId, msg, qos: d.qos, retain: d.retain, released: d.state === DeliveryState.Released, seq, subIds: d.subIds ?? undefined, group });
  }

  /** The alarm: delayed wills that fell due, sessions that expired. */
  due(now: number): void {
    for (const session of this.sessions.values()) {
      willIfDue(this.ctx, session, now);
      if (!session.conn && session.expiresAt !== null && session.expiresAt <= now) {
        this.end(session);
        this.ctx.sessionExpired?.(session);
      }
    }
  }

  private save(session: Session): void {
    this.ctx.store.saveSession({
      clientId: session.clientId,
      version: session.version,
      expiry: session.expiryInterval,
      connected: session.conn !== null,
      expiresAt: session.expiresAt,
      will: session.will,
      willAt: session.willAt,
      owner: session.owner,
      grant: session.grant,
      durable: session.durable,
      retainedBacklog: backlogRows(session),
    });
  }
}

function sessionFromRow(row: SessionRow): Session {
  const s = new Session(row.clientId, row.durable);
  s.version = row.version;
  s.expiryInterval = row.expiry;
  s.will = row.will;
  s.willAt = row.willAt;
  s.expiresAt = row.expiresAt;
  s.owner = row.owner ?? null;
  s.grant = row.grant;
  return s;
}
