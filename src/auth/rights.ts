// Where topic rights meet sessions and deliveries. A subscription whose filter the read ACL fully
// covers is never checked again; a broader one ("#" under read ACL "a/#") is granted, and each
// delivery through it is checked against the ACL — live, retained, queued and wills alike.
import type { Session, Subscription } from "../session/session";
import type { Connection } from "../broker/connection";
import type { TopicAcl, FilterAccess } from "./acl";
import { parseSharedFilter } from "../topics/validate";

/** Whether a message on `topic` may go out through `sub` (the hot path: a flag test when covered). */
export function mayRead(sub: Subscription, topic: string): boolean {
  if (sub.aclCovered === true) return true;
  const s = sub.session;
  const acl = s.conn !== null ? s.conn.readAcl : s.readAcl;
  return acl === null || acl.allows(topic);
}

/** A client topic name it may publish to: never a `$` topic (`$SYS` is the broker's), then the ACL. */
export function mayPublish(conn: Connection, topic: string): boolean {
  if (topic.charCodeAt(0) === 0x24) return false;
  return conn.publishAcl === null || conn.publishAcl.allows(topic);
}

/** The read access for a subscription filter (a shared one is judged by its inner filter). */
export function filterAccess(acl: TopicAcl | null, filter: string): FilterAccess {
  if (acl === null) return "covered";
  const shared = parseSharedFilter(filter);
  return acl.access(shared && shared !== "invalid" ? shared.filter : filter);
}

/**
 * A connection took the session: its read ACL now governs the session. Existing subscriptions
 * are judged again, and messages waiting for the session that the new rights cannot read are
 * dropped (they may have been queued under another client's rights, or before a restart).
 */
export function applyReadAcl(session: Session, acl: TopicAcl | null): void {
  judgeSubscriptions(session, acl);
  if (acl === null) return;
  const queue = session.queue;
  let kept = 0;
  for (let i = 0; i < queue.length; i++) if (acl.allows(queue[i]!.msg.topic)) queue[kept++] = queue[i]!;
  queue.length = kept;
  // A QoS 2 message already released (PUBREC seen) is the client's; the others are not yet.
  for (const [id, f] of session.inflight) if (!f.released && !acl.allows(f.msg.topic)) session.inflight.delete(id);
}

/** Sets the session's read ACL and which subscriptions it fully covers (they skip the per-message check). */
export function judgeSubscriptions(session: Session, acl: TopicAcl | null): void {
  session.readAcl = acl;
  for (const sub of session.subscriptions.values()) sub.aclCovered = filterAccess(acl, sub.filter) === "covered";
}
