// What the broker persists, in row types of its own: storage knows no session, connection or
// encoding. One implementation over the Durable Object's SQLite, one in memory (tests); both
// pass test/store-contract.ts.
import type { ProtocolVersion } from "../protocol/version";
import type { PublishProperties, QoS } from "../protocol/codec";
import type { Grant } from "../auth/grant";

/**
 * An application message as stored: stored once, referenced by `storedId` from its deliveries
 * (addDelivery sets it on the object it is given, so further deliveries of it reuse the body).
 */
export interface MessageRow {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: PublishProperties;
  /** absolute ms, from the MQTT 5 Message Expiry Interval */
  expiresAt?: number;
  storedId?: number;
}

export interface WillRow {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: PublishProperties;
  /** MQTT 5 Will Delay Interval, seconds */
  delay: number;
}

export interface SessionRow {
  clientId: string;
  version: ProtocolVersion;
  expiry: number;
  connected: boolean;
  expiresAt: number | null;
  will: WillRow | null;
  willAt: number | null;
  /** the authenticated identity the session belongs to (see Grant.identity); null: nobody's */
  owner: string | null;
  /** what authentication granted its latest connection: its rights while offline */
  grant: Grant | null;
  /** created to outlive its connection: its queue and in-flight messages are stored */
  durable: boolean;
  /** retained messages still owed to new subscriptions: each filter and the last topic sent */
  retainedBacklog: RetainedCursorRow[] | null;
}

export interface RetainedCursorRow {
  filter: string;
  after: string | null;
}

export interface SubscriptionRow {
  clientId: string;
  filter: string;
  qos: 0 | 1 | 2;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId?: number;
}

/** A stored delivery of a message to one session: queued, or sent and awaiting acknowledgement. */
export interface DeliveryRow {
  seq: number;
  clientId: string;
  msg: MessageRow;
  qos: 0 | 1 | 2;
  retain: boolean;
  state: DeliveryState;
  packetId: number | null;
  /** MQTT 5 subscription identifiers of the matching subscriptions */
  subIds: number[] | null;
  /** the shared subscription it came through ("$share/<group>/<filter>"), if any */
  share: string | null;
}

/** Queued, Sent (awaiting PUBACK/PUBREC), Released (QoS 2: PUBREC received, PUBREL sent). */
export const DeliveryState = { Queued: 0, Sent: 1, Released: 2 } as const;
export type DeliveryState = (typeof DeliveryState)[keyof typeof DeliveryState];

export interface QueueStats {
  clientId: string;
  count: number;
  bytes: number;
}

/** A chunk of packed entries owed to another shard (scale-out link, src/shards/link.ts). */
export interface ChunkRow {
  target: number;
  seq: number;
  entries: Uint8Array;
  /** failed calls that carried it */
  attempts: number;
  /** ms, the next attempt after a failure */
  nextAt: number;
}

/** Both ends of the link with one peer shard. */
export interface LinkRow {
  peer: number;
  /** sender side: the highest chunk of ours the peer acknowledged */
  ackedSeq: number;
  /** receiver side: the highest chunk of the peer's applied here (the dedup watermark) */
  appliedSeq: number;
}

/** A rule's pending send of a QoS >= 1 message (src/rules): kept until the destination takes it. */
export interface RuleSendRow {
  id: number;
  /** the rule's name */
  rule: string;
  msg: MessageRow;
  /** the publishing client, null for the HTTP API */
  clientId: string | null;
  /** ms, when the broker took the message */
  createdAt: number;
  /** failed attempts so far */
  attempts: number;
  /** ms, when it is due (again) */
  nextAt: number;
}

export interface Store {
  /** rows written since the store was made (inserts, updates, deletes): what the platform bills */
  readonly rowsWritten: number;
  /** the broker's saved event totals (broker/counters.ts), as JSON; null before the first save */
  loadEvents(): string | null;
  saveEvents(json: string): void;

  loadSessions(): SessionRow[];
  loadSubscriptions(): SubscriptionRow[];
  saveSession(row: SessionRow): void;
  clearWill(clientId: string): void;
  saveRetainedBacklog(clientId: string, backlog: RetainedCursorRow[] | null): void;
  deleteSession(clientId: string): void;

  /** a connection's inbound MQTT 5 topic aliases, when they outgrow its socket attachment */
  saveTopicAliases(clientId: string, aliases: [number, string][]): void;
  /** sets one of them (an upsert) */
  saveTopicAlias(clientId: string, alias: number, topic: string): void;
  loadTopicAliases(clientId: string): [number, string][];

  saveSubscription(row: SubscriptionRow): void;
  deleteSubscription(clientId: string, filter: string): void;

  /**
   * Stores the retained message of `msg.topic`, replacing any. `version`: the last-writer-wins
   * version of the write at K > 1 (docs/scale-out.md §6); without it the row has none (K = 1).
   */
  setRetained(msg: MessageRow, version?: number): void;
  /**
   * the version stored with the retained message of `topic`, or of its last removal made with a
   * version; null when there is neither
   */
  retainedVersion(topic: string): number | null;
  /** `version` (K > 1 only): the removal's, kept so that an older write arriving later loses to it */
  deleteRetained(topic: string, version?: number): void;
  /** retained messages whose topic starts with `prefix` (the caller matches the filter) */
  retainedWithPrefix(prefix: string): MessageRow[];
  /** up to `limit` of them in topic order, after the topic `after` (null: from the first) */
  retainedAfter(prefix: string, after: string | null, limit: number): MessageRow[];
  /** removes retained messages whose Message Expiry passed before `now` */
  deleteExpiredRetained(now: number): void;
  countRetained(): number;
  /** retained messages and the sum of their payload sizes (for the retained quota) */
  /** count and payload bytes of the retained messages; `except`: leaving out the topics starting with it */
  retainedUsage(except?: string): { count: number; bytes: number };
  /** payload size of the retained message on `topic`, null if there is none */
  retainedSize(topic: string): number | null;

