// The /metrics text builder (src/api/metrics.ts) checked with a real parser of the Prometheus
// text format, and the counters it reads, counted by the pure core (by QoS, drops by reason).
import { describe, expect, test } from "vitest";
import * as mqtt from "mqtt-packet";
import parsePrometheusTextFormat, { type ParsedFamily } from "parse-prometheus-text-format";
import { RuleEngine } from "../../src/rules/engine";
import type { Rule } from "../../src/rules/config";
import { mergeStats } from "../../src/broker/merge";
import { BRIDGE_FAMILIES, type BridgesView, FAMILIES, MAX_METRICS_NAMESPACES, RULE_OUTCOMES, escapeHelp, escapeLabelValue, metricsNamespaces, metricsText, numberText } from "../../src/api/metrics";
import { InputError } from "../../src/api/input";
import { readMetrics } from "../../src/api/http";
import { BrokerCore, type Runtime } from "../../src/broker/core";
import { Connection } from "../../src/broker/connection";
import { namespaceStats, type NamespaceStats } from "../../src/broker/stats";
import { DEFAULTS, type BrokerConfig } from "../../src/config";
import { Authenticator } from "../../src/auth/authenticator";
import { MemoryStore } from "../../src/storage/memory-store";
import { DROP_REASONS } from "../../src/session/drops";
import { clientDetail } from "../../src/broker/admin";

function core(config: Partial<BrokerConfig> = {}) {
  const runtime: Runtime = { now: () => 1000, wakeAt: () => {}, rearm: () => {}, later: (fn) => fn(), log: () => {} };
  return new BrokerCore(new MemoryStore(), { ...DEFAULTS, ...config }, runtime, Authenticator.open());
}

/** A client on the pure core speaking MQTT 3.1.1 through mqtt-packet. */
function client(c: BrokerCore, clientId: string, clean = true) {
  const parser = mqtt.parser({ protocolVersion: 4 });
  const transport = { send: (b: Uint8Array) => void parser.parse(Buffer.from(b)), close: () => {}, saveAttachment: () => {} };
  const conn = new Connection(transport, c.config, { seen: 1000, at: 1000 }, c.counters);
  c.open(conn);
  const send = (p: mqtt.Packet) => c.receive(conn, new Uint8Array(mqtt.generate(p, { protocolVersion: 4 })).buffer);
  send({ cmd: "connect", clientId, protocolVersion: 4, protocolId: "MQTT", clean, keepalive: 60 });
  return { send, conn };
}

function family(parsed: ParsedFamily[], name: string): ParsedFamily {
  const f = parsed.find((x) => x.name === name);
  if (!f) throw new Error(`no family ${name}`);
  return f;
}

function value(parsed: ParsedFamily[], name: string, labels: Record<string, string>): number {
  const sample = family(parsed, name).metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  if (!sample) throw new Error(`no sample ${name} ${JSON.stringify(labels)}`);
  return Number(sample.value);
}

