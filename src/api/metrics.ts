// The namespaces' figures (the stats API's NamespaceStats) in the Prometheus text exposition
// format 0.0.4: `# HELP` and `# TYPE` once per metric family, then its samples of every
// namespace, each labelled `namespace="..."`. Counters end in `_total` (OpenMetrics' rule too).
// The bridges' families (mqtt_bridge_*) come from the bridge status (GET /api/<ns>/bridges), and
// only for a namespace that has bridges (or when BRIDGES has errors: mqtt_bridge_config_errors).
// Pure: no I/O, so it is unit-tested alone (test/unit/metrics.test.ts).
import type { NamespaceStats } from "../broker/admin";
import type { MergedStats, ShardFigures } from "../broker/merge";
import type { BridgeReport } from "../bridge/start";
import { DROP_REASONS } from "../session/drops";
import { InputError, namespaceOf } from "./input";

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
/** how many namespaces one /metrics request may ask for */
export const MAX_METRICS_NAMESPACES = 50;

/** The namespaces a /metrics request names, checked, without repeats, in the order given. */
export function metricsNamespaces(query: URLSearchParams): string[] {
  const named: string[] = [];
  for (const [key, value] of query) {
    if (key === "namespace") named.push(value.trim());
    else if (key === "namespaces") named.push(...value.split(",").map((n) => n.trim()));
  }
  if (named.length === 0) return ["default"];
  const unique = [...new Set(named.map((n) => namespaceOf(n)))];
  if (unique.length > MAX_METRICS_NAMESPACES) throw new InputError(`too many namespaces: at most ${MAX_METRICS_NAMESPACES} per request`);
  return unique;
}


type Labels = Record<string, string>;
type Sample = [labels: Labels, value: number];

interface Family<T = NamespaceStats> {
  name: string;
  type: "counter" | "gauge";
  help: string;
  samples(s: T): Sample[];
}

/** What bridgeStatus (src/bridge/start.ts) answers for a namespace: its bridges and the BRIDGES errors. */
export interface BridgesView {
  bridges: readonly BridgeReport[];
  errors: readonly string[];
}

const QOS = ["0", "1", "2"] as const;
const byQos = (values: number[]): Sample[] => QOS.map((qos, i) => [{ qos }, values[i] ?? 0]);
const one = (value: number): Sample[] => [[{}, value]];
/** the `outcome` label of mqtt_rule_messages_total: RuleCounters' message counts */
export const RULE_OUTCOMES = ["matched", "delivered", "dropped", "expired", "lost", "overflow", "rejected"] as const;

