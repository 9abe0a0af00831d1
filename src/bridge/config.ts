// BRIDGES ([vars], JSON): the bridges to other MQTT brokers. Parsed here, in one pure function, by
// both the namespace object (which starts its bridges), the bridge objects and the HTTP API. A bad
// entry is reported (status API, log) and left out; the others still run. Nothing here throws.
import { isValidTopicFilter } from "../topics/validate";

export type QoS = 0 | 1 | 2;

/** One `topic` line, like Mosquitto's: a filter on one side, republished under `prefix` on the other. */
export interface TopicRule {
  filter: string;
  /** put in front of the topic on the other side ("" = same topic) */
  prefix: string;
  /** the most QoS used: the subscription's QoS on the source side */
  qos: QoS;
  /** keep the retain flag across the bridge (default true, as Mosquitto) */
  retain: boolean;
}

export interface BridgeConfig {
  name: string;
  /** the local namespace bridged */
  namespace: string;
  /** the remote address as configured (without credentials), for the status */
  url: string;
  transport: "tcp" | "tls" | "ws" | "wss";
  host: string;
  port: number;
  /** ws/wss: the path (and query) of the upgrade request */
  path: string;
  clientId: string;
  username?: string;
  /** the password itself, or the name of the Worker secret that holds it */
  password?: string;
  passwordSecret?: string;
  /** seconds; 0 = none. A v5 remote's Server Keep Alive replaces it. */
  keepalive: number;
  version: 4 | 5;
  /** clean session (3.1.1) / clean start with no session expiry (5) on the remote */
  clean: boolean;
  /** MQTT 5 remote: Session Expiry Interval in seconds when not clean */
  sessionExpiry: number;
  /** MQTT 3.1.1 remote: set the bridge bit (0x80) in the protocol version, as Mosquitto's try_private */
  tryPrivate: boolean;
  out: TopicRule[];
  in: TopicRule[];
  /** reconnect delay bounds, seconds: doubles from min up to max after each failed attempt */
  reconnectMin: number;
  reconnectMax: number;
  /** unacknowledged QoS 1/2 messages in flight each way */
  maxInflight: number;
}

export interface BridgesConfig {
  bridges: BridgeConfig[];
  /** one line per problem; the bridges named in them are not run */
  errors: string[];
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const DEFAULT_PORTS = { tcp: 1883, tls: 8883, ws: 80, wss: 443 } as const;
const TRANSPORTS: Record<string, BridgeConfig["transport"]> = { "mqtt:": "tcp", "mqtts:": "tls", "ws:": "ws", "wss:": "wss" };
const KNOWN = new Set([
  "name", "namespace", "url", "address", "clientId", "username", "password", "passwordSecret", "keepalive", "version",
  "protocolVersion", "clean", "cleanSession", "sessionExpiry", "tryPrivate", "out", "in", "reconnectMin", "reconnectMax", "maxInflight",
]);

/** Parsed once per text: every object start and API call reads the same string. */
let cache: { text: string; parsed: BridgesConfig } | null = null;

export function parseBridges(raw: unknown): BridgesConfig {
  if (raw === undefined || raw === null || (typeof raw === "string" && raw.trim() === "")) return { bridges: [], errors: [] };
  const text = typeof raw === "string" ? raw : JSON.stringify(raw);
  if (cache?.text === text) return cache.parsed;
  const parsed = parse(text);
  cache = { text, parsed };
  return parsed;
}

function parse(text: string): BridgesConfig {
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch (e) {
    return { bridges: [], errors: [`BRIDGES is not valid JSON: ${(e as Error).message}`] };
  }
  if (!Array.isArray(list)) return { bridges: [], errors: ["BRIDGES must be a JSON array of bridges"] };
  const bridges: BridgeConfig[] = [];
  const errors: string[] = [];
  const names = new Set<string>();
  list.forEach((entry, i) => {
    const label = `BRIDGES[${i}]${isObject(entry) && typeof entry.name === "string" ? ` (${JSON.stringify(entry.name.slice(0, 64))})` : ""}`;
    try {
      const b = bridgeOf(entry);
      if (names.has(b.name)) throw new Error(`the name "${b.name}" is used twice`);
      names.add(b.name);
      bridges.push(b);
    } catch (e) {
      errors.push(`${label}: ${(e as Error).message}`);
    }
  });
  return { bridges, errors };
}

function bridgeOf(e: unknown): BridgeConfig {
  if (!isObject(e)) throw new Error("must be an object");
  for (const key of Object.keys(e)) if (!KNOWN.has(key)) throw new Error(`unknown field "${key.slice(0, 64)}"`);
  const name = e.name;
  if (typeof name !== "string" || !NAME.test(name)) throw new Error("name: 1-64 characters of A-Z a-z 0-9 _ . - required");
  const namespace = e.namespace ?? "default";
  if (typeof namespace !== "string" || !NAME.test(namespace)) throw new Error("namespace: 1-64 characters of A-Z a-z 0-9 _ . -");
  const address = e.url ?? e.address;
  if (typeof address !== "string") throw new Error('url: the remote address is required, e.g. "mqtt://broker.example.com:1883"');
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw new Error(`url: not a URL: ${JSON.stringify(address.slice(0, 200))}`);
  }
  const transport = TRANSPORTS[url.protocol];
  if (!transport) throw new Error(`url: use mqtt://, mqtts://, ws:// or wss:// (not ${url.protocol})`);
  if (!url.hostname) throw new Error("url: no host");
  if (url.username || url.password) throw new Error("url: put credentials in username and password/passwordSecret, not in the URL");
  const port = url.port ? Number(url.port) : DEFAULT_PORTS[transport];
  const version = e.version ?? e.protocolVersion ?? 4;
  if (version !== 4 && version !== 5) throw new Error("version: 4 (MQTT 3.1.1) or 5");
  const clientId = e.clientId ?? `bridge-${name}`;
  if (typeof clientId !== "string" || clientId === "" || clientId.length > 256) throw new Error("clientId: a non-empty string of at most 256 characters");
  const b: BridgeConfig = {
    name,
    namespace,
    url: `${url.protocol}//${url.host}${transport === "ws" || transport === "wss" ? url.pathname + url.search : ""}`,
    transport,
    host: url.hostname.replace(/^\[|\]$/g, ""),
    port,
    path: (url.pathname || "/") + url.search,
    clientId,
    keepalive: num(e.keepalive, "keepalive", 60, 0, 65535),
    version,
    clean: bool(e.clean ?? e.cleanSession, "clean", false),
    sessionExpiry: num(e.sessionExpiry, "sessionExpiry", 86400, 0, 0xffffffff),
    tryPrivate: bool(e.tryPrivate, "tryPrivate", true),
    out: rules(e.out, "out"),
    in: rules(e.in, "in"),
    reconnectMin: num(e.reconnectMin, "reconnectMin", 1, 0.05, 3600),
    reconnectMax: num(e.reconnectMax, "reconnectMax", 60, 0.05, 86400),
    maxInflight: num(e.maxInflight, "maxInflight", 100, 1, 65535),
  };
  if (b.reconnectMax < b.reconnectMin) throw new Error("reconnectMax must not be below reconnectMin");
  if (b.out.length + b.in.length === 0) throw new Error('no topic rules: give "out" and/or "in"');
  if (e.username !== undefined) {
    if (typeof e.username !== "string") throw new Error("username: a string");
    b.username = e.username;
  }
  if (e.password !== undefined && e.passwordSecret !== undefined) throw new Error("give password or passwordSecret, not both");
  if (e.password !== undefined) {
    if (typeof e.password !== "string") throw new Error("password: a string (or passwordSecret: the name of a Worker secret)");
    b.password = e.password;
  }
  if (e.passwordSecret !== undefined) {
    if (typeof e.passwordSecret !== "string" || !SECRET_NAME.test(e.passwordSecret)) throw new Error("passwordSecret: the name of a Worker secret");
    b.passwordSecret = e.passwordSecret;
  }
  return b;
}

