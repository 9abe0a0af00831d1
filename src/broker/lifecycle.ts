// Presence and lifecycle events (docs/events.md): the broker's own messages on `$events/...` when
// a client connects or disconnects, a session expires or a client (un)subscribes, and the retained
// presence view `$events/presence/<id>`. The one owner of their topics, JSON shapes, reason words
// and the EVENTS switch. An event costs one router match when nobody subscribes: the JSON is built
// only for a match. Events go out through the router and `deliver` like any message (ACLs, QoS,
// offline queues), at QoS 1, synchronously at the moment of the change (no deferral that a
// hibernation could lose or repeat).
import type { Connection, ConnectionEnd } from "./connection";
import type { Session } from "../session/session";
import type { Message } from "../session/message";
import type { Router } from "../topics/router";
import type { QoS, ProtocolVersion, PublishProperties } from "../protocol/codec";
import { deliver, type DeliveryContext } from "../session/delivery";
import { PRESENCE_PREFIX } from "../limits/retained-quota";

/** `$events` and `$events/...`: the broker's, never publishable by clients or the HTTP API. */
export function isEventTopic(topic: string): boolean {
  return topic.charCodeAt(0) === 0x24 /* $ */ && (topic === "$events" || topic.startsWith("$events/"));
}

export type EventName = "connected" | "disconnected" | "expired" | "subscribed" | "unsubscribed";
export type EventSwitches = Record<EventName, boolean>;

const NAMES: readonly EventName[] = ["connected", "disconnected", "expired", "subscribed", "unsubscribed"];
/** What EVENTS is when not set: client events and session expiry; subscription events are opt-in. */
export const DEFAULT_EVENTS = "connected,disconnected,expired";

/**
 * EVENTS: a comma list of event names (connected, disconnected, expired, subscribed,
 * unsubscribed) and the words `all`, `none`, `default` (= the default list), case and spaces
 * ignored, e.g. "default,subscribed,unsubscribed". Unknown words are returned to be reported and
 * otherwise ignored.
 */
export function parseEvents(value: string): { on: EventSwitches; unknown: string[] } {
  const on: EventSwitches = { connected: false, disconnected: false, expired: false, subscribed: false, unsubscribed: false };
  const unknown: string[] = [];
  for (const raw of value.split(",")) {
    const word = raw.trim().toLowerCase();
    if (word === "" || word === "none") continue;
    if (word === "all") for (const n of NAMES) on[n] = true;
    else if (word === "default") for (const n of DEFAULT_EVENTS.split(",")) on[n as EventName] = true;
    else if ((NAMES as readonly string[]).includes(word)) on[word as EventName] = true;
    else unknown.push(raw.trim());
  }
  return { on, unknown };
}

