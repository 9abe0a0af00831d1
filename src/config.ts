// Limits and defaults in one place. Every value can be overridden by a wrangler.toml [vars] entry
// of the same name (strings, parsed here).
import { MAX_SHARDS } from "./shards/layout";

export interface BrokerConfig {
  /** Largest MQTT packet accepted or sent, in bytes (announced as Maximum Packet Size). */
  MAX_PACKET_SIZE: number;
  /** Longest client identifier accepted, in UTF-16 units. */
  MAX_CLIENT_ID_LENGTH: number;
  /** Upper bound for a client's keep-alive in seconds (MQTT 5 Server Keep Alive); 0 = none. */
  MAX_KEEPALIVE: number;
  /**
   * Lower bound for an MQTT 5 client's keep-alive in seconds (Server Keep Alive raises a shorter
   * one, 0 stays 0): each PINGREQ wakes a hibernated object and is billed. 0 = no bound. MQTT
   * 3.1.1 has no way to tell a client, so its keep-alive stands.
   */
  MIN_KEEPALIVE: number;
  /** Session expiry for MQTT 3.1.1 persistent sessions and cap for MQTT 5, seconds. */
  MAX_SESSION_EXPIRY: number;
  /** Unacknowledged QoS 1/2 messages we send to one client (also capped by its Receive Maximum). */
  MAX_INFLIGHT: number;
  /** ...and their bytes (topic + payload); one message always fits. They are reloaded at every wake. */
  MAX_INFLIGHT_BYTES: number;
  /** Per-session queue bounds (offline, or waiting for the in-flight window). */
  MAX_QUEUED_MESSAGES: number;
  MAX_QUEUED_BYTES: number;
  /** Queue QoS 0 messages for offline persistent sessions (like Mosquitto's queue_qos0_messages). */
  QUEUE_QOS0: boolean;
  /** Unacknowledged QoS 1/2 messages we accept from a client (announced as Receive Maximum). */
  RECEIVE_MAXIMUM: number;
  /** Highest topic alias a client may use towards us (announced as Topic Alias Maximum). */
  TOPIC_ALIAS_MAXIMUM: number;
  /** Seconds a new socket may take to send CONNECT before it is closed. */
  CONNECT_TIMEOUT: number;
  /** Largest first packet (CONNECT, will included) a new socket may send, in bytes; checked as its length arrives. */
  MAX_CONNECT_PACKET_SIZE: number;
  /** Bytes a client may send behind a CONNECT that is still being verified (held until the verdict). */
  MAX_HELD_BYTES: number;
  /** Bytes held for all sockets of a namespace whose CONNECT is not accepted yet; the excess socket is closed. */
  MAX_UNCONNECTED_BYTES: number;
  /** Longest topic name or filter, in characters, and most levels (PUBLISH, SUBSCRIBE, wills). */
  MAX_TOPIC_LENGTH: number;
  MAX_TOPIC_LEVELS: number;
  /** Subscriptions one session may hold. */
  MAX_SUBSCRIPTIONS: number;
  /** Topic filters one SUBSCRIBE may carry; the excess is answered 0x97 (3.1.1: 0x80) in SUBACK. */
  MAX_FILTERS_PER_SUBSCRIBE: number;
  /**
   * Retained messages sent to one client in one turn (event), in bytes (topic + payload); the
   * rest follow in later turns, so a large backlog never stalls the namespace. 0 = no pacing.
   */
  RETAINED_BYTES_PER_TURN: number;
  /** Connected clients per namespace (one Durable Object). */
  MAX_CONNECTIONS: number;
  /** Persistent sessions per namespace, connected or not; a new one beyond is refused (0x97 / 3). */
  MAX_SESSIONS: number;
  /** Retained messages per namespace, and the sum of their payload sizes in bytes. */
  MAX_RETAINED_MESSAGES: number;
  MAX_RETAINED_BYTES: number;
  /** Inbound PUBLISH packets per second per connection (token bucket), and the burst allowed; 0 = no limit. */
  MAX_PUBLISH_RATE: number;
  PUBLISH_BURST: number;
  /**
   * Password verifications (PBKDF2 hashes) per second per namespace, and the burst; beyond them a
   * CONNECT is refused without hashing (CONNACK 0x9F / 3). 0 = no limit. See auth/throttle.ts.
   */
  AUTH_RATE: number;
  AUTH_BURST: number;
  /** Failed password verifications per second per source address (IPv6: per /64), and the burst. */
  AUTH_FAILURE_RATE: number;
  AUTH_FAILURE_BURST: number;
  /** Seconds a verified user name + password is accepted again without hashing; 0 = never. */
  AUTH_CACHE_SECONDS: number;
  /** Comma-separated Origin values allowed to open a WebSocket from a browser; empty = any. */
  ALLOWED_ORIGINS: string;
  /** Seconds between `$SYS/broker/...` updates while someone subscribes to them; 0 = no $SYS topics. */
  SYS_INTERVAL: number;
  /**
   * Seconds between saves of the billed-event totals (stats `events`, one row in the event that
   * finds them older than this); 0 = saved in every event (for measurements). What a life of the
   * object counted after its last save is lost when it hibernates.
   */
  EVENTS_SAVE_INTERVAL: number;
  /**
   * MQTT 5 Response Information for clients that ask for it: this prefix + the client id
   * (e.g. "responses/" → "responses/<client id>"). Empty: not offered.
   */
  RESPONSE_INFORMATION_PREFIX: string;
  /**
   * Lifecycle events published on `$events/...` (docs/events.md): a comma list of connected,
   * disconnected, expired, subscribed, unsubscribed, or all / none / default (the first three).
   */
  EVENTS: string;
  /** Keep a retained `$events/presence/<client id>` = online/offline for every session (docs/events.md). */
  PRESENCE_RETAINED: boolean;
  /**
   * Rules (RULES, docs/rules.md): a pending send of a QoS >= 1 message is dropped (and counted)
   * after this many failed attempts, or once it is RULES_MAX_AGE seconds old.
   */
  RULES_MAX_ATTEMPTS: number;
  RULES_MAX_AGE: number;
  /** Seconds before a rule's first retry; each further one waits twice as long, up to RULES_RETRY_MAX. */
  RULES_RETRY_BASE: number;
  RULES_RETRY_MAX: number;
  /** Pending sends stored per namespace; a message beyond is not taken for the rule (counted as overflow). */
  RULES_MAX_PENDING: number;
  /**
   * Durable Objects a namespace spans (docs/scale-out.md), 1-128. 1: one object, exactly as a
   * namespace always was (shard 0 is that object), with no link, interest or directory work.
   */
  SHARDS: number;
  /**
   * ms between the starts of two calls from one shard to another (src/shards/link.ts); -1: 10 ×
   * (SHARDS − 1), so a shard receives at most about 100 link calls a second whatever K is.
   */
  SHARD_LINK_INTERVAL_MS: number;
}