describe("metricsText", () => {
  test("every family parses with its HELP and TYPE, counters end in _total, each sample labelled with its namespace", () => {
    const a = namespaceStats(core());
    const b = namespaceStats(core());
    b.messagesByQos.received = [4, 3, 2];
    const text = metricsText([
      ["a", a],
      ["b", b],
    ]);
    const parsed = parsePrometheusTextFormat(text);
    // the rules' families are left out whole without RULES (see the rules test below), the shards' at one shard
    expect(parsed.map((f) => f.name)).toEqual(FAMILIES.filter((f) => !f.name.startsWith("mqtt_rule_") && !f.name.startsWith("mqtt_shard_")).map((f) => f.name));
    for (const f of parsed) {
      const def = FAMILIES.find((d) => d.name === f.name)!;
      expect(f.type).toBe(def.type.toUpperCase());
      expect(f.help).toBe(def.help);
      if (def.type === "counter") expect(f.name).toMatch(/_total$/);
      else expect(f.name).not.toMatch(/_total$/);
      const namespaces = new Set(f.metrics.map((m) => m.labels?.namespace));
      expect(namespaces).toEqual(new Set(["a", "b"]));
    }
    expect(value(parsed, "mqtt_messages_received_total", { namespace: "b", qos: "1" })).toBe(3);
    expect(value(parsed, "mqtt_messages_received_total", { namespace: "a", qos: "1" })).toBe(0);
    expect(family(parsed, "mqtt_messages_dropped_total").metrics.filter((m) => m.labels?.namespace === "a").map((m) => m.labels?.reason)).toEqual([...DROP_REASONS]);
    // one family's lines together, HELP then TYPE then samples; no sample line twice
    const lines = text.trimEnd().split("\n");
    const samples = lines.filter((l) => !l.startsWith("#"));
    expect(new Set(samples.map((l) => l.slice(0, l.lastIndexOf(" ")))).size).toBe(samples.length);
    expect(lines[0]).toBe(`# HELP mqtt_uptime_seconds ${FAMILIES[0]!.help}`);
    expect(lines[1]).toBe("# TYPE mqtt_uptime_seconds gauge");
    expect(text.endsWith("\n")).toBe(true);
  });

  test("the lifecycle events count: events that reached a subscriber", () => {
    const c = core();
    const monitor = client(c, "monitor");
    monitor.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$events/#", qos: 0 }] });
    expect(namespaceStats(c).lifecycleEvents).toBe(0);
    client(c, "dev");
    const parsed = parsePrometheusTextFormat(metricsText([["x", namespaceStats(c)]]));
    expect(value(parsed, "mqtt_lifecycle_events_total", { namespace: "x" })).toBe(1); // dev connected
  });

  test("the rules' gauges and per-rule counters by outcome, from a real engine; names with quotes escaped", async () => {
    const c = core();
    const sent: string[] = [];
    const routes = [
      { rule: { name: 'to "q"\\1', filter: "t/#", to: { kind: "queue", binding: "Q" }, format: "json", timeoutMs: 1000, qos: 1 } as Rule, dest: { batchSize: 100, send: async (b: { msg: { topic: string } }[]) => void sent.push(...b.map((x) => x.msg.topic)) } },
      { rule: { name: "idle", filter: "nothing/#", to: { kind: "queue", binding: "Q" }, format: "json", timeoutMs: 1000, qos: 1 } as Rule, dest: { batchSize: 100, send: async () => {} } },
    ];
    c.rules = new RuleEngine(routes as never, { store: c.store, config: c.config, now: () => 1000, wakeAt: () => {}, later: (fn) => fn(), log: () => {} });
    const pub = client(c, "pub");
    pub.send({ cmd: "publish", topic: "t/1", payload: Buffer.from("a"), qos: 1, messageId: 1, retain: false, dup: false });
    pub.send({ cmd: "publish", topic: "t/2", payload: Buffer.from("b"), qos: 0, retain: false, dup: false });
    for (let i = 0; i < 10 && sent.length < 2; i++) await Promise.resolve();
    await new Promise((r) => setTimeout(r, 0));
    expect(sent.sort()).toEqual(["t/1", "t/2"]);
    const stats = namespaceStats(c);
    expect(stats.rules).toMatchObject({ pending: 0, sending: 0 });
    const parsed = parsePrometheusTextFormat(metricsText([["a", stats], ["b", namespaceStats(core())]]));
    const rule = 'to "q"\\1';
    expect(value(parsed, "mqtt_rule_messages_total", { namespace: "a", rule, outcome: "matched" })).toBe(2);
    expect(value(parsed, "mqtt_rule_messages_total", { namespace: "a", rule, outcome: "delivered" })).toBe(2);
    expect(value(parsed, "mqtt_rule_messages_total", { namespace: "a", rule: "idle", outcome: "matched" })).toBe(0);
    expect(family(parsed, "mqtt_rule_messages_total").metrics.filter((m) => m.labels?.rule === rule).map((m) => m.labels?.outcome)).toEqual([...RULE_OUTCOMES]);
    expect(value(parsed, "mqtt_rule_failed_sends_total", { namespace: "a", rule })).toBe(0);
    expect(value(parsed, "mqtt_rule_pending", { namespace: "a" })).toBe(0);
    expect(value(parsed, "mqtt_rule_sending", { namespace: "a" })).toBe(0);
    // a namespace without rules has no rule samples (not zeros under made-up names)
    for (const name of ["mqtt_rule_pending", "mqtt_rule_messages_total"]) expect(family(parsed, name).metrics.some((m) => m.labels?.namespace === "b")).toBe(false);
    for (const f of FAMILIES.filter((f) => f.name.startsWith("mqtt_rule_"))) expect(f.type === "counter").toBe(f.name.endsWith("_total"));
  });

  test("label values are escaped as the format says: backslash, double quote, line feed", () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    expect(escapeLabelValue("plain.ns-1_x")).toBe("plain.ns-1_x");
    expect(escapeHelp('say "hi" \\ then\nmore')).toBe('say "hi" \\\\ then\\nmore');
    const odd = 'we\\ird "ns"\nline';
    const parsed = parsePrometheusTextFormat(metricsText([[odd, namespaceStats(core())]]));
    expect(family(parsed, "mqtt_connections").metrics[0]!.labels).toEqual({ namespace: odd });
    const help = [{ name: "x_total", type: "counter" as const, help: "a \\ b\nc", samples: () => [[{}, 1] as [Record<string, string>, number]] }];
    expect(parsePrometheusTextFormat(metricsText([["n", namespaceStats(core())]], help))[0]!.help).toBe("a \\ b\nc");
  });

  test("numbers in Go's float spellings", () => {
    expect(numberText(3)).toBe("3");
    expect(numberText(1.5)).toBe("1.5");
    expect(numberText(NaN)).toBe("NaN");
    expect(numberText(Infinity)).toBe("+Inf");
    expect(numberText(-Infinity)).toBe("-Inf");
  });
});

