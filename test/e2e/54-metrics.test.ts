// GET /metrics end to end: the Prometheus text format read by a real parser after known
// traffic in two namespaces, the bearer tokens (API_TOKEN for all, API_TOKENS per namespace),
// the list of namespaces and its limit, and one metrics read costing one RPC per namespace.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import parsePrometheusTextFormat, { type ParsedFamily } from "parse-prometheus-text-format";
import type { MqttClient } from "mqtt";
import { startBroker, connect, end, SHARDED, type Broker } from "./harness";
import { until } from "./marker";
import { hashPassword } from "../../src/auth/password";

const TOKEN = "metrics-global-token";
const M1_TOKEN = "metrics-m1-token";
let broker: Broker;
const clients: MqttClient[] = [];
const login = { username: "dev", password: "dev-pass" };

beforeAll(async () => {
  broker = await startBroker({
    API_TOKEN: TOKEN,
    API_TOKENS: JSON.stringify({ m1: M1_TOKEN }),
    AUTH_MODE: "password",
    AUTH_USERS: JSON.stringify({ dev: await hashPassword("dev-pass", 1000) }),
    MAX_QUEUED_MESSAGES: "2",
  });
});
afterAll(async () => {
  await end(...clients);
  await broker.close();
});

async function metrics(path: string, token: string | null = TOKEN): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(broker.http(path), { headers: token === null ? {} : { Authorization: `Bearer ${token}` } });
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
}

async function parsed(path: string, token: string = TOKEN): Promise<ParsedFamily[]> {
  const r = await metrics(path, token);
  expect(r.status, r.text).toBe(200);
  expect(r.type).toBe("text/plain; version=0.0.4; charset=utf-8");
  return parsePrometheusTextFormat(r.text);
}

function value(families: ParsedFamily[], name: string, labels: Record<string, string>): number {
  const f = families.find((x) => x.name === name);
  const sample = f?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  if (!sample) throw new Error(`no sample ${name} ${JSON.stringify(labels)}`);
  return Number(sample.value);
}

async function client(namespace: string, clientId: string, opts: Parameters<typeof connect>[1] = {}): Promise<MqttClient> {
  const c = await connect(broker.url(namespace), { clientId, ...login, ...opts });
  clients.push(c);
  return c;
}