/** Every metric, in output order (docs/metrics.md has the same table). */
export const FAMILIES: readonly Family[] = [
  { name: "mqtt_uptime_seconds", type: "gauge", help: "Seconds since the namespace's object started (or woke from hibernation): the counters not named mqtt_events_* count from then.", samples: (s) => one(s.uptime) },
  { name: "mqtt_connections", type: "gauge", help: "Clients connected now.", samples: (s) => one(s.clients.connected) },
  { name: "mqtt_sessions", type: "gauge", help: "Sessions, connected or not.", samples: (s) => one(s.sessions.total) },
  { name: "mqtt_sessions_persistent", type: "gauge", help: "Sessions kept after their connection ends (session expiry > 0).", samples: (s) => one(s.sessions.persistent) },
  { name: "mqtt_subscriptions", type: "gauge", help: "Subscriptions of all sessions.", samples: (s) => one(s.subscriptions) },
  { name: "mqtt_retained_messages", type: "gauge", help: "Retained messages stored.", samples: (s) => one(s.retained) },
  { name: "mqtt_retained_bytes", type: "gauge", help: "Payload bytes of the retained messages.", samples: (s) => one(s.retainedBytes) },
  { name: "mqtt_messages_received_total", type: "counter", help: "Application messages published into the broker (client PUBLISH, wills, HTTP API, RPC), by QoS.", samples: (s) => byQos(s.messagesByQos.received) },
  { name: "mqtt_messages_sent_total", type: "counter", help: "PUBLISH packets sent to clients, by QoS.", samples: (s) => byQos(s.messagesByQos.sent) },
  { name: "mqtt_payload_bytes_received_total", type: "counter", help: "Payload bytes of the messages received, by QoS.", samples: (s) => byQos(s.payloadBytesByQos.received) },
  { name: "mqtt_payload_bytes_sent_total", type: "counter", help: "Payload bytes of the PUBLISH packets sent, by QoS.", samples: (s) => byQos(s.payloadBytesByQos.sent) },
  { name: "mqtt_bytes_received_total", type: "counter", help: "WebSocket bytes received (all MQTT packets).", samples: (s) => one(s.bytes.received) },
  { name: "mqtt_bytes_sent_total", type: "counter", help: "WebSocket bytes sent (all MQTT packets).", samples: (s) => one(s.bytes.sent) },
  {
    name: "mqtt_messages_dropped_total",
    type: "counter",
    help: "Messages dropped, by reason.",
    samples: (s) => DROP_REASONS.map((reason) => [{ reason }, s.dropped[reason] ?? 0]),
  },
  { name: "mqtt_queued_messages", type: "gauge", help: "Messages waiting in the sessions' queues.", samples: (s) => one(s.queued.messages) },
  { name: "mqtt_queued_bytes", type: "gauge", help: "Bytes (topic + payload) waiting in the sessions' queues.", samples: (s) => one(s.queued.bytes) },
  { name: "mqtt_queued_messages_max", type: "gauge", help: "Messages waiting in the longest session queue.", samples: (s) => one(s.queued.maxPerSession) },
  { name: "mqtt_inflight_messages", type: "gauge", help: "QoS 1/2 messages sent and not yet acknowledged.", samples: (s) => one(s.inflight) },
  { name: "mqtt_auth_failures_total", type: "counter", help: "CONNECTs refused for their credentials or rights.", samples: (s) => one(s.authFailures) },
  {
    name: "mqtt_lifecycle_events_total",
    type: "counter",
    help: "Lifecycle events delivered to at least one subscriber or rule.",
    samples: (s) => (s.lifecycleEvents === undefined ? [] : one(s.lifecycleEvents)),
  },
  // the rules engine (RULES, docs/rules.md): absent whole when the namespace has no rules
  { name: "mqtt_rule_pending", type: "gauge", help: "Stored rule sends not yet confirmed (all rules).", samples: (s) => (s.rules ? one(s.rules.pending) : []) },
  { name: "mqtt_rule_sending", type: "gauge", help: "Rule sends under way now (all rules).", samples: (s) => (s.rules ? one(s.rules.sending) : []) },
  {
    name: "mqtt_rule_messages_total",
    type: "counter",
    help: "Messages of each rule, by outcome: matched its filter, delivered, dropped after the retries, expired, lost (QoS 0), overflow (RULES_MAX_PENDING), rejected by the destination.",
    samples: (s) => (s.rules ? s.rules.rules.flatMap((r) => RULE_OUTCOMES.map((outcome): Sample => [{ rule: r.name, outcome }, r[outcome]])) : []),
  },
  {
    name: "mqtt_rule_failed_sends_total",
    type: "counter",
    help: "Sends of each rule that failed (error, non-2xx, timeout); one send may carry many messages.",
    samples: (s) => (s.rules ? s.rules.rules.map((r): Sample => [{ rule: r.name }, r.failedSends]) : []),
  },
  // the billed events, accumulated across the object's lives (counters.ts EventTotals)
  { name: "mqtt_events_since_seconds", type: "gauge", help: "Unix time the billed-event counters (mqtt_events_*) count from.", samples: (s) => one(s.events.since / 1000) },
  { name: "mqtt_events_websocket_messages_total", type: "counter", help: "WebSocket messages received (billed as 1/20 request each).", samples: (s) => one(s.events.websocketMessages) },
  { name: "mqtt_events_rpc_total", type: "counter", help: "RPC calls into the namespace's object (HTTP API, BrokerService, /metrics).", samples: (s) => one(s.events.rpc) },
  { name: "mqtt_events_http_total", type: "counter", help: "HTTP requests to the object (WebSocket upgrades).", samples: (s) => one(s.events.http) },
  { name: "mqtt_events_alarms_total", type: "counter", help: "Alarm runs.", samples: (s) => one(s.events.alarms) },
  { name: "mqtt_events_wakeups_total", type: "counter", help: "Object wake-ups with live sockets or a pending alarm (after hibernation or eviction).", samples: (s) => one(s.events.wakeups) },
  { name: "mqtt_events_awake_seconds_total", type: "counter", help: "Seconds the object was needed in memory.", samples: (s) => one(s.events.awakeMs / 1000) },
  { name: "mqtt_events_rows_written_total", type: "counter", help: "SQLite rows written.", samples: (s) => one(s.events.rowsWritten) },
  // a namespace over several shards (SHARDS, docs/scale-out.md): each shard's own figures, labelled `shard`
  { name: "mqtt_shard_connections", type: "gauge", help: "Clients connected now, per shard of the namespace.", samples: (s) => perShard(s, (sh) => sh.connected) },
  { name: "mqtt_shard_sessions", type: "gauge", help: "Sessions held, per shard.", samples: (s) => perShard(s, (sh) => sh.sessions) },
  { name: "mqtt_shard_events_websocket_messages_total", type: "counter", help: "WebSocket messages received, per shard (each object's load against its limit).", samples: (s) => perShard(s, (sh) => sh.events.websocketMessages) },
  { name: "mqtt_shard_events_rpc_total", type: "counter", help: "RPC calls into each shard, link calls from the other shards included.", samples: (s) => perShard(s, (sh) => sh.events.rpc) },
  { name: "mqtt_shard_forwarded_in_total", type: "counter", help: "Message copies each shard applied from the other shards.", samples: (s) => perShard(s, (sh) => sh.forwardedIn) },
  { name: "mqtt_shard_forwarded_out_total", type: "counter", help: "Message copies each shard sent to the other shards.", samples: (s) => perShard(s, (sh) => sh.forwardedCopies) },
  { name: "mqtt_shard_forwarded_unmatched_total", type: "counter", help: "Copies from other shards that matched no session here (an interest fingerprint's false positive, or a subscriber gone while the copy travelled).", samples: (s) => perShard(s, (sh) => sh.forwardedUnmatched) },
];