describe("metricsText: the bridges' families", () => {
  const bridge = (name: string, over: Partial<Record<string, unknown>> = {}) => ({
    name, namespace: "a", remote: "mqtt://remote.example:1883", connected: { remote: true, local: false },
    lastError: null, lastErrorAt: null, queued: 3, sent: 12, received: 5, dropped: 1, reconnects: 2, since: 1795807570456, retryAt: null, ...over,
  }) as BridgesView["bridges"][number];

  test("per bridge, labelled namespace and bridge: up by side, messages by direction, dropped, reconnects, inflight, last error time, config errors", () => {
    const a: BridgesView = {
      bridges: [bridge("cloud", { lastError: "remote: closed", lastErrorAt: 1795807569123 }), bridge("lab", { connected: { remote: false, local: false }, sent: 0 }), { name: "gone", error: "the bridge object failed: x" }],
      errors: ['BRIDGES[3] ("bad"): url: use mqtt://'],
    };
    const text = metricsText([["a", namespaceStats(core()), a], ["b", namespaceStats(core())]]);
    const parsed = parsePrometheusTextFormat(text);
    const names = parsed.map((f) => f.name);
    // after the namespace families, in the table's order, each with its HELP and TYPE
    expect(names.slice(-BRIDGE_FAMILIES.length)).toEqual(BRIDGE_FAMILIES.map((f) => f.name));
    for (const def of BRIDGE_FAMILIES) {
      const f = family(parsed, def.name);
      expect(f.type).toBe(def.type.toUpperCase());
      expect(f.help).toBe(def.help);
      expect(def.type === "counter").toBe(def.name.endsWith("_total"));
      // namespace "b" was read without bridges: none of its samples
      expect(f.metrics.every((m) => m.labels?.namespace === "a")).toBe(true);
    }
    expect(value(parsed, "mqtt_bridge_up", { namespace: "a", bridge: "cloud", side: "remote" })).toBe(1);
    expect(value(parsed, "mqtt_bridge_up", { namespace: "a", bridge: "cloud", side: "local" })).toBe(0);
    expect(value(parsed, "mqtt_bridge_up", { namespace: "a", bridge: "lab", side: "remote" })).toBe(0);
    expect(value(parsed, "mqtt_bridge_up", { namespace: "a", bridge: "gone", side: "remote" })).toBe(0);
    expect(value(parsed, "mqtt_bridge_messages_total", { bridge: "cloud", direction: "out" })).toBe(12);
    expect(value(parsed, "mqtt_bridge_messages_total", { bridge: "cloud", direction: "in" })).toBe(5);
    expect(value(parsed, "mqtt_bridge_messages_total", { bridge: "lab", direction: "out" })).toBe(0);
    expect(value(parsed, "mqtt_bridge_dropped_total", { bridge: "cloud" })).toBe(1);
    expect(value(parsed, "mqtt_bridge_reconnects_total", { bridge: "cloud" })).toBe(2);
    expect(value(parsed, "mqtt_bridge_inflight", { bridge: "cloud" })).toBe(3);
    expect(value(parsed, "mqtt_bridge_last_error_timestamp_seconds", { namespace: "a", bridge: "cloud" })).toBe(1795807569.123);
    // no error yet: no sample (not a 0 that reads as 1970); a bridge that could not report: only its up = 0
    expect(family(parsed, "mqtt_bridge_last_error_timestamp_seconds").metrics.map((m) => m.labels?.bridge)).toEqual(["cloud"]);
    expect(family(parsed, "mqtt_bridge_messages_total").metrics.some((m) => m.labels?.bridge === "gone")).toBe(false);
    expect(value(parsed, "mqtt_bridge_config_errors", { namespace: "a" })).toBe(1);
    expect(family(parsed, "mqtt_bridge_config_errors").metrics[0]!.labels).toEqual({ namespace: "a" });
  });

  test("a namespace without bridges: no bridge family at all; config errors alone still show (a bad entry leaves its namespace without bridges)", () => {
    const none = parsePrometheusTextFormat(metricsText([["a", namespaceStats(core()), { bridges: [], errors: [] }], ["b", namespaceStats(core()), null]]));
    expect(none.filter((f) => f.name.startsWith("mqtt_bridge_"))).toEqual([]);
    const bad = parsePrometheusTextFormat(metricsText([["a", namespaceStats(core()), { bridges: [], errors: ["BRIDGES is not valid JSON: x", "y"] }]]));
    expect(bad.filter((f) => f.name.startsWith("mqtt_bridge_")).map((f) => f.name)).toEqual(["mqtt_bridge_config_errors"]);
    expect(value(bad, "mqtt_bridge_config_errors", { namespace: "a" })).toBe(2);
  });

  test("the bridge and namespace label values are escaped", () => {
    const odd = 'n"s\\1\nx';
    const parsed = parsePrometheusTextFormat(metricsText([[odd, namespaceStats(core()), { bridges: [bridge('b"r')], errors: [] }]]));
    expect(family(parsed, "mqtt_bridge_up").metrics[0]!.labels).toEqual({ namespace: odd, bridge: 'b"r', side: "remote" });
  });
});