describe("after known traffic in two namespaces", () => {
  beforeAll(async () => {
    // a persistent session that goes offline: its queue holds 2 (MAX_QUEUED_MESSAGES), the 3rd is dropped
    const sleeper = await connect(broker.url("m1"), { clientId: "m1-sleeper", clean: false, ...login });
    await sleeper.subscribeAsync("t/x", { qos: 1 });
    await end(sleeper);
    await until(async () => {
      const res = await fetch(broker.http("/api/m1/clients/m1-sleeper"), { headers: { Authorization: `Bearer ${TOKEN}` } });
      return ((await res.json()) as { connected: boolean }).connected === false;
    }, "m1-sleeper offline");
    const sub = await client("m1", "m1-sub", { protocolVersion: 5 });
    await sub.subscribeAsync("t/#", { qos: 1 });
    const pub = await client("m1", "m1-pub", { protocolVersion: 5 });
    let got = 0;
    sub.on("message", () => got++);
    for (let i = 0; i < 3; i++) await pub.publishAsync("t/x", "12345", { qos: 1 });
    await pub.publishAsync("t/r", "hello", { qos: 0, retain: true });
    // $SYS is the broker's: refused (PUBACK 0x87) and counted as dropped
    await expect(pub.publishAsync("$SYS/fake", "x", { qos: 1 })).rejects.toThrow();
    await until(() => got === 4, "the subscriber got the 4 messages");
    await client("m2", "m2-a");
    // a refused login
    await expect(connect(broker.url("m2"), { clientId: "m2-bad", username: "dev", password: "wrong" })).rejects.toThrow();
  });

  test("every sample is labelled by its namespace; values follow the traffic", async () => {
    const f = await parsed("/metrics?namespace=m1&namespace=m2");
    expect(value(f, "mqtt_messages_received_total", { namespace: "m1", qos: "1" })).toBeGreaterThanOrEqual(3);
    expect(value(f, "mqtt_messages_received_total", { namespace: "m1", qos: "0" })).toBeGreaterThanOrEqual(1);
    expect(value(f, "mqtt_messages_sent_total", { namespace: "m1", qos: "1" })).toBeGreaterThanOrEqual(3);
    expect(value(f, "mqtt_payload_bytes_received_total", { namespace: "m1", qos: "1" })).toBeGreaterThanOrEqual(15);
    expect(value(f, "mqtt_messages_received_total", { namespace: "m2", qos: "1" })).toBe(0);
    expect(value(f, "mqtt_connections", { namespace: "m1" })).toBe(2);
    expect(value(f, "mqtt_connections", { namespace: "m2" })).toBe(1);
    expect(value(f, "mqtt_subscriptions", { namespace: "m1" })).toBe(2);
    expect(value(f, "mqtt_sessions", { namespace: "m1" })).toBe(3);
    expect(value(f, "mqtt_sessions_persistent", { namespace: "m1" })).toBe(1);
    expect(value(f, "mqtt_queued_messages", { namespace: "m1" })).toBe(2);
    expect(value(f, "mqtt_queued_messages_max", { namespace: "m1" })).toBe(2);
    expect(value(f, "mqtt_queued_bytes", { namespace: "m1" })).toBe(2 * "t/x12345".length);
    expect(value(f, "mqtt_messages_dropped_total", { namespace: "m1", reason: "queue_full" })).toBe(1);
    expect(value(f, "mqtt_retained_messages", { namespace: "m1" })).toBe(1);
    expect(value(f, "mqtt_retained_bytes", { namespace: "m1" })).toBe(5);
    expect(value(f, "mqtt_messages_dropped_total", { namespace: "m1", reason: "not_authorized" })).toBe(1);
    expect(value(f, "mqtt_auth_failures_total", { namespace: "m2" })).toBe(1);
    expect(value(f, "mqtt_auth_failures_total", { namespace: "m1" })).toBe(0);
    expect(value(f, "mqtt_events_http_total", { namespace: "m1" })).toBe(3); // three WebSocket upgrades
    for (const family of f) {
      expect(new Set(family.metrics.map((m) => m.labels?.namespace))).toEqual(new Set(["m1", "m2"]));
      expect(family.type === "COUNTER").toBe(family.name.endsWith("_total"));
    }
  });

  test("?namespaces=a,b and /api/<ns>/metrics answer the same families", async () => {
    const byList = await parsed("/metrics?namespaces=m1,m2");
    expect(value(byList, "mqtt_connections", { namespace: "m2" })).toBe(1);
    const one = await parsed("/api/m1/metrics");
    expect(one.map((x) => x.name)).toEqual(byList.map((x) => x.name));
    expect(new Set(one.flatMap((x) => x.metrics.map((m) => m.labels?.namespace)))).toEqual(new Set(["m1"]));
    expect(value(one, "mqtt_connections", { namespace: "m1" })).toBe(2);
    expect(value(one, "mqtt_sessions", { namespace: "m1" })).toBe(3);
  });

  // sharded: a metrics read asks every shard (one RPC each)
  test.skipIf(SHARDED)("one metrics read is one RPC per namespace, as a stats read is", async () => {
    const a = await parsed("/metrics?namespace=m1&namespace=m2");
    const b = await parsed("/metrics?namespace=m1&namespace=m2");
    for (const namespace of ["m1", "m2"]) {
      expect(value(b, "mqtt_events_rpc_total", { namespace }) - value(a, "mqtt_events_rpc_total", { namespace })).toBe(1);
      expect(value(b, "mqtt_events_http_total", { namespace })).toBe(value(a, "mqtt_events_http_total", { namespace }));
    }
  });
});

describe("tokens", () => {
  test("no token or a wrong one: 401 with WWW-Authenticate", async () => {
    for (const path of ["/metrics", "/metrics?namespace=m1", "/api/m1/metrics"]) {
      for (const token of [null, "nope"]) {
        const res = await fetch(broker.http(path), { headers: token ? { Authorization: `Bearer ${token}` } : {} });
        expect(res.status).toBe(401);
        expect(res.headers.get("www-authenticate")).toBe("Bearer");
        expect(((await res.json()) as { error: string }).error).toMatch(/token/);
      }
    }
  });

  test("a namespace's own token reads that namespace only", async () => {
    expect((await metrics("/metrics?namespace=m1", M1_TOKEN)).status).toBe(200);
    expect((await metrics("/api/m1/metrics", M1_TOKEN)).status).toBe(200);
    expect((await metrics("/metrics?namespace=m2", M1_TOKEN)).status).toBe(401);
    expect((await metrics("/metrics", M1_TOKEN)).status).toBe(401); // "default"
    expect((await metrics("/api/m2/metrics", M1_TOKEN)).status).toBe(401);
    const mixed = await metrics("/metrics?namespaces=m1,m2", M1_TOKEN);
    expect(mixed.status).toBe(403);
    expect(JSON.parse(mixed.text).error).toMatch(/"m2"/);
  });
});

describe("bad requests", () => {
  test("more than 50 namespaces, a bad name, another method: 4xx with a JSON error", async () => {
    const list = (n: number) => Array.from({ length: n }, (_, i) => `n${i}`).join(",");
    const over = await metrics(`/metrics?namespaces=${list(51)}`);
    expect(over.status).toBe(400);
    expect(JSON.parse(over.text).error).toMatch(/at most 50/);
    expect((await metrics(`/metrics?namespaces=${list(50)}`)).status).toBe(200);
    const bad = await metrics("/metrics?namespace=a%2Fb");
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.text).error).toMatch(/invalid namespace/);
    const post = await fetch(broker.http("/metrics"), { method: "POST", headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET");
    const postNs = await fetch(broker.http("/api/m1/metrics"), { method: "POST", headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(postNs.status).toBe(405);
  });
});
