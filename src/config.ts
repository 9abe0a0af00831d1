// Limits and defaults in one place. Every value can be overridden by a wrangler.toml [vars] entry
// of the same name (strings, parsed here).

export interface BrokerConfig {
  /** Largest MQTT packet accepted or sent, in bytes (announced as Maximum Packet Size). */
  MAX_PACKET_SIZE: number;
  /** Longest client identifier accepted, in UTF-16 units. */
  MAX_CLIENT_ID_LENGTH: number;
  /** Upper bound for a client's keep-alive in seconds (MQTT 5 Server Keep Alive); 0 = none. */
  MAX_KEEPALIVE: number;
  /** Session expiry for MQTT 3.1.1 persistent sessions and cap for MQTT 5, seconds. */
  MAX_SESSION_EXPIRY: number;
  /** Unacknowledged QoS 1/2 messages we send to one client (also capped by its Receive Maximum). */
  MAX_INFLIGHT: number;
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
  /** Seconds between `$SYS/broker/...` updates while someone subscribes to them; 0 = no $SYS topics. */
  SYS_INTERVAL: number;
  /**
   * MQTT 5 Response Information for clients that ask for it: this prefix + the client id
   * (e.g. "responses/" → "responses/<client id>"). Empty: not offered.
   */
  RESPONSE_INFORMATION_PREFIX: string;
}

export const DEFAULTS: BrokerConfig = {
  MAX_PACKET_SIZE: 1024 * 1024,
  MAX_CLIENT_ID_LENGTH: 256,
  MAX_KEEPALIVE: 0,
  MAX_SESSION_EXPIRY: 7 * 24 * 3600,
  MAX_INFLIGHT: 1000,
  MAX_QUEUED_MESSAGES: 1000,
  MAX_QUEUED_BYTES: 10 * 1024 * 1024,
  QUEUE_QOS0: false,
  RECEIVE_MAXIMUM: 1024,
  TOPIC_ALIAS_MAXIMUM: 64,
  CONNECT_TIMEOUT: 10,
  SYS_INTERVAL: 10,
  RESPONSE_INFORMATION_PREFIX: "",
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
  return config;
}