describe("readMetrics: where the bridges' samples come from", () => {
  /** an Env whose objects record the RPCs made to them */
  function env(bridges: unknown[] | undefined) {
    const calls: string[] = [];
    const objects = (kind: string, method: string, answer: (name: string) => unknown) => ({
      idFromName: (name: string) => name,
      get: (name: string) => ({ [method]: async () => (calls.push(`${kind} ${name}`), answer(name)) }),
    });
    const status = (name: string) => ({ name, namespace: "a", remote: "mqtt://r:1883", connected: { remote: true, local: true }, lastError: null, lastErrorAt: null, queued: 0, sent: 7, received: 0, dropped: 0, reconnects: 0, since: 1, retryAt: null });
    return {
      calls,
      env: { BRIDGES: bridges === undefined ? undefined : JSON.stringify(bridges), BROKER: objects("broker", "stats", () => namespaceStats(core())), BRIDGE: objects("bridge", "ensure", status) } as never,
    };
  }

  test("one ensure RPC per bridge of the namespaces asked for; none for a namespace without bridges, none at all without BRIDGES", async () => {
    const withBridges = env([{ name: "up", namespace: "a", url: "mqtt://r:1883", out: [{ filter: "x/#" }] }, { name: "other", namespace: "c", url: "mqtt://r:1883", out: [{ filter: "x/#" }] }]);
    const parsed = parsePrometheusTextFormat(await readMetrics(withBridges.env, ["a", "b"]));
    expect(withBridges.calls.sort()).toEqual(["bridge up", "broker a", "broker b"]);
    expect(value(parsed, "mqtt_bridge_messages_total", { namespace: "a", bridge: "up", direction: "out" })).toBe(7);
    expect(family(parsed, "mqtt_bridge_up").metrics.some((m) => m.labels?.namespace === "b")).toBe(false);
    expect(parsed.some((f) => f.name === "mqtt_bridge_config_errors" && f.metrics.some((m) => m.labels?.namespace === "b"))).toBe(false);

    const without = env(undefined);
    const plain = parsePrometheusTextFormat(await readMetrics(without.env, ["a"]));
    expect(without.calls).toEqual(["broker a"]);
    expect(plain.filter((f) => f.name.startsWith("mqtt_bridge_"))).toEqual([]);
  });
});

