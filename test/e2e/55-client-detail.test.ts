// The client detail API, GET /api/<namespace>/clients/<id> and BrokerService.client: a client's
// subscriptions with their options, its queue and in-flight messages, last seen, connection
// parameters and its lifecycle history (connected, disconnected, with reasons); 404 for an unknown client.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { startBroker, connect, end, apiPublish, TEST_API_TOKEN, BROKER_WORKER, SHARDED, type Broker } from "./harness";
import { RawClient } from "./raw";
import { until } from "./marker";
import type { ClientDetail } from "../../src/broker/admin";

// a Worker calling the broker through a service binding, as in 31-rpc
const CALLER = `
export default {
  async fetch(request, env) {
    const { method, args } = await request.json();
    try {
      return Response.json({ result: await env.BROKER[method](...args) });
    } catch (err) {
      return Response.json({ error: String(err && err.message) });
    }
  },
};
`;

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker(
    { API_TOKEN: TEST_API_TOKEN },
    { workers: [{ name: "caller", modules: true, script: CALLER, compatibilityDate: "2026-04-01", serviceBindings: { BROKER: { name: BROKER_WORKER, entrypoint: "BrokerService" } } }] },
  );
});
afterAll(() => broker.close());

async function detail(namespace: string, clientId: string, token: string | null = TEST_API_TOKEN): Promise<{ status: number; body: any }> {
  const res = await fetch(broker.http(`/api/${namespace}/clients/${encodeURIComponent(clientId)}`), { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  return { status: res.status, body: await res.json() };
}

async function call(method: string, ...args: unknown[]): Promise<{ result?: any; error?: string }> {
  const caller = await broker.mf.getWorker("caller");
  const res = await caller.fetch("http://caller/", { method: "POST", body: JSON.stringify({ method, args }) });
  return (await res.json()) as { result?: any; error?: string };
}

describe("a connected MQTT 5 client", () => {
  test("subscriptions with their options, connection parameters, last seen, lifecycle history", async () => {
    const before = Date.now();
    const c = await connect(broker.url("cd"), { clientId: "dev/1 ü", protocolVersion: 5, keepalive: 30, clean: true, properties: { sessionExpiryInterval: 300 } });
    await c.subscribeAsync("a/+", { qos: 1, nl: true, rap: true, rh: 2, properties: { subscriptionIdentifier: 7 } });
    await c.subscribeAsync("b/#", { qos: 0 });
    const { status, body } = await detail("cd", "dev/1 ü");
    expect(status).toBe(200);
    const d = body as ClientDetail & { namespace: string };
    expect(d).toMatchObject({ namespace: "cd", clientId: "dev/1 ü", connected: true, protocolVersion: 5, keepalive: 30, sessionExpiry: 300, hasWill: false });
    expect(d.history).toMatchObject([{ event: "connected" }]);
    expect(d.subscriptions).toEqual([
      { filter: "a/+", qos: 1, options: { noLocal: true, retainAsPublished: true, retainHandling: 2, subscriptionId: 7 } },
      { filter: "b/#", qos: 0, options: { noLocal: false, retainAsPublished: false, retainHandling: 0 } },
    ]);
    expect(d.queued).toEqual({ messages: 0, bytes: 0 });
    expect(d.inflight).toEqual({ messages: 0, bytes: 0 });
    expect(d.lastSeen).toBeGreaterThanOrEqual(before);
    expect(d.lastSeen).toBeLessThanOrEqual(Date.now());
    expect(d.connectedAt).toBeGreaterThanOrEqual(before);

    // the same through RPC
    const rpc = await call("client", "cd", "dev/1 ü");
    expect(rpc.result).toMatchObject({ clientId: "dev/1 ü", connected: true, subscriptions: d.subscriptions, history: d.history });
    await end(c);
  });

  // sharded: an API publish accepted by another shard reaches the client's shard after the API answered; the queue read right after misses it
  test.skipIf(SHARDED)("unacknowledged QoS 1 messages are in flight; a queue builds up while offline, with last seen at the disconnect", async () => {
    // a raw client acknowledges nothing: what it is sent stays in flight
    const raw = await RawClient.connect(broker.url("cd"), { clientId: "raw-1", clean: false, keepalive: 0 });
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "q/#", qos: 1 }] });
    await raw.take("suback");
    await apiPublish(broker, "cd", { topic: "q/1", payload: "one", qos: 1 });
    await raw.take("publish");
    const inflight = (await detail("cd", "raw-1")).body as ClientDetail;
    expect(inflight.inflight).toEqual({ messages: 1, bytes: "q/1".length + "one".length });
    expect(inflight.connected).toBe(true);
    expect(inflight.keepalive).toBe(0);
    expect(inflight.protocolVersion).toBe(4);

    const closedAt = Date.now();
    raw.ws.close();
    await raw.closed;
    await until(async () => (await detail("cd", "raw-1")).body.connected === false, "raw-1 offline");
    await apiPublish(broker, "cd", { topic: "q/2", payload: "two", qos: 1 });
    await apiPublish(broker, "cd", { topic: "q/3", payload: "three", qos: 1 });
    const offline = (await detail("cd", "raw-1")).body as ClientDetail;
    expect(offline.queued).toEqual({ messages: 2, bytes: "q/2two".length + "q/3three".length });
    expect(offline.inflight.messages).toBe(1); // re-sent at the next connection
    expect(offline.keepalive).toBeUndefined();
    // MQTT 3.1.1 with clean session 0: the broker's longest session expiry; last seen at the disconnect
    expect(offline.sessionExpiry).toBeGreaterThan(0);
    expect(offline.lastSeen).toBeGreaterThanOrEqual(closedAt - 5);
    expect(offline.lastSeen).toBeLessThanOrEqual(Date.now());
    expect(offline.expiresAt).toBe(offline.lastSeen! + offline.sessionExpiry * 1000);
  });

  test("an MQTT 5 session that expires: last seen is when its connection ended", async () => {
    const c = await connect(broker.url("cd"), { clientId: "exp-1", protocolVersion: 5, clean: true, properties: { sessionExpiryInterval: 600 } });
    await c.subscribeAsync("e/#", { qos: 1 });
    const before = Date.now();
    await end(c);
    await until(async () => (await detail("cd", "exp-1")).body.connected === false, "exp-1 offline");
    const d = (await detail("cd", "exp-1")).body as ClientDetail;
    expect(d.lastSeen).toBeGreaterThanOrEqual(before - 5);
    expect(d.lastSeen).toBeLessThanOrEqual(Date.now());
    expect(d.expiresAt).toBe(d.lastSeen! + 600_000);
    expect(d.subscriptions.map((s) => s.filter)).toEqual(["e/#"]);
  });
});

