// Rules (docs/rules.md): messages from real MQTT.js clients reach a Cloudflare Queue (consumed by
// a Worker in the same runtime), a Worker over a service binding (RPC onMessages) and local
// webhooks (signed, retried with backoff, kept across a restart, dropped after the limit), all
// without slowing the publisher's PUBACK.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createHmac } from "node:crypto";
import { startBroker, connect, end, apiPublish, freePort, TEST_API_TOKEN, type Broker } from "./harness";
import { until } from "./marker";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { shardName } from "../../src/shards/layout";
import type { RulesStats } from "../../src/rules/engine";
import type { RuleMessage } from "../../src/rules/message";

const SECRET = "webhook-signing-key";

/** A local HTTP server standing for the webhooks and for what the Queue consumer and the RPC Worker forward. */
interface Sink {
  port: number;
  url(path: string): string;
  /** every request, in arrival order, with the status it was answered (undefined: not yet / never) */
  requests: { path: string; body: Buffer; headers: IncomingMessage["headers"]; status?: number }[];
  /** how a path answers its n-th request (1-based): a status, "hold" (until `release`), "never"; default 200 */
  behave: Map<string, (n: number) => number | "hold" | "never">;
  counts: Map<string, number>;
  /** answers the held requests */
  release(status: number): void;
  held(): number;
  /** the JSON messages a path received in requests answered 200 (webhook bodies' `messages`, forwarded arrays) */
  messages(path: string): RuleMessage[];
  close(): Promise<void>;
}

