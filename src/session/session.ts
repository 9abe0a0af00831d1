import { MAX_PACKET_ID } from "../protocol/limits";
import type { ProtocolVersion, QoS } from "../protocol/codec";
import type { Message } from "./message";
import type { Peer } from "./peer";
import { sizeOf } from "./message";
import type { WillRow } from "../storage/store";
import type { TopicAcl } from "../auth/acl";
import type { Grant } from "../auth/grant";
import type { SharedGroup } from "../topics/trie";

export interface SubscriptionOptions {
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId?: number;
}

export interface Subscription extends SubscriptionOptions {
  session: Session;
  /** the filter as the client sent it (with `$share/<group>/` when shared) */
  filter: string;
  /** true when the read ACL covers the whole filter: deliveries skip the per-topic check */
  aclCovered?: boolean;
}

export type { Peer };

/** A will as CONNECT gave it (stored with the session as it is). */
export type Will = WillRow;

/** An outbound QoS 1/2 message sent to the client and not yet fully acknowledged. */
export interface Inflight {
  packetId: number;
  msg: Message;
  qos: 1 | 2;
  retain: boolean;
  /** true once PUBREC arrived and PUBREL was sent (QoS 2) */
  released: boolean;
  /** storage row, for a durable session */
  seq?: number;
  /** MQTT 5 subscription identifiers it carries (sent again with a re-sent PUBLISH) */
  subIds?: number[];
  /** the shared subscription group it was sent through (re-routed if this member drops) */
  group?: SharedGroup<Subscription>;
}

/** A message waiting in a non-durable session's memory queue (flow control). */
export interface Queued {
  msg: Message;
  qos: QoS;
  retain: boolean;
  bytes: number;
  subIds?: number[];
  group?: SharedGroup<Subscription>;
}

/** Where a new subscription's retained messages stand: sent up to `after` (topic order). */
export interface RetainedCursor {
  sub: Subscription;
  /** the literal start of the filter: only topics with it can match */
  prefix: string;
  after: string | null;
}

export const NEVER_EXPIRES = 0xffffffff;

/** What the broker keeps for one client id, whether or not a connection holds it now. */
export class Session {
  version: ProtocolVersion = 4;
  /** seconds; 0 = the session ends with its connection */
  expiryInterval = 0;
  conn: Peer | null = null;
  /** the identity it belongs to (Grant.identity); null: nobody's, anyone may take it */
  owner: string | null = null;
  will: Will | null = null;
  /** ms deadline of a delayed will, while one is pending */
  willAt: number | null = null;
  /** ms deadline of session expiry, while disconnected */
  expiresAt: number | null = null;
  readonly subscriptions = new Map<string, Subscription>();
  /** outbound QoS 1/2 messages awaiting acknowledgement, by packet id (change through put/takeInflight) */
  readonly inflight = new Map<number, Inflight>();
  /** their bytes (topic + payload), for `MAX_INFLIGHT_BYTES` */
  inflightBytes = 0;
  /** the queue of a non-durable session; a durable session's queue lives in storage */
  readonly queue: Queued[] = [];
  /** queued messages and their bytes (topic + payload), whichever queue holds them */
  queuedCount = 0;
  queuedBytes = 0;
  /** messages refused because the queue was full */
  dropped = 0;
  /** in-flight packet ids still to re-send after a reconnect, as the client's window allows */
  resendPending: number[] | null = null;
  /** retained messages still owed to new subscriptions, oldest subscription first */
  retainedBacklog: RetainedCursor[] | null = null;
  /** a later turn of the backlog is already asked for */
  retainedLater = false;
  /** the backlog changed since it was last stored (one write per change, see retained.ts) */
  retainedUnsaved = false;
  /** what authentication granted the latest connection (its rights apply while offline) */
  grant: Grant | null = null;
  /** inbound QoS 2 packet ids received and not yet released [MQTT-4.3.3-10] */
  readonly inboundQos2 = new Set<number>();
  /** read ACL of the session's latest connection (null: unrestricted), checked while it is offline */
  readAcl: TopicAcl | null = null;
  private lastPacketId = 0;
  /** the router's stamp: the publish in which this session last matched, and its result slot */
  matchGen = 0;
  matchSlot = 0;

  /**
   * @param durable the session was created to outlive its connection: its queue, in-flight
   * messages and inbound QoS 2 ids are written to storage so they survive restarts.
   */
  constructor(
    readonly clientId: string,
    readonly durable: boolean,
  ) {}

  /** whether the session outlives its connection now (MQTT 5 can change it at DISCONNECT) */
  get persistent(): boolean {
    return this.expiryInterval > 0;
  }

  putInflight(f: Inflight): void {
    this.inflight.set(f.packetId, f);
    this.inflightBytes += sizeOf(f.msg);
  }

  takeInflight(packetId: number): Inflight | undefined {
    const f = this.inflight.get(packetId);
    if (f) {
      this.inflight.delete(packetId);
      this.inflightBytes -= sizeOf(f.msg);
    }
    return f;
  }

  /** A packet id not in flight, cycling 1..65535 [MQTT-2.2.1-3]. Null when all are in use. */
  nextPacketId(): number | null {
    for (let tries = 0; tries < MAX_PACKET_ID; tries++) {
      this.lastPacketId = this.lastPacketId >= MAX_PACKET_ID ? 1 : this.lastPacketId + 1;
      if (!this.inflight.has(this.lastPacketId)) return this.lastPacketId;
    }
    return null;
  }
}
