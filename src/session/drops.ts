// Why the broker dropped a message, counted per namespace for the stats API and /metrics. A
// drop is rare and off the fast path; the counts are a small fixed array indexed by reason.

/** Reasons, as indexes into the counts (their names are DROP_REASONS[i]). */
export const DROP = {
  /** a session's queue was full (MAX_QUEUED_MESSAGES / MAX_QUEUED_BYTES): the new message, or the oldest QoS 0 one it displaced */
  QUEUE_FULL: 0,
  /** its Message Expiry Interval passed before it could be delivered */
  EXPIRED: 1,
  /** larger than the client's Maximum Packet Size [MQTT-3.1.2-25] */
  TOO_LARGE: 2,
  /** the session may no longer read the topic (its rights narrowed while it was queued or in flight) */
  UNREADABLE: 3,
  /** a shared group matched but no member could take it (none may read it, or none is left) */
  NO_SHARED_MEMBER: 4,
  /** a PUBLISH over MAX_PUBLISH_RATE: the connection is closed (0x96) and the message dropped */
  RATE_LIMITED: 5,
  /** a PUBLISH the publish ACL refused, or to a `$SYS` topic */
  NOT_AUTHORIZED: 6,
  /** a PUBLISH over the topic limits or the retained quota */
  LIMITS: 7,
  /** a PUBLISH whose payload is not the UTF-8 its Payload Format Indicator promised [MQTT-3.3.2-4] */
  INVALID_PAYLOAD: 8,
} as const;

/** The label value of each reason, in index order. */
export const DROP_REASONS = ["queue_full", "expired", "too_large", "unreadable", "no_shared_member", "rate_limited", "not_authorized", "limits", "invalid_payload"] as const;

export type DropReason = (typeof DROP)[keyof typeof DROP];

/** Where drops are counted: the broker's counters (absent in unit tests that do not count). */
export interface DropCounts {
  readonly drops?: Float64Array;
}

export function countDrop(ctx: DropCounts, reason: DropReason, n = 1): void {
  const d = ctx.drops;
  if (d) d[reason]! += n;
}
