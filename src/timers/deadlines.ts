// Deadline arithmetic, pure: what the next alarm time is. The broker keeps deadlines in memory
// (keep-alive from last-seen times, will and expiry times on sessions) and arms one alarm.

export interface ConnectionDeadlines {
  readonly state: string;
  readonly openedAt: number;
  /** keep-alive deadline, null when keep-alive is off */
  readonly deadline: number | null;
  /** when the token it connected with expires (ms), null when none */
  readonly tokenDeadline?: number | null;
}

export interface SessionDeadlines {
  readonly conn: unknown;
  readonly willAt: number | null;
  readonly expiresAt: number | null;
}

/** Keep-alive deadline: 1.5 × keep-alive seconds after the last packet; null when disabled. */
export function keepAliveDeadline(lastSeen: number, keepaliveSeconds: number): number | null {
  return keepaliveSeconds > 0 ? lastSeen + keepaliveSeconds * 1500 : null;
}

/** The earliest pending deadline, or null when nothing is pending. */
export function nextDeadline(
  connections: Iterable<ConnectionDeadlines>,
  sessions: Iterable<SessionDeadlines>,
  connectTimeoutMs: number,
): number | null {
  let next = Infinity;
  for (const c of connections) {
    const d = c.state === "awaiting-connect" ? c.openedAt + connectTimeoutMs : c.deadline;
    if (d !== null && d < next) next = d;
    const t = c.tokenDeadline;
    if (t != null && t < next) next = t;
  }
  for (const s of sessions) {
    if (s.willAt !== null && s.willAt < next) next = s.willAt;
    if (!s.conn && s.expiresAt !== null && s.expiresAt < next) next = s.expiresAt;
  }
  return next === Infinity ? null : next;
}