/** Client ids may hold `/`, `+`, `#`: in a topic level they are percent-encoded (and `%` itself). */
export function topicLevel(clientId: string): string {
  return /[/+#%\u0000]/.test(clientId) ? clientId.replace(/[/+#%\u0000]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`) : clientId;
}

export const eventTopic = {
  connected: (id: string) => `$events/clients/${topicLevel(id)}/connected`,
  disconnected: (id: string) => `$events/clients/${topicLevel(id)}/disconnected`,
  expired: (id: string) => `$events/sessions/${topicLevel(id)}/expired`,
  subscribed: (id: string) => `$events/subscriptions/${topicLevel(id)}/subscribed`,
  unsubscribed: (id: string) => `$events/subscriptions/${topicLevel(id)}/unsubscribed`,
  presence: (id: string) => `${PRESENCE_PREFIX}${topicLevel(id)}`,
};

export type { ConnectionEnd };

/** Reason words for the codes the broker ends a connection with; any other code is a "protocol error". */
export const SERVER_REASONS: Readonly<Record<number, string>> = {
  0x83: "internal error",
  0x8b: "server shutting down",
  0x8d: "keep-alive expired",
  0x8e: "takeover",
  0x98: "administrative disconnect",
  0xa0: "token expired", // Maximum connect time: a token's lifetime ran out
};

/** The reason of a connection's end in words (the table in docs/events.md). */
export function reasonWords(end: ConnectionEnd): string {
  switch (end.by) {
    case "socket":
      return "socket lost";
    case "restart":
      return "server restart";
    case "client":
      return end.code === 0x04 ? "disconnect with will" : end.code === 0 || end.code === null ? "normal disconnect" : "client error";
    case "server":
      return SERVER_REASONS[end.code ?? -1] ?? "protocol error";
  }
}

interface ClientFields {
  clientId: string;
  username: string | null;
  protocolVersion: ProtocolVersion;
  keepalive: number;
  sessionExpiry: number;
  time: number;
}

export interface ConnectedEvent extends ClientFields {
  event: "connected";
  cleanStart: boolean;
  sessionPresent: boolean;
}

export interface DisconnectedEvent extends ClientFields {
  event: "disconnected";
  reason: string;
  reasonCode: number | null;
  willPublished: boolean;
  willDelayed: boolean;
}

export interface ExpiredEvent {
  event: "expired";
  clientId: string;
  username: string | null;
  protocolVersion: ProtocolVersion;
  time: number;
}

export interface SubscribedEvent {
  event: "subscribed";
  clientId: string;
  username: string | null;
  subscriptions: { filter: string; qos: QoS }[];
  time: number;
}

export interface UnsubscribedEvent {
  event: "unsubscribed";
  clientId: string;
  username: string | null;
  filters: string[];
  time: number;
}

export type LifecycleEvent = ConnectedEvent | DisconnectedEvent | ExpiredEvent | SubscribedEvent | UnsubscribedEvent;

/** One entry of a client's in-memory history (the console's client detail). */
export interface HistoryEntry {
  event: "connected" | "disconnected";
  time: number;
  reason?: string;
  reasonCode?: number | null;
}

/** History kept per client, and clients kept (the least recently active are dropped first). */
export const HISTORY_PER_CLIENT = 10;
export const HISTORY_CLIENTS = 2000;

/** The event JSON as bytes (pure, for the unit tests too). */
export function eventPayload(event: LifecycleEvent): Uint8Array {
  return encoder.encode(JSON.stringify(event));
}

const encoder = new TextEncoder();
/** MQTT 5 subscribers see what the payload is; MQTT 3.1.1 ones just get the JSON. */
const EVENT_PROPERTIES: PublishProperties = { payloadFormatIndicator: true, contentType: "application/json" };
const EMPTY = new Uint8Array(0);
const ONLINE = encoder.encode("online");
const OFFLINE = encoder.encode("offline");

/** What the events need of the broker: routing and delivery, the retained store. */
export interface LifecycleContext extends DeliveryContext {
  readonly router: Router;
  /** the rules engine (RULES): rules whose filter takes `$events/...` get the events too */
  readonly rules?: { matches(topic: string): boolean; offer(msg: Message): void } | null;
  /** the namespace's other shards (K > 1): their subscribers get the events too */
  readonly shards?: { wants(topic: string): boolean; forward(msg: Message, version: number): number } | null;
}

/** The connection facts an event reads (a Connection, or what the core rebuilt for a lost one). */
type ConnFacts = Pick<Connection, "clientId" | "version" | "keepalive" | "grant">;

export class Lifecycle {
  private readonly on: EventSwitches;
  private readonly presence: boolean;
  /** events routed to at least one session or rule since the object started (for /metrics) */
  published = 0;
  private readonly histories = new Map<string, HistoryEntry[]>();

  constructor(
    private readonly ctx: LifecycleContext,
    events: string,
    presenceRetained: boolean,
    log: (message: string) => void,
  ) {
    const parsed = parseEvents(events);
    this.on = parsed.on;
    this.presence = presenceRetained;
    if (parsed.unknown.length) log(`EVENTS: unknown event names ignored: ${parsed.unknown.join(", ")} (known: ${NAMES.join(", ")}, all, none, default)`);
  }

  enabled(name: EventName): boolean {
    return this.on[name];
  }

  /** A CONNECT was accepted (after CONNACK). */
  connected(conn: ConnFacts, session: Session, cleanStart: boolean, sessionPresent: boolean): void {
    const time = this.ctx.now();
    this.remember(conn.clientId, { event: "connected", time });
    if (this.presence) this.setPresence(conn.clientId, true);
    if (!this.on.connected) return;
    this.route(eventTopic.connected(conn.clientId), () => ({
      event: "connected",
      ...clientFields(conn, session, time),
      cleanStart,
      sessionPresent,
    }));
  }

  /**
   * A connected client's connection ended and its session has had the will and expiry rules
   * applied (`ended`: the session ended with it). `willPublished`/`willDelayed`: what happened to its will.
   */
  disconnected(conn: ConnFacts, session: Session, end: ConnectionEnd, willPublished: boolean, willDelayed: boolean, ended: boolean): void {
    const time = this.ctx.now();
    const reason = reasonWords(end);
    this.remember(conn.clientId, { event: "disconnected", time, reason, reasonCode: end.code });
    if (this.presence) {
      // the retained view lives as long as the session: a session that ended leaves no entry
      if (ended) this.clearPresence(conn.clientId, true);
      else this.setPresence(conn.clientId, false);
    }
    if (!this.on.disconnected) return;
    this.route(eventTopic.disconnected(conn.clientId), () => ({
      event: "disconnected",
      ...clientFields(conn, session, time),
      reason,
      reasonCode: end.code,
      willPublished,
      willDelayed,
    }));
  }

  /** An offline session reached its expiry and was ended. */
  expired(session: Session): void {
    if (this.presence) this.clearPresence(session.clientId, false);
    if (!this.on.expired) return;
    const time = this.ctx.now();
    this.route(eventTopic.expired(session.clientId), () => ({
      event: "expired",
      clientId: session.clientId,
      username: session.grant?.username ?? null,
      protocolVersion: session.version,
      time,
    }));
  }

  /** Re-sharding: the session left for its new home; its presence entry goes with it (nothing here would clear it). */
  sessionLeft(clientId: string): void {
    const topic = eventTopic.presence(clientId);
    if (this.ctx.store.retainedSize(topic) !== null) this.ctx.store.deleteRetained(topic);
  }

  /** Re-sharding: an offline session arrived from its old home: its presence entry is kept here now. */
  sessionArrived(clientId: string): void {
    if (this.presence) this.ctx.store.setRetained({ topic: eventTopic.presence(clientId), payload: OFFLINE, qos: 1, retain: true });
  }

  /** Filters a SUBSCRIBE granted (refused ones are left out); nothing when none was. */
  subscribed(session: Session, subscriptions: { filter: string; qos: QoS }[]): void {
    if (!this.on.subscribed || subscriptions.length === 0) return;
    const time = this.ctx.now();
    this.route(eventTopic.subscribed(session.clientId), () => ({
      event: "subscribed",
      clientId: session.clientId,
      username: session.grant?.username ?? null,
      subscriptions,
      time,
    }));
  }

  /** Filters an UNSUBSCRIBE removed (ones that did not exist are left out); nothing when none was. */
  unsubscribed(session: Session, filters: string[]): void {
    if (!this.on.unsubscribed || filters.length === 0) return;
    const time = this.ctx.now();
    this.route(eventTopic.unsubscribed(session.clientId), () => ({
      event: "unsubscribed",
      clientId: session.clientId,
      username: session.grant?.username ?? null,
      filters,
      time,
    }));
  }

  /** The client's last lifecycle changes, oldest first (in memory: since the object started or woke). */
  history(clientId: string): HistoryEntry[] {
    return [...(this.histories.get(clientId) ?? [])];
  }

  private remember(clientId: string, entry: HistoryEntry): void {
    const h = this.histories.get(clientId);
    if (h) {
      this.histories.delete(clientId); // re-inserted: the Map's order is least recently active first
      if (h.length >= HISTORY_PER_CLIENT) h.shift();
      h.push(entry);
      this.histories.set(clientId, h);
      return;
    }
    if (this.histories.size >= HISTORY_CLIENTS) this.histories.delete(this.histories.keys().next().value!);
    this.histories.set(clientId, [entry]);
  }

  /**
   * Matches first, builds the JSON only for a match (a subscriber, or a rule whose filter takes
   * it): an event nobody subscribes to costs one router match (and one rules match with RULES).
   * QoS 1 (subscribers get min(1, granted)); not retained.
   */
  private route(topic: string, build: () => LifecycleEvent): void {
    const msg: Message = { topic, payload: EMPTY, qos: 1, retain: false };
    const r = this.ctx.router;
    const n = r.match(msg);
    const rules = this.ctx.rules;
    const ruled = rules != null && rules.matches(topic);
    const shards = this.ctx.shards;
    const remote = shards != null && shards.wants(topic);
    if (n === 0 && !ruled && !remote) return;
    msg.payload = eventPayload(build());
    msg.properties = EVENT_PROPERTIES;
    for (let i = 0; i < n; i++) deliver(this.ctx, r.matched[i]!, msg, r.qos[i]!, r.retain[i]!, r.subIds[i]!, r.group[i]!);
    if (remote) shards.forward(msg, 0);
    if (ruled) rules.offer(msg);
    this.published++;
  }

  /**
   * PRESENCE_RETAINED: `$events/presence/<id>` retained online/offline. One per session, so
   * bounded by the sessions, and outside the clients' retained quota (limits/retained-quota.ts).
   */
  private setPresence(clientId: string, online: boolean): void {
    const topic = eventTopic.presence(clientId);
    const msg: Message = { topic, payload: online ? ONLINE : OFFLINE, qos: 1, retain: true };
    this.ctx.store.setRetained(msg);
    this.routePresence(msg);
  }

  /** The session ended: its entry goes (`announce`: subscribers are told "offline" first). */
  private clearPresence(clientId: string, announce: boolean): void {
    const topic = eventTopic.presence(clientId);
    const store = this.ctx.store;
    if (store.retainedSize(topic) !== null) store.deleteRetained(topic);
    if (announce) this.routePresence({ topic, payload: OFFLINE, qos: 1, retain: false });
  }

  private routePresence(msg: Message): void {
    const r = this.ctx.router;
    const n = r.match(msg);
    for (let i = 0; i < n; i++) deliver(this.ctx, r.matched[i]!, msg, r.qos[i]!, r.retain[i]!, r.subIds[i]!, r.group[i]!);
    const rules = this.ctx.rules;
    const ruled = rules != null && rules.matches(msg.topic);
    if (ruled) rules.offer(msg);
    if (n > 0 || ruled) this.published++;
  }
}

function clientFields(conn: ConnFacts, session: Session, time: number): ClientFields {
  return {
    clientId: conn.clientId,
    username: conn.grant.username ?? null,
    protocolVersion: conn.version,
    keepalive: conn.keepalive,
    sessionExpiry: session.expiryInterval,
    time,
  };
}