async function startSink(port?: number): Promise<Sink> {
  const requests: Sink["requests"] = [];
  const behave: Sink["behave"] = new Map();
  const counts = new Map<string, number>();
  const open: ServerResponse[] = [];
  let held: { res: ServerResponse; entry: Sink["requests"][number] }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = req.url ?? "/";
      const n = (counts.get(path) ?? 0) + 1;
      counts.set(path, n);
      const entry: Sink["requests"][number] = { path, body: Buffer.concat(chunks), headers: req.headers };
      requests.push(entry);
      const how = behave.get(path)?.(n) ?? 200;
      if (how === "never") open.push(res);
      else if (how === "hold") held.push({ res, entry });
      else {
        entry.status = how;
        res.writeHead(how).end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(port ?? 0, "127.0.0.1", r));
  const actual = (server.address() as { port: number }).port;
  return {
    port: actual,
    url: (path) => `http://127.0.0.1:${actual}${path}`,
    requests,
    behave,
    counts,
    release(status) {
      for (const { res, entry } of held) {
        entry.status = status;
        res.writeHead(status).end();
      }
      held = [];
    },
    held: () => held.length,
    messages(path) {
      const out: RuleMessage[] = [];
      for (const r of requests) {
        if (r.path !== path || r.status !== 200) continue;
        const body = JSON.parse(r.body.toString()) as RuleMessage[] | { messages: RuleMessage[] };
        out.push(...(Array.isArray(body) ? body : body.messages));
      }
      return out;
    },
    async close() {
      for (const res of open) res.destroy();
      for (const { res } of held) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const sign = (body: Buffer) => "sha256=" + createHmac("sha256", SECRET).update(body).digest("hex");

/** A Queue consumer Worker: forwards each batch's bodies to the sink (then acks, by returning). */
const consumerScript = `export default {
  async queue(batch, env) {
    const res = await fetch(env.SINK + "/queue", { method: "POST", body: JSON.stringify(batch.messages.map((m) => m.body)) });
    if (!res.ok) throw new Error("sink " + res.status);
  },
};`;

/** A Worker the broker calls by RPC through a service binding: onMessages(messages). */
const rpcScript = `import { WorkerEntrypoint } from "cloudflare:workers";
export default class Sink extends WorkerEntrypoint {
  async onMessages(messages) {
    const res = await fetch(this.env.SINK + "/rpc", { method: "POST", body: JSON.stringify(messages) });
    if (!res.ok) throw new Error("sink " + res.status);
  }
  async fetch() { return new Response("rule sink"); }
};`;

/** The rules' figures, every shard's summed (a message goes through the rules of the shard that accepts it). */
async function ruleStats(broker: Broker, namespace = "default"): Promise<RulesStats> {
  const ns = await broker.mf.getDurableObjectNamespace("BROKER");
  const read = (i: number) => (ns.get(ns.idFromName(shardName(namespace, i))) as unknown as { ruleStats(): Promise<RulesStats | null> }).ruleStats();
  const all = JSON.parse(JSON.stringify(await Promise.all(Array.from({ length: broker.shards }, (_, i) => read(i))))) as RulesStats[];
  const sum = <T extends object>(a: T, b: T): T =>
    Object.fromEntries(Object.entries(a).map(([k, v]) => [k, typeof v === "number" ? v + ((b as Record<string, number>)[k] ?? 0) : v])) as T;
  return all.reduce((a, b) => ({ ...sum(a, b), total: sum(a.total, b.total), rules: a.rules.map((r) => sum(r, b.rules.find((x) => x.name === r.name)!)) }));
}
const ruleOf = (s: RulesStats, name: string) => s.rules.find((r) => r.name === name)!;

describe("rules to a Queue, a Worker and webhooks", () => {
  let broker: Broker;
  let sink: Sink;
  let downPort: number;

  beforeAll(async () => {
    sink = await startSink();
    downPort = await freePort(); // nothing listens here until the restart test starts a server
    const rules = [
      { name: "to-queue", filter: "q/#", to: "queue:RULES_Q" },
      { name: "to-worker", filter: "w/+/data", to: "worker:SINK" },
      { name: "hook", filter: "h/#", to: `webhook:${sink.url("/hook")}`, secret: "HOOK_SECRET", timeout: 1 },
      { name: "hook0", filter: "h0/#", to: `webhook:${sink.url("/hook0")}` },
      { name: "raw", filter: "raw/#", to: `webhook:${sink.url("/raw")}`, format: "raw", secret: "HOOK_SECRET" },
      { name: "all", filter: "#", to: `webhook:${sink.url("/all")}`, qos: 0 },
      { name: "app", filter: "$app/#", to: `webhook:${sink.url("/app")}` },
      { name: "presence", filter: "$events/clients/+/connected", to: `webhook:${sink.url("/presence")}` },
      { name: "later", filter: "p/#", to: `webhook:http://127.0.0.1:${downPort}/later`, timeout: 1 },
      // bad rules: left out with a logged error, the broker runs with the others
      { name: "bad-kind", filter: "x/#", to: "kafka:X" },
      { name: "bad-binding", filter: "x/#", to: "queue:NOPE" },
      { name: "bad-filter", filter: "x/#/y", to: "queue:RULES_Q" },
      { name: "bad-http", filter: "x/#", to: "webhook:http://example.com/hook" },
    ];
    broker = await startBroker(
      { RULES: JSON.stringify(rules), HOOK_SECRET: SECRET, RULES_RETRY_BASE: "0.2", RULES_RETRY_MAX: "1", RULES_MAX_ATTEMPTS: "100", API_TOKEN: TEST_API_TOKEN },
      {
        broker: { queueProducers: { RULES_Q: { queueName: "rules-q" } }, serviceBindings: { SINK: "rules-sink" } },
        workers: [
          { name: "rules-consumer", modules: true, script: consumerScript, compatibilityDate: "2026-04-01", bindings: { SINK: sink.url("") }, queueConsumers: { "rules-q": { maxBatchTimeout: 1 } } },
          { name: "rules-sink", modules: true, script: rpcScript, compatibilityDate: "2026-04-01", bindings: { SINK: sink.url("") } },
        ],
      },
    );
  });
  afterAll(async () => {
    await broker?.close();
    await sink?.close();
  });

  test("bad rules are reported in the log and left out; the good ones are active", async () => {
    const c = await connect(broker.url()); // the object starts and reads RULES
    await until(() => broker.logs.join("").includes("rules: 9 active"), "the rules to be announced");
    const log = broker.logs.join("");
    expect(log).toMatch(/RULES\[9\] is left out: "to": unknown destination kind "kafka"/);
    expect(log).toMatch(/RULES\[10\] is left out: "to": no Queue producer binding "NOPE"/);
    expect(log).toMatch(/RULES\[11\] is left out: "filter" must be a valid MQTT topic filter/);
    expect(log).toMatch(/RULES\[12\] is left out: "to": a webhook must use https:\/\//);
    await end(c);
  });

  test("a Queue: the consumer Worker receives the message, binary payload in base64", async () => {
    const c = await connect(broker.url(), { clientId: "q-pub" });
    await c.publishAsync("q/bin", Buffer.from([0, 1, 2, 0xff]), { qos: 1 });
    await until(() => sink.messages("/queue").length >= 1, "the queue consumer to forward", 10_000);
    const [m] = sink.messages("/queue");
    expect(m).toMatchObject({ namespace: "default", rule: "to-queue", topic: "q/bin", payload: "AAEC/w==", qos: 1, retain: false, clientId: "q-pub", attempt: 1 });
    expect(m).not.toHaveProperty("payloadText");
    await end(c);
  });

  test("a Worker over a service binding: onMessages gets the batch; wildcards select", async () => {
    const c = await connect(broker.url(), { clientId: "w-pub" });
    await c.publishAsync("w/a/data", "one", { qos: 1 });
    await c.publishAsync("w/a/other", "not matched", { qos: 1 });
    await c.publishAsync("w/b/data", "two", { qos: 0 });
    await until(() => sink.messages("/rpc").length >= 2, "the RPC worker to forward");
    expect(sink.messages("/rpc").map((m) => [m.topic, m.payloadText, m.qos])).toEqual([
      ["w/a/data", "one", 1],
      ["w/b/data", "two", 0],
    ]);
    await end(c);
  });

  test("a webhook failing twice (500, then a timeout) gets the messages later, signed; the PUBACK does not wait for it", async () => {
    // the first request is held (then 500), the second never answered (the rule's 1 s timeout)
    sink.behave.set("/hook", (n) => (n === 1 ? "hold" : n === 2 ? "never" : 200));
    const c = await connect(broker.url(), { clientId: "h-pub", protocolVersion: 5 });
    const t0 = Date.now();
    await c.publishAsync("h/1", "first", { qos: 1 });
    const firstAck = Date.now() - t0;
    await until(() => sink.held() === 1, "the first webhook request to arrive and be held");
    // the webhook holds a request open: a second message is acknowledged anyway, at once
    const t1 = Date.now();
    await c.publishAsync("h/2", Buffer.from("second"), {
      qos: 1,
      retain: false,
      properties: { contentType: "text/plain", responseTopic: "re/h", correlationData: Buffer.from([9, 8]), userProperties: { k: "v" }, messageExpiryInterval: 600 },
    });
    const secondAck = Date.now() - t1;
    expect(sink.messages("/hook")).toEqual([]); // still failing: nothing delivered yet
    expect(firstAck).toBeLessThan(1000);
    expect(secondAck).toBeLessThan(500);
    sink.release(500);
    await until(() => new Set(sink.messages("/hook").map((m) => m.topic)).size === 2, "both messages through the webhook", 15_000);
    const got = sink.messages("/hook");
    expect(sink.counts.get("/hook")).toBeGreaterThanOrEqual(4); // 500, timeout, then the two retries
    for (const r of sink.requests.filter((r) => r.path === "/hook")) {
      expect(r.headers["x-signature-256"]).toBe(sign(r.body));
      expect(r.headers["content-type"]).toBe("application/json");
    }
    const second = got.find((m) => m.topic === "h/2")!;
    expect(second).toMatchObject({
      rule: "hook",
      payload: Buffer.from("second").toString("base64"),
      payloadText: "second",
      clientId: "h-pub",
      qos: 1,
      retain: false,
      properties: { contentType: "text/plain", responseTopic: "re/h", correlationData: "CQg=", userProperties: { k: "v" }, messageExpiryInterval: 600 },
    });
    expect(second.attempt).toBeGreaterThanOrEqual(2);
    expect(second.time).toBeGreaterThanOrEqual(t1 - 1000);
    expect(second.time).toBeLessThanOrEqual(t1 + 1000);
    await until(async () => (await ruleStats(broker)).pending === 0, "no pending sends");
    const s = ruleOf(await ruleStats(broker), "hook");
    expect(s.failedSends).toBeGreaterThanOrEqual(2);
    expect(s.dropped).toBe(0);
    // the same counters in the stats API and in /metrics (a real Prometheus parser)
    const api = await fetch(broker.http("/api/default/stats"), { headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
    const stats = (await api.json()) as { rules?: RulesStats };
    expect(ruleOf(stats.rules!, "hook").delivered).toBe(s.delivered);
    const res = await fetch(broker.http("/metrics"), { headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
    expect(res.status).toBe(200);
    const families = parsePrometheusTextFormat(await res.text());
    const sample = (name: string, labels: Record<string, string>) =>
      Number(families.find((f) => f.name === name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value ?? NaN);
    expect(s.delivered).toBeGreaterThanOrEqual(2);
    expect(sample("mqtt_rule_messages_total", { namespace: "default", rule: "hook", outcome: "delivered" })).toBe(s.delivered);
    expect(sample("mqtt_rule_messages_total", { namespace: "default", rule: "hook", outcome: "matched" })).toBe(s.matched);
    expect(sample("mqtt_rule_failed_sends_total", { namespace: "default", rule: "hook" })).toBe(s.failedSends);
    expect(sample("mqtt_rule_pending", { namespace: "default" })).toBe(0);
    await end(c);
  });

  test("a raw webhook gets the payload as the body, the fields as headers, signed", async () => {
    const c = await connect(broker.url(), { clientId: "raw pub" });
    await c.publishAsync("raw/ü", Buffer.from([1, 2, 3]), { qos: 1, retain: true });
    await until(() => sink.requests.some((r) => r.path === "/raw"), "the raw webhook");
    const r = sink.requests.find((r) => r.path === "/raw")!;
    expect([...r.body]).toEqual([1, 2, 3]);
    expect(r.headers).toMatchObject({ "content-type": "application/octet-stream", "x-mqtt-topic": encodeURIComponent("raw/ü"), "x-mqtt-qos": "1", "x-mqtt-retain": "1", "x-mqtt-client-id": "raw%20pub", "x-mqtt-rule": "raw" });
    expect(r.headers["x-signature-256"]).toBe(sign(r.body));
    await end(c);
  });

  test("QoS 0 is sent once and not retried when the webhook fails", async () => {
    sink.behave.set("/hook0", () => 500);
    const c = await connect(broker.url());
    c.publish("h0/x", "zero", { qos: 0 });
    await until(async () => ruleOf(await ruleStats(broker), "hook0").lost === 1, "the QoS 0 message to be lost");
    // a QoS 1 message through the same rule is retried (base 0.2 s): by its third attempt, a retry
    // of the QoS 0 message would have come too
    await c.publishAsync("h0/y", "one", { qos: 1 });
    await until(() => sink.requests.filter((r) => r.path === "/hook0" && r.body.toString().includes('"h0/y"')).length >= 3, "three attempts of the QoS 1 message");
    expect(sink.requests.filter((r) => r.path === "/hook0" && r.body.toString().includes('"h0/x"'))).toHaveLength(1);
    sink.behave.delete("/hook0"); // the QoS 1 message goes through at its next attempt
    await until(() => sink.messages("/hook0").length === 1, "the QoS 1 message through");
    expect(sink.messages("/hook0").map((m) => m.topic)).toEqual(["h0/y"]);
    await end(c);
  });

  test("'#' does not match $ topics ($SYS included); a '$app/#' rule does", async () => {
    await apiPublish(broker, "default", { topic: "$app/status", payload: "dollar", qos: 1 });
    const c = await connect(broker.url());
    let sysSeen = false;
    c.on("message", (topic) => void (sysSeen ||= topic.startsWith("$SYS/")));
    // the broker publishes its $SYS topics to a subscriber: none of them goes to the '#' rule
    await c.subscribeAsync("$SYS/#");
    await until(() => sysSeen, "a $SYS message");
    await c.publishAsync("plain/after", "marker", { qos: 1 });
    await until(() => sink.requests.some((r) => r.path === "/all" && r.body.toString().includes("plain/after")), "the marker through '#'");
    await until(() => sink.requests.some((r) => r.path === "/app"), "the $app rule");
    expect(sink.messages("/app").map((m) => [m.topic, m.clientId])).toEqual([["$app/status", null]]);
    expect(sink.messages("/all").filter((m) => m.topic.startsWith("$"))).toEqual([]);
    await end(c);
  });

  test("a rule naming $events gets the lifecycle events, with no MQTT subscriber; '#' does not", async () => {
    const c = await connect(broker.url(), { clientId: "presence-dev" });
    await until(() => sink.messages("/presence").some((m) => m.topic === "$events/clients/presence-dev/connected"), "the connected event through the rule");
    const event = sink.messages("/presence").find((m) => m.topic === "$events/clients/presence-dev/connected")!;
    expect(JSON.parse(event.payloadText!)).toMatchObject({ clientId: "presence-dev" });
    expect(sink.messages("/all").filter((m) => m.topic.startsWith("$events/"))).toEqual([]);
    await end(c);
  });

  test("a will goes through the rules too, with the client id of its owner", async () => {
    const c = await connect(broker.url(), { clientId: "will-owner", will: { topic: "h0/will", payload: Buffer.from("gone"), qos: 1, retain: false } });
    (c as unknown as { stream: { destroy(): void } }).stream.destroy(); // no DISCONNECT: the will is owed
    await until(() => sink.messages("/hook0").some((m) => m.topic === "h0/will"), "the will through the rule");
    expect(sink.messages("/hook0").find((m) => m.topic === "h0/will")).toMatchObject({ clientId: "will-owner", payloadText: "gone", qos: 1 });
    c.end(true);
  });

  test("pending sends survive a restart: webhook down, broker restarted, webhook up → delivered", async () => {
    const c = await connect(broker.url(), { clientId: "p-pub" });
    await c.publishAsync("p/1", "kept", { qos: 1 });
    await until(async () => ruleOf(await ruleStats(broker), "later").failedSends >= 1, "a failed attempt (nothing listens)");
    expect((await ruleStats(broker)).pending).toBeGreaterThanOrEqual(1);
    await end(c);
    await broker.restart(); // no client connects after this: the stored alarm wakes the object
    const later = await startSink(downPort);
    try {
      await until(() => later.requests.length >= 1, "the pending send after the restart", 15_000);
      expect(later.messages("/later").map((m) => [m.topic, m.payloadText, m.clientId])).toEqual([["p/1", "kept", "p-pub"]]);
      await until(async () => ruleOf(await ruleStats(broker), "later").delivered === 1, "the send confirmed");
      await until(async () => (await ruleStats(broker)).pending === 0, "the pending row deleted");
    } finally {
      await later.close();
    }
  });
});

describe("limits", () => {
  test("a send failing RULES_MAX_ATTEMPTS times is dropped and counted", async () => {
    const sink = await startSink();
    sink.behave.set("/fail", () => 503);
    const broker = await startBroker({
      RULES: JSON.stringify([{ name: "failing", filter: "f/#", to: `webhook:${sink.url("/fail")}` }]),
      RULES_MAX_ATTEMPTS: "3",
      RULES_RETRY_BASE: "0.1",
      RULES_RETRY_MAX: "0.2",
    });
    try {
      const c = await connect(broker.url());
      await c.publishAsync("f/1", "doomed", { qos: 1 });
      await until(async () => ruleOf(await ruleStats(broker), "failing").dropped === 1, "the send to be dropped", 10_000);
      const s = await ruleStats(broker);
      expect(s.pending).toBe(0);
      expect(ruleOf(s, "failing")).toMatchObject({ matched: 1, delivered: 0, failedSends: 3, dropped: 1 });
      expect(sink.counts.get("/fail")).toBe(3);
      expect(broker.logs.join("")).toMatch(/rules: "failing": .*1 dropped after 3 attempts/);
      await end(c);
    } finally {
      await broker.close();
      await sink.close();
    }
  });

  test("with no RULES there are no rule stats (the feature is off)", async () => {
    const broker = await startBroker();
    try {
      const c = await connect(broker.url());
      await c.publishAsync("t", "x", { qos: 1 });
      const ns = await broker.mf.getDurableObjectNamespace("BROKER");
      const stub = ns.get(ns.idFromName("")) as unknown as { ruleStats(): Promise<RulesStats | null> };
      expect(await stub.ruleStats()).toBeNull();
      await end(c);
    } finally {
      await broker.close();
    }
  });
});