  // Durable sessions: message bodies stored once, one delivery row per session.
  /** stores the body once per message object (sets msg.storedId) and adds a delivery row; returns its seq */
  addDelivery(clientId: string, msg: MessageRow, qos: 0 | 1 | 2, retain: boolean, state: DeliveryState, packetId: number | null, subIds?: number[] | null, share?: string | null): number;
  markSent(seq: number, packetId: number): void;
  markReleased(seq: number): void;
  /** removes a delivery, and its message body once no delivery refers to it */
  deleteDelivery(seq: number): void;
  /** the same for many deliveries, in one statement per chunk */
  deleteDeliveries(seqs: number[]): void;
  /** all rows in state Sent/Released, by session and seq */
  loadInflight(): DeliveryRow[];
  /** the oldest queued rows of a session */
  nextQueued(clientId: string, limit: number): DeliveryRow[];
  queueStats(): QueueStats[];
  /** drops a session's queued rows whose message expired before `now`; returns what was freed */
  dropExpiredQueued(clientId: string, now: number): { count: number; bytes: number };
  /** drops the oldest queued QoS 0 row of a session; returns its size in bytes, or null if none */
  dropOldestQos0(clientId: string): number | null;

  // Rules (src/rules): pending sends of QoS >= 1 messages to a rule's destination.
  /** stores a pending send (its own copy of the message); returns its id */
  addRuleSend(rule: string, msg: MessageRow, clientId: string | null, createdAt: number, nextAt: number): number;
  /**
   * Up to `limit` pending sends due at `now` or before, earliest first; with `maxBytes`, no more
   * than fit in that many payload bytes (the first always: rows are read one by one, not all).
   */
  dueRuleSends(now: number, limit: number, maxBytes?: number): RuleSendRow[];
  /** the earliest `nextAt` of all pending sends, null when there are none */
  nextRuleSendAt(): number | null;
  updateRuleSend(id: number, attempts: number, nextAt: number): void;
  deleteRuleSends(ids: number[]): void;
  countRuleSends(): number;

  addInboundQos2(clientId: string, packetId: number): void;
  deleteInboundQos2(clientId: string, packetId: number): void;
  loadInboundQos2(): { clientId: string; packetId: number }[];

  // Scale-out (docs/scale-out.md §2, src/shards/link.ts): the links between the shards of a namespace.
  /** stores chunk `seq` owed to shard `target` (attempts 0, due at `now`) */
  addChunk(target: number, seq: number, entries: Uint8Array, now: number): void;
  /** every chunk not yet acknowledged, by target then seq */
  loadChunks(): ChunkRow[];
  /** drops the chunks of `target` up to and including `seq` (the peer acknowledged them) */
  deleteChunksUpTo(target: number, seq: number): void;
  /** records a failed attempt on a chunk */
  updateChunkRetry(target: number, seq: number, attempts: number, nextAt: number): void;
  /** the watermarks of every peer with a row, by peer */
  loadLinks(): LinkRow[];
  /** sets the highest chunk `peer` acknowledged of ours (an upsert) */
  saveAcked(peer: number, seq: number): void;
  /** sets the highest chunk of `peer`'s applied here (an upsert) */
  saveApplied(peer: number, seq: number): void;
  /** a filter `peer` announced (idempotent) */
  addInterest(peer: number, filter: string): void;
  removeInterest(peer: number, filter: string): void;
  /** every announced filter, by peer then filter */
  loadInterest(): { peer: number; filter: string }[];
  /** the fingerprint of an exact filter `peer` announced (idempotent) */
  addInterestFp(peer: number, fp: number): void;
  removeInterestFp(peer: number, fp: number): void;
  /** calls `each` for every stored fingerprint, by peer then fingerprint (no list: there may be millions) */
  loadInterestFps(each: (peer: number, fp: number) => void): void;
  /** the number of shards this namespace was set up with (null: never set, i.e. one shard) */
  loadShardLayout(): number | null;
  saveShardLayout(k: number): void;
  /**
   * A growth of the namespace's shards under way (docs/scale-out.md §9, src/shards/grow.ts), as
   * JSON; null: none. "plan": shard 0's plan, or another shard's pause; "export": an old shard's
   * progress sending what moved.
   */
  loadReshard(part: "plan" | "export"): string | null;
  saveReshard(part: "plan" | "export", json: string | null): void;
  /** a connection tunnelled from shard `entrance` (its socket is there): its attachment as JSON (an upsert) */
  saveTunnel(id: string, entrance: number, attachment: string): void;
  deleteTunnel(id: string): void;
  loadTunnels(): TunnelRow[];
}

export interface TunnelRow {
  id: string;
  entrance: number;
  attachment: string;
}