export const DEFAULTS: BrokerConfig = {
  MAX_PACKET_SIZE: 1024 * 1024,
  MAX_CLIENT_ID_LENGTH: 256,
  MAX_KEEPALIVE: 0,
  MIN_KEEPALIVE: 0,
  MAX_SESSION_EXPIRY: 7 * 24 * 3600,
  MAX_INFLIGHT: 1000,
  MAX_INFLIGHT_BYTES: 4 * 1024 * 1024,
  MAX_QUEUED_MESSAGES: 1000,
  MAX_QUEUED_BYTES: 10 * 1024 * 1024,
  QUEUE_QOS0: false,
  RECEIVE_MAXIMUM: 1024,
  TOPIC_ALIAS_MAXIMUM: 64,
  CONNECT_TIMEOUT: 10,
  MAX_CONNECT_PACKET_SIZE: 64 * 1024,
  MAX_HELD_BYTES: 100 * 1024,
  MAX_UNCONNECTED_BYTES: 8 * 1024 * 1024,
  MAX_TOPIC_LENGTH: 1024,
  MAX_TOPIC_LEVELS: 32,
  MAX_SUBSCRIPTIONS: 256,
  MAX_FILTERS_PER_SUBSCRIBE: 100,
  RETAINED_BYTES_PER_TURN: 256 * 1024,
  MAX_CONNECTIONS: 1000,
  MAX_SESSIONS: 10_000,
  MAX_RETAINED_MESSAGES: 10_000,
  MAX_RETAINED_BYTES: 16 * 1024 * 1024,
  MAX_PUBLISH_RATE: 1000,
  PUBLISH_BURST: 2000,
  AUTH_RATE: 10,
  AUTH_BURST: 20,
  AUTH_FAILURE_RATE: 0.1,
  AUTH_FAILURE_BURST: 10,
  AUTH_CACHE_SECONDS: 300,
  ALLOWED_ORIGINS: "",
  SYS_INTERVAL: 10,
  EVENTS_SAVE_INTERVAL: 60,
  RESPONSE_INFORMATION_PREFIX: "",
  EVENTS: "connected,disconnected,expired",
  PRESENCE_RETAINED: false,
  RULES_MAX_ATTEMPTS: 20,
  RULES_MAX_AGE: 24 * 3600,
  RULES_RETRY_BASE: 1,
  RULES_RETRY_MAX: 300,
  RULES_MAX_PENDING: 10_000,
  SHARDS: 1,
  SHARD_LINK_INTERVAL_MS: -1,
};

export function loadConfig(vars: Record<string, unknown> | undefined): BrokerConfig {
  const config: BrokerConfig = { ...DEFAULTS };
  if (!vars) return config;
  for (const key of Object.keys(DEFAULTS) as (keyof BrokerConfig)[]) {
    const raw = vars[key];
    if (raw === undefined || raw === null || raw === "") continue;
    if (typeof DEFAULTS[key] === "string") {
      (config as unknown as Record<string, unknown>)[key] = String(raw);
    } else if (typeof DEFAULTS[key] === "boolean") {
      (config as unknown as Record<string, unknown>)[key] = raw === true || raw === "true" || raw === "1";
    } else {
      const n = Number(raw);
      if (Number.isFinite(n) && n >= 0) (config as unknown as Record<string, unknown>)[key] = n;
    }
  }
  config.SHARDS = Math.max(1, Math.min(MAX_SHARDS, Math.floor(config.SHARDS)));
  return config;
}