/** one sample per shard (none at one shard) */
function perShard(s: NamespaceStats, value: (sh: ShardFigures) => number): Sample[] {
  const shards = (s as MergedStats).shards;
  return shards ? shards.map((sh): Sample => [{ shard: String(sh.shard) }, value(sh)]) : [];
}

type BridgeSample = (b: Extract<BridgeReport, { connected: unknown }>) => Sample[];
/** One bridge's samples, labelled `bridge`; a bridge object that could not report has only mqtt_bridge_up (0). */
const perBridge =
  (f: BridgeSample, whenFailed: (name: string) => Sample[] = () => []) =>
  (v: BridgesView): Sample[] =>
    v.bridges.flatMap((b) => ("connected" in b ? f(b) : whenFailed(b.name)).map(([labels, value]): Sample => [{ bridge: b.name, ...labels }, value]));
const SIDES = ["remote", "local"] as const;

/** The bridges' families (docs/metrics.md, docs/bridges.md), after FAMILIES, for the namespaces that have bridges. */
export const BRIDGE_FAMILIES: readonly Family<BridgesView>[] = [
  {
    name: "mqtt_bridge_up",
    type: "gauge",
    help: "1 while the bridge's connection is up (CONNACK received), by side: remote (the other broker) and local (the namespace); 0 when the bridge object cannot report.",
    samples: perBridge(
      (b) => SIDES.map((side) => [{ side }, b.connected[side] ? 1 : 0]),
      () => SIDES.map((side) => [{ side }, 0]),
    ),
  },
  {
    name: "mqtt_bridge_messages_total",
    type: "counter",
    help: "Messages the bridge forwarded and the receiver acknowledged, by direction: out (to the remote), in (from the remote), since the bridge object started.",
    samples: perBridge((b) => [
      [{ direction: "out" }, b.sent],
      [{ direction: "in" }, b.received],
    ]),
  },
  { name: "mqtt_bridge_dropped_total", type: "counter", help: "Messages the bridge did not forward: refused by the receiver, caught by the loop guard, matching no rule any more, over MAX_PACKET_SIZE, unfit for the receiver (topic, payload format), or QoS 0 beyond the bridge's buffers.", samples: perBridge((b) => one(b.dropped)) },
  { name: "mqtt_bridge_reconnects_total", type: "counter", help: "Links rebuilt after having been up, since the bridge object started.", samples: perBridge((b) => one(b.reconnects)) },
  { name: "mqtt_bridge_inflight", type: "gauge", help: "Messages sent to the remote and not yet acknowledged.", samples: perBridge((b) => one(b.queued)) },
  {
    name: "mqtt_bridge_last_error_timestamp_seconds",
    type: "gauge",
    help: "Unix time of the bridge's last error (absent until one happens; it stays after recovery).",
    samples: perBridge((b) => (b.lastErrorAt === null ? [] : one(b.lastErrorAt / 1000))),
  },
  {
    name: "mqtt_bridge_config_errors",
    type: "gauge",
    help: "Errors in the BRIDGES configuration (all namespaces; the entries named in them do not run): see GET /api/<ns>/bridges.",
    samples: (v) => (v.bridges.length > 0 || v.errors.length > 0 ? one(v.errors.length) : []),
  },
];

/** A namespace's figures, and its bridges' status (absent or null: no bridge samples). */
export type MetricsInput = readonly [namespace: string, stats: NamespaceStats, bridges?: BridgesView | null];

/** The exposition of the namespaces' figures, in the order given. */
export function metricsText(namespaces: readonly MetricsInput[], families: readonly Family[] = FAMILIES, bridgeFamilies: readonly Family<BridgesView>[] = BRIDGE_FAMILIES): string {
  const lines: string[] = [];
  const emit = <T>(f: Family<T>, of: (entry: MetricsInput) => T | null | undefined): void => {
    const rows: string[] = [];
    for (const entry of namespaces) {
      const input = of(entry);
      if (input === null || input === undefined) continue;
      for (const [labels, value] of f.samples(input)) rows.push(`${f.name}${labelText({ namespace: entry[0], ...labels })} ${numberText(value)}`);
    }
    if (rows.length === 0) return; // a family with no samples is left out whole
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`, ...rows);
  };
  for (const f of families) emit(f, (e) => e[1]);
  for (const f of bridgeFamilies) emit(f, (e) => e[2]);
  return lines.join("\n") + "\n";
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

/** A label value: backslash, double quote and line feed escaped as `\\`, `\"`, `\n`. */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

/** HELP text: backslash and line feed escaped (a double quote stays as it is). */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\\\"));
}

/** Go's ParseFloat spellings: integers as they are, and +Inf, -Inf, NaN. */
export function numberText(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}