function rules(value: unknown, field: string): TopicRule[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new Error(`${field}: an array of {"filter", "prefix", "qos", "retain"}`);
  return value.map((r, i) => {
    const at = `${field}[${i}]`;
    if (!isObject(r)) throw new Error(`${at}: an object {"filter", "prefix", "qos", "retain"}`);
    for (const key of Object.keys(r)) if (!["filter", "prefix", "qos", "retain"].includes(key)) throw new Error(`${at}: unknown field "${key.slice(0, 64)}"`);
    if (typeof r.filter !== "string" || !isValidTopicFilter(r.filter)) throw new Error(`${at}.filter: a valid topic filter is required`);
    if (r.filter.startsWith("$share/")) throw new Error(`${at}.filter: a shared subscription cannot be bridged`);
    const prefix = r.prefix ?? "";
    if (typeof prefix !== "string" || /[+#\u0000]/.test(prefix) || prefix.startsWith("$")) {
      throw new Error(`${at}.prefix: a topic prefix without wildcards, not starting with $ (e.g. "site-1/")`);
    }
    const qos = r.qos ?? 1;
    if (qos !== 0 && qos !== 1 && qos !== 2) throw new Error(`${at}.qos: 0, 1 or 2`);
    return { filter: r.filter, prefix, qos, retain: bool(r.retain, `${at}.retain`, true) };
  });
}

function num(value: unknown, field: string, dflt: number, min: number, max: number): number {
  if (value === undefined) return dflt;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) throw new Error(`${field}: a number from ${min} to ${max}`);
  return value;
}

function bool(value: unknown, field: string, dflt: boolean): boolean {
  if (value === undefined) return dflt;
  if (typeof value !== "boolean") throw new Error(`${field}: true or false`);
  return value;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The password to send: the value, or the Worker secret it names (an error when that is unset). */
export function passwordOf(b: BridgeConfig, env: Record<string, unknown>): string | undefined {
  if (b.passwordSecret === undefined) return b.password;
  const value = env[b.passwordSecret];
  if (typeof value !== "string") throw new Error(`the secret ${b.passwordSecret} (passwordSecret) is not set`);
  return value;
}
