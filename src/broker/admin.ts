// What the HTTP API and the RPC entry point can do to one namespace, over the pure broker core.
// Inputs are validated before they get here (src/api/input.ts); results are plain data that
// survive Durable Object RPC (structured clone).
import { connectionOf } from "./connection";
import type { BrokerCore } from "./core";
export { namespaceStats, type NamespaceStats } from "./stats";
import { isExpired, setProperties, type Message } from "../session/message";
import { NEVER_EXPIRES } from "../session/session";
import type { ProtocolVersion, PublishProperties, QoS } from "../protocol/codec";
import { asBuffer } from "../protocol/codec";
import { ProtocolError } from "../protocol/errors";
import { RC } from "../protocol/reason-codes";
import { literalPrefix, topicMatches, withinTopicLimits } from "../topics/validate";

/** A message from outside MQTT; the payload may arrive as a plain Uint8Array (RPC drops Buffer). */
export interface ExternalMessage {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: PublishProperties;
}

export interface ClientInfo {
  clientId: string;
  /** presence: a connection holds the session now, or the session waits offline */
  status: "online" | "offline";
  protocolVersion: ProtocolVersion;
  /** online: when the connection opened and last sent a packet (ms) */
  connectedAt?: number;
  lastSeen?: number;
  keepalive?: number;
  /** session expiry interval in seconds (0: ends with the connection) */
  sessionExpiry: number;
  /** offline: when the session expires (ms; absent: never) */
  expiresAt?: number;
  subscriptions: { filter: string; qos: QoS }[];
  /** messages waiting for the client, sent but unacknowledged, and refused because the queue was full */
  queued: number;
  inflight: number;
  dropped: number;
  hasWill: boolean;
}


export interface RetainedMessage {
  topic: string;
  qos: QoS;
  payload: Uint8Array;
  properties?: PublishProperties;
  /** ms, from the Message Expiry Interval */
  expiresAt?: number;
}

/** How an external publish went: how many sessions matched, or why it was refused (an HTTP status). */
export type PublishOutcome = { matched: number } | { refused: string; status: number };

/**
 * Routes a message exactly like an MQTT PUBLISH, under the same limits: the topic limits and
 * the retained quota (booked when it fits), as publish.ts applies them to clients.
 */
export function publishExternal(core: BrokerCore, m: ExternalMessage): PublishOutcome {
  const config = core.config;
  if (!withinTopicLimits(m.topic, config.MAX_TOPIC_LENGTH, config.MAX_TOPIC_LEVELS)) {
    return { refused: `topic exceeds the topic limits (MAX_TOPIC_LENGTH ${config.MAX_TOPIC_LENGTH}, MAX_TOPIC_LEVELS ${config.MAX_TOPIC_LEVELS})`, status: 400 };
  }
  if (m.retain && !core.retainedQuota.admit(m.topic, m.payload.byteLength)) {
    return { refused: "retained message quota exceeded (MAX_RETAINED_MESSAGES, MAX_RETAINED_BYTES): nothing was stored or delivered", status: 507 };
  }
  const msg: Message = { topic: m.topic, payload: asBuffer(m.payload), qos: m.qos, retain: m.retain };
  if (m.properties) {
    const properties = { ...m.properties };
    // mqtt-packet and the store recognise binary properties as Buffers
    if (properties.correlationData) properties.correlationData = asBuffer(properties.correlationData);
    setProperties(msg, properties, core.now());
  }
  return { matched: core.publish(msg) };
}

export function listClients(core: BrokerCore): ClientInfo[] {
  const out: ClientInfo[] = [];
  for (const s of core.sessions.values()) {
    const info: ClientInfo = {
      clientId: s.clientId,
      status: s.conn ? "online" : "offline",
      protocolVersion: s.version,
      sessionExpiry: s.expiryInterval,
      subscriptions: [...s.subscriptions.values()].map((sub) => ({ filter: sub.filter, qos: sub.qos })),
      queued: s.queuedCount,
      inflight: s.inflight.size,
      dropped: s.dropped,
      hasWill: s.will !== null,
    };
    const conn = connectionOf(s);
    if (conn) {
      info.connectedAt = conn.openedAt;
      info.lastSeen = conn.lastSeen;
      info.keepalive = conn.keepalive;
    } else if (s.expiresAt !== null) {
      info.expiresAt = s.expiresAt;
    }
    out.push(info);
  }
  return out.sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0));
}

/** One client's session in detail (GET /api/<ns>/clients/<id>, BrokerService.client). */
export interface ClientDetail {
  clientId: string;
  /** a connection holds the session now */
  connected: boolean;
  protocolVersion: ProtocolVersion;
  /** connected: the keep-alive it asked for (seconds), when the connection opened (ms) */
  keepalive?: number;
  connectedAt?: number;
  /**
   * ms: connected, the last packet received (to within the keep-alive clock's resolution);
   * offline, when its connection ended (null when that is unknown: a session that never expires)
   */
  lastSeen: number | null;
  /** session expiry interval in seconds (0: ends with the connection; 4294967295: never) */
  sessionExpiry: number;
  /** offline: when the session expires (ms; absent: never) */
  expiresAt?: number;
  subscriptions: { filter: string; qos: QoS; options: { noLocal: boolean; retainAsPublished: boolean; retainHandling: 0 | 1 | 2; subscriptionId?: number } }[];
  /** waiting for the client: messages and bytes (topic + payload) */
  queued: { messages: number; bytes: number };
  /** QoS 1/2 sent and not yet acknowledged */
  inflight: { messages: number; bytes: number };
  /** messages refused because its queue was full */
  dropped: number;
  hasWill: boolean;
  /** the lifecycle history (connects, disconnects, ...) from the lifecycle-events module (broker/lifecycle.ts) */
  history: unknown[];
}