describe("errors", () => {
  test("an unknown client: 404 with a JSON error, over HTTP; null over RPC", async () => {
    const r = await detail("cd", "nobody");
    expect(r.status).toBe(404);
    expect(r.body.error).toMatch(/nobody/);
    expect(await call("client", "cd", "nobody")).toEqual({ result: null });
  });

  test("no token: 401; a malformed client id: 400; another method: 405", async () => {
    expect((await detail("cd", "x", null)).status).toBe(401);
    const bad = await fetch(broker.http("/api/cd/clients/%E0%A4%A"), { headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
    expect(bad.status).toBe(400);
    const put = await fetch(broker.http("/api/cd/clients/x"), { method: "PUT", headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
    expect(put.status).toBe(405);
    expect(put.headers.get("allow")).toBe("GET, DELETE");
  });
});

test("BrokerService.metrics gives the /metrics text for a list of namespaces", async () => {
  const r = await call("metrics", ["cd", "other"]);
  const families = parsePrometheusTextFormat(r.result as string);
  const connections = families.find((f) => f.name === "mqtt_connections")!;
  expect(connections.metrics.map((m) => m.labels?.namespace)).toEqual(["cd", "other"]);
  expect((await call("metrics", "bad/name")).error).toMatch(/invalid namespace/);
});