describe("metricsNamespaces", () => {
  const q = (s: string) => metricsNamespaces(new URLSearchParams(s));
  test("default, repeated and comma-separated, without repeats, in order", () => {
    expect(q("")).toEqual(["default"]);
    expect(q("namespace=a&namespace=b")).toEqual(["a", "b"]);
    expect(q("namespaces=a,b&namespace=c&namespaces=b")).toEqual(["a", "b", "c"]);
  });
  test("bad names and too many are refused (400)", () => {
    expect(() => q("namespace=bad/name")).toThrow(InputError);
    expect(() => q("namespaces=a,,b")).toThrow(InputError);
    const many = Array.from({ length: MAX_METRICS_NAMESPACES + 1 }, (_, i) => `n${i}`).join(",");
    expect(() => q(`namespaces=${many}`)).toThrow(/at most 50/);
    expect(q(`namespaces=${many.split(",").slice(0, 50).join(",")}`)).toHaveLength(50);
  });
});

describe("counted by the core", () => {
  test("messages and payload bytes by QoS, in and out", () => {
    const c = core();
    const sub = client(c, "sub");
    sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t/#", qos: 2 }] });
    const pub = client(c, "pub");
    pub.send({ cmd: "publish", topic: "t/0", payload: Buffer.from("abc"), qos: 0, retain: false, dup: false });
    for (let i = 1; i <= 3; i++) pub.send({ cmd: "publish", topic: "t/1", payload: Buffer.from("hello"), qos: 1, messageId: i, retain: false, dup: false });
    pub.send({ cmd: "publish", topic: "t/2", payload: Buffer.from("xy"), qos: 2, messageId: 9, retain: false, dup: false });
    const s = namespaceStats(c);
    expect(s.messagesByQos.received).toEqual([1, 3, 1]);
    expect(s.payloadBytesByQos.received).toEqual([3, 15, 2]);
    expect(s.messagesByQos.sent).toEqual([1, 3, 1]);
    expect(s.payloadBytesByQos.sent).toEqual([3, 15, 2]);
    expect(s.messages.received).toBe(5);
    expect(s.inflight).toBe(4); // sub acknowledged nothing
    expect(s.clients.connected).toBe(2);
  });

  test("drops by reason: a full queue, a $SYS publish; queue depths", () => {
    const c = core({ MAX_QUEUED_MESSAGES: 2, MAX_INFLIGHT: 1 });
    const sub = client(c, "sub");
    sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "q", qos: 1 }] });
    const pub = client(c, "pub");
    // 1 in flight, 2 queued, then 2 dropped for the full queue
    for (let i = 1; i <= 5; i++) pub.send({ cmd: "publish", topic: "q", payload: Buffer.from("m"), qos: 1, messageId: i, retain: false, dup: false });
    const s = namespaceStats(c);
    expect(s.dropped.queue_full).toBe(2);
    expect(s.queued).toEqual({ messages: 2, bytes: 4, maxPerSession: 2 });
    expect(s.inflight).toBe(1);
    c.publish({ topic: "$SYS/x", payload: Buffer.from("no"), qos: 0, retain: false });
    expect(namespaceStats(c).dropped.not_authorized).toBe(1);
  });
});

