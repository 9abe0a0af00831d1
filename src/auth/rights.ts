// Where topic rights meet sessions and deliveries. A subscription whose filter the read ACL fully
// covers is never checked again; a broader one ("#" under read ACL "a/#") is granted, and each
// delivery through it is checked against the ACL — live, retained, queued and wills alike.
import type { Session, Subscription } from "../session/session";
import type { Peer } from "../session/peer";
import type { TopicAcl, FilterAccess } from "./acl";
import { parseSharedFilter } from "../topics/validate";

/** Whether a message on `topic` may go out through `sub` (the hot path: a flag test when covered). */
export function mayRead(sub: Subscription, topic: string): boolean {
  if (sub.aclCovered === true) return true;
  const s = sub.session;
  const acl = s.conn !== null ? s.conn.readAcl : s.readAcl;
  return !acl || acl.allows(topic); // no ACL (null, or a connection without rights yet): unrestricted
}

/** A client topic name it may publish to: never a `$` topic (`$SYS` is the broker's), then the ACL. */
export function mayPublish(conn: Peer, topic: string): boolean {
  if (topic.charCodeAt(0) === 0x24) return false;
  return conn.publishAcl === null || conn.publishAcl.allows(topic);
}

/** The read access for a subscription filter (a shared one is judged by its inner filter). */
export function filterAccess(acl: TopicAcl | null, filter: string): FilterAccess {
  if (acl === null) return "covered";
  const shared = parseSharedFilter(filter);
  return acl.access(shared && shared !== "invalid" ? shared.filter : filter);
}

/** Whether a connection may read `topic` (queued and resent messages are checked again on the way out). */
export function connMayRead(conn: Peer, topic: string): boolean {
  return !conn.readAcl || conn.readAcl.allows(topic);
}

/**
 * A connection took the session: its read ACL now governs the session, and the subscriptions
 * are judged again (which ones it fully covers skip the per-message check). Messages already
 * waiting for the session are checked as they leave (delivery.ts: drainQueue, resume), since a
 * durable session's queue lives in storage.
 */
export function judgeSubscriptions(session: Session, acl: TopicAcl | null): void {
  session.readAcl = acl;
  for (const sub of session.subscriptions.values()) sub.aclCovered = filterAccess(acl, sub.filter) === "covered";
}