export function clientDetail(core: BrokerCore, clientId: string): ClientDetail | null {
  const s = core.sessions.get(clientId);
  if (!s) return null;
  const conn = connectionOf(s);
  const detail: ClientDetail = {
    clientId: s.clientId,
    connected: conn !== null && conn.state === "connected",
    protocolVersion: s.version,
    lastSeen: null,
    sessionExpiry: s.expiryInterval,
    subscriptions: [...s.subscriptions.values()].map((sub) => {
      const options: ClientDetail["subscriptions"][number]["options"] = { noLocal: sub.noLocal, retainAsPublished: sub.retainAsPublished, retainHandling: sub.retainHandling };
      if (sub.subscriptionId !== undefined) options.subscriptionId = sub.subscriptionId;
      return { filter: sub.filter, qos: sub.qos, options };
    }),
    queued: { messages: s.queuedCount, bytes: s.queuedBytes },
    inflight: { messages: s.inflight.size, bytes: s.inflightBytes },
    dropped: s.dropped,
    hasWill: s.will !== null,
    history: core.lifecycle.history(s.clientId),
  };
  if (conn) {
    detail.keepalive = conn.keepalive;
    detail.connectedAt = conn.openedAt;
    detail.lastSeen = conn.lastSeen;
  } else if (s.expiresAt !== null) {
    detail.expiresAt = s.expiresAt;
    // the expiry clock started when the connection ended
    if (s.expiryInterval !== NEVER_EXPIRES) detail.lastSeen = s.expiresAt - s.expiryInterval * 1000;
  }
  return detail;
}

/** Retained messages matching `filter`, at most `limit` of them, in topic order. */
const RETAINED_PAGE = 500;

export function listRetained(core: BrokerCore, filter: string, limit: number): { messages: RetainedMessage[]; truncated: boolean } {
  const now = core.now();
  const messages: RetainedMessage[] = [];
  const prefix = literalPrefix(filter);
  // a page at a time in topic order, as the retained backlog reads them (session/retained.ts)
  for (let after: string | null = null; ; ) {
    const page = core.store.retainedAfter(prefix, after, RETAINED_PAGE);
    for (const msg of page) {
      after = msg.topic;
      if (!topicMatches(filter, msg.topic) || isExpired(msg, now)) continue;
      if (messages.length === limit) return { messages, truncated: true };
      const r: RetainedMessage = { topic: msg.topic, qos: msg.qos, payload: msg.payload };
      if (msg.properties) r.properties = msg.properties;
      if (msg.expiresAt !== undefined) r.expiresAt = msg.expiresAt;
      messages.push(r);
    }
    if (page.length < RETAINED_PAGE) return { messages, truncated: false };
  }
}

/** Removes a retained message without publishing anything; returns whether there was one. */
export function deleteRetained(core: BrokerCore, topic: string): boolean {
  if (core.shards) return removeRetained(core, topic, null).deleted;
  if (core.store.retainedSize(topic) === null) return false;
  core.admitRetained(topic, 0); // a deletion: the retained quota's counters follow
  core.store.deleteRetained(topic);
  return true;
}

/**
 * Several shards: one removal (the API's) on each shard with one version, made by the first shard
 * asked (`version` null), so that every shard decides alike about a copy still on its way: an
 * older one loses to the removal everywhere, a newer one wins everywhere. A newer write already
 * here stands. Returns whether this shard had the message, and the version.
 */
export function removeRetained(core: BrokerCore, topic: string, version: number | null): { deleted: boolean; version: number } {
  const stored = core.store.retainedVersion(topic);
  const v = version ?? core.shards!.retainedVersion(core.now(), stored);
  if (stored !== null && stored > v) return { deleted: false, version: v };
  const had = core.store.retainedSize(topic) !== null;
  if (had) core.admitRetained(topic, 0);
  core.store.deleteRetained(topic, v);
  return { deleted: had, version: v };
}

/**
 * Ends a client's connection like a server-side failure would: MQTT 5 clients get DISCONNECT
 * 0x98 (administrative action), and the will is published. Returns false when not connected.
 */
export function disconnectClient(core: BrokerCore, clientId: string): boolean {
  const session = core.sessions.get(clientId);
  const conn = session ? connectionOf(session) : null;
  if (!conn) return false;
  core.fail(conn, new ProtocolError(RC.ADMINISTRATIVE_ACTION, "disconnected by an administrator"));
  return true;
}