test("drops at the door and on delivery: rate limited, over the topic limits, expired; auth failures", () => {
  const c = core({ MAX_PUBLISH_RATE: 1, PUBLISH_BURST: 1, MAX_TOPIC_LEVELS: 2 });
  const sub = client(c, "sub");
  sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "#", qos: 0 }] });
  const pub = client(c, "pub");
  pub.send({ cmd: "publish", topic: "a/b/c", payload: Buffer.from("deep"), qos: 0, retain: false, dup: false });
  expect(namespaceStats(c).dropped.limits).toBe(1);
  pub.send({ cmd: "publish", topic: "a/b", payload: Buffer.from("over the rate"), qos: 0, retain: false, dup: false });
  expect(namespaceStats(c).dropped.rate_limited).toBe(1);
  expect(pub.conn.state).toBe("closed"); // 0x96: the connection ends
  c.publish({ topic: "a/x", payload: Buffer.from("stale"), qos: 0, retain: false, expiresAt: 500 }); // now is 1000
  const s = namespaceStats(c);
  expect(s.dropped.expired).toBe(1);
  expect(s.messagesByQos.sent).toEqual([0, 0, 0]);
  expect(Object.values(s.dropped).reduce((a, b) => a + b, 0)).toBe(3);
  expect(s.authFailures).toBe(0);
});

test("the client detail's history is the client's lifecycle history", () => {
  const c = core();
  client(c, "dev", false);
  expect(clientDetail(c, "dev")!.history).toMatchObject([{ event: "connected", time: 1000 }]);
  expect(clientDetail(c, "nobody")).toBeNull();
});

describe("a namespace over several shards", () => {
  test("per-shard families, labelled shard, from the merged stats; the namespace's own families are the sums", () => {
    const shards = [0, 1, 2].map((i) => {
      const s = namespaceStats(core());
      s.clients.connected = i + 1;
      s.events.rpc = 10 * i;
      s.shard = { index: i, k: 3, forwardedIn: i, forwardedMessages: 0, forwardedCopies: 2 * i, linkCalls: 0, linkFailures: 0, pendingChunks: 0, forwardedUnmatched: 0 };
      return s;
    });
    const merged = mergeStats(shards);
    const parsed = parsePrometheusTextFormat(metricsText([["m", merged]]));
    expect(value(parsed, "mqtt_connections", { namespace: "m" })).toBe(6);
    for (let i = 0; i < 3; i++) {
      expect(value(parsed, "mqtt_shard_connections", { namespace: "m", shard: String(i) })).toBe(i + 1);
      expect(value(parsed, "mqtt_shard_events_rpc_total", { namespace: "m", shard: String(i) })).toBe(10 * i);
      expect(value(parsed, "mqtt_shard_forwarded_out_total", { namespace: "m", shard: String(i) })).toBe(2 * i);
    }
  });
});
