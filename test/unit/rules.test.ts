// Rules (src/rules): RULES parsing, the retry schedule, the webhook signature, the message shape,
// and the outbox over the memory store with fake destinations.
import { describe, expect, test } from "vitest";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { Buffer } from "node:buffer";
import { parseRules } from "../../src/rules/config";
import { givenUp, retryDelay } from "../../src/rules/retry";
import { importSigningKey, signature } from "../../src/rules/sign";
import { ruleMessage } from "../../src/rules/message";
import { RuleEngine, type RulesHost } from "../../src/rules/engine";
import { loadRules } from "../../src/rules/setup";
import { makeDestination, type Destination } from "../../src/rules/destinations";
import type { TakenMessage } from "../../src/rules/message";
import { MemoryStore } from "../../src/storage/memory-store";
import { DEFAULTS, type BrokerConfig } from "../../src/config";

const queue = { sendBatch: async () => undefined };
const env = { Q: queue, W: { onMessages: () => undefined }, HOOK_SECRET: "s3cret", NOT_A_QUEUE: {} };

describe("RULES parsing", () => {
  test("valid rules of each kind, with defaults", () => {
    const { rules, errors } = parseRules(
      JSON.stringify([
        { filter: "sensors/#", to: "queue:Q" },
        { name: "rpc", filter: "+/alerts", to: "worker:W", qos: 0, timeout: 2.5 },
        { name: "hook", filter: "a/b", to: "webhook:https://example.com/in?x=1", secret: "HOOK_SECRET", format: "raw" },
        { name: "local", filter: "#", to: "webhook:http://127.0.0.1:8080/hook" },
      ]),
      env,
    );
    expect(errors).toEqual([]);
    expect(rules).toEqual([
      { name: "queue:Q sensors/#", filter: "sensors/#", to: { kind: "queue", binding: "Q" }, format: "json", timeoutMs: 10_000, qos: 1 },
      { name: "rpc", filter: "+/alerts", to: { kind: "worker", binding: "W" }, format: "json", timeoutMs: 2500, qos: 0 },
      { name: "hook", filter: "a/b", to: { kind: "webhook", url: "https://example.com/in?x=1" }, secret: "HOOK_SECRET", format: "raw", timeoutMs: 10_000, qos: 1 },
      { name: "local", filter: "#", to: { kind: "webhook", url: "http://127.0.0.1:8080/hook" }, format: "json", timeoutMs: 10_000, qos: 1 },
    ]);
  });

  test("a webhook's default name leaves out its query string (it may hold a token): names are logged, counted and sent", () => {
    const { rules } = parseRules(JSON.stringify([{ filter: "a/#", to: "webhook:https://hooks.example/in?token=s3cr3t" }]), env);
    expect(rules[0]!.name).toBe("webhook:https://hooks.example/in?... a/#");
    expect(rules[0]!.to).toEqual({ kind: "webhook", url: "https://hooks.example/in?token=s3cr3t" }); // sent to the full URL
    const logs: string[] = [];
    const engine = loadRules({ RULES: JSON.stringify([{ filter: "b/#", to: "webhook:https://hooks.example/b?token=s3cr3t" }]) }, "ns", {
      store: new MemoryStore(), config: DEFAULTS, now: () => 0, wakeAt: () => {}, later: () => {}, log: (_l, m) => void logs.push(m),
    });
    expect(logs.join("\n")).not.toContain("s3cr3t");
    expect(JSON.stringify(engine!.stats())).not.toContain("s3cr3t");
  });

  test("a default name that cannot be a name (a UTF-8 filter, a long URL) asks for a name instead of blaming one never given", () => {
    const { rules, errors } = parseRules(
      JSON.stringify([
        { filter: "température/#", to: "queue:Q" },
        { filter: "a/#", to: `webhook:https://example.com/${"x".repeat(200)}` },
        { name: "temp", filter: "température/#", to: "queue:Q" },
      ]),
      env,
    );
    expect(rules.map((r) => r.name)).toEqual(["temp"]);
    expect(errors).toHaveLength(2);
    for (const e of errors) expect(e).toMatch(/the default name .* give the rule a "name"/);
  });

  test("absent or empty RULES: no rules, no errors", () => {
    expect(parseRules(undefined, env)).toEqual({ rules: [], errors: [] });
    expect(parseRules("", env)).toEqual({ rules: [], errors: [] });
  });

  test("RULES that is not JSON or not an array: no rules, one clear error", () => {
    expect(parseRules("[{", env).errors[0]).toMatch(/^RULES is not valid JSON .*no rules are active/);
    expect(parseRules('{"filter":"a"}', env).errors).toEqual(["RULES must be a JSON array of rules: no rules are active"]);
  });

  test.each([
    [{ filter: "a/#", to: "kafka:X" }, /unknown destination kind "kafka"/],
    [{ filter: "a/#", to: "queue:MISSING" }, /no Queue producer binding "MISSING"/],
    [{ filter: "a/#", to: "queue:NOT_A_QUEUE" }, /no Queue producer binding "NOT_A_QUEUE"/],
    [{ filter: "a/#", to: "worker:NOPE" }, /no service binding "NOPE"/],
    [{ filter: "a/#", to: "queue:" }, /needs a binding name/],
    [{ filter: "a/#/b", to: "queue:Q" }, /valid MQTT topic filter/],
    [{ filter: "a+", to: "queue:Q" }, /valid MQTT topic filter/],
    [{ filter: "", to: "queue:Q" }, /valid MQTT topic filter/],
    [{ filter: "$share/g/a", to: "queue:Q" }, /shared subscription/],
    [{ filter: "$SYS/#", to: "queue:Q" }, /\$SYS topics are the broker's own/],
    [{ filter: "a", to: "webhook:http://example.com/x" }, /https:\/\/ \(http:\/\/ only to localhost/],
    [{ filter: "a", to: "webhook:ftp://localhost/x" }, /must use https/],
    [{ filter: "a", to: "webhook:not a url" }, /is not a URL/],
    [{ filter: "a", to: "webhook:https://u:p@example.com/" }, /no credentials/],
    [{ filter: "a", to: "webhook:https://example.com/", secret: "UNSET" }, /the secret "UNSET" is not set/],
    [{ filter: "a", to: "queue:Q", secret: "HOOK_SECRET" }, /"secret" is for webhooks only/],
    [{ filter: "a", to: "queue:Q", format: "raw" }, /for webhooks only/],
    [{ filter: "a", to: "queue:Q", format: "xml" }, /"format" must be/],
    [{ filter: "a", to: "queue:Q", timeout: 0 }, /"timeout" must be/],
    [{ filter: "a", to: "queue:Q", timeout: 61 }, /"timeout" must be/],
    [{ filter: "a", to: "queue:Q", qos: 2 }, /"qos" must be 0/],
    [{ filter: "a", to: "queue:Q", filtr: "x" }, /unknown field "filtr"/],
    [{ filter: "a", to: "queue:Q", name: "" }, /"name" must be/],
    ["a string", /must be a JSON object/],
  ])("a bad rule is left out with its reason, the others still run: %j", (bad, reason) => {
    const { rules, errors } = parseRules(JSON.stringify([bad, { name: "ok", filter: "x", to: "queue:Q" }]), env);
    expect(rules.map((r) => r.name)).toEqual(["ok"]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^RULES\[0\] is left out: /);
    expect(errors[0]).toMatch(reason);
  });

  test("the example in docs/rules.md parses: 4 rules, no errors", () => {
    const doc = readFileSync("docs/rules.md", "utf8");
    const text = doc.slice(doc.indexOf("RULES = '''") + 11, doc.indexOf("'''", doc.indexOf("RULES = '''") + 11));
    const { rules, errors } = parseRules(text, { TELEMETRY_QUEUE: queue, ALERTS: {}, AUDIT_HOOK_SECRET: "k" });
    expect(errors).toEqual([]);
    expect(rules.map((r) => `${r.name} ${r.to.kind} ${r.format} ${r.qos}`)).toEqual(["telemetry queue json 1", "alerts worker json 1", "audit webhook json 1", "camera webhook raw 0"]);
  });

  test("names are unique: a second rule of the same name is left out", () => {
    const { rules, errors } = parseRules(JSON.stringify([{ name: "r", filter: "a", to: "queue:Q" }, { name: "r", filter: "b", to: "queue:Q" }]), env);
    expect(rules.map((r) => r.filter)).toEqual(["a"]);
    expect(errors).toEqual(['RULES[1] is left out: the name "r" is taken by an earlier rule']);
  });
});

describe("retry schedule", () => {
  test("RULES_RETRY_BASE doubling up to RULES_RETRY_MAX (defaults: 1 s … 5 min)", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 100, 5000].map((n) => retryDelay(n, DEFAULTS))).toEqual([
      1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000, 300_000, 300_000,
    ]);
    expect([1, 2, 3, 4].map((n) => retryDelay(n, { RULES_RETRY_BASE: 0.25, RULES_RETRY_MAX: 1 }))).toEqual([250, 500, 1000, 1000]);
    expect(retryDelay(1, { RULES_RETRY_BASE: 0, RULES_RETRY_MAX: 0 })).toBe(100); // never a loop of alarms
  });

  test("given up after RULES_MAX_ATTEMPTS failures or RULES_MAX_AGE seconds", () => {
    const c = { RULES_MAX_ATTEMPTS: 3, RULES_MAX_AGE: 60 };
    expect(givenUp(2, 0, 59_999, c)).toBe(false);
    expect(givenUp(3, 0, 1, c)).toBe(true);
    expect(givenUp(1, 0, 60_000, c)).toBe(true);
  });
});

describe("webhook signature", () => {
  test("sha256=<hex HMAC-SHA256 of the body>, as node:crypto computes it", async () => {
    const body = new TextEncoder().encode(JSON.stringify({ messages: [{ topic: "a", payload: "AAE=" }] }));
    const expected = "sha256=" + createHmac("sha256", "s3cret").update(body).digest("hex");
    expect(await signature(await importSigningKey("s3cret"), body)).toBe(expected);
    expect(await signature(await importSigningKey("other"), body)).not.toBe(expected);
  });
});

describe("message shape", () => {
  const taken = (payload: Uint8Array, more: Partial<TakenMessage["msg"]> = {}): TakenMessage => ({
    msg: { topic: "sensors/t1", payload, qos: 1, retain: true, ...more },
    clientId: "dev-1",
    createdAt: 1_700_000_000_000,
    attempts: 2,
  });

  test("text payload: base64 and payloadText; no properties when none", () => {
    expect(ruleMessage(taken(Buffer.from("21.5 °C")), "home", "r1")).toEqual({
      namespace: "home",
      rule: "r1",
      topic: "sensors/t1",
      payload: Buffer.from("21.5 °C").toString("base64"),
      payloadText: "21.5 °C",
      qos: 1,
      retain: true,
      clientId: "dev-1",
      time: 1_700_000_000_000,
      attempt: 3,
    });
  });

  test("binary payload: base64 only; MQTT 5 properties with correlation data in base64", () => {
    const m = ruleMessage(
      taken(new Uint8Array([0xff, 0x00, 0xfe]), {
        properties: { contentType: "application/x", responseTopic: "re/1", correlationData: Buffer.from([1, 2, 3]), userProperties: { a: "1", b: ["x", "y"] }, messageExpiryInterval: 30, payloadFormatIndicator: false },
      }),
      "",
      "r",
    );
    expect(m.payload).toBe("/wD+");
    expect("payloadText" in m).toBe(false);
    expect(m.properties).toEqual({ contentType: "application/x", responseTopic: "re/1", correlationData: "AQID", userProperties: { a: "1", b: ["x", "y"] }, messageExpiryInterval: 30, payloadFormatIndicator: false });
    expect(JSON.parse(JSON.stringify(m))).toEqual(m); // JSON all the way
  });

  test("a payload view into a larger buffer is encoded as its own bytes", () => {
    const big = Buffer.from("xxhelloxx");
    expect(ruleMessage(taken(big.subarray(2, 7)), "", "r").payload).toBe(Buffer.from("hello").toString("base64"));
  });
});

describe("Queue destination", () => {
  test("batches stay under the Queue's bytes per sendBatch; a message too large for any Queue is returned as rejected", async () => {
    const calls: { body: { topic: string } }[][] = [];
    const env = { Q: { sendBatch: async (m: { body: { topic: string } }[]) => void calls.push(m) } };
    const dest = makeDestination({ name: "q", filter: "#", to: { kind: "queue", binding: "Q" }, format: "json", timeoutMs: 1000, qos: 1 }, env, "ns");
    const t = (topic: string, bytes: number): TakenMessage => ({ msg: { topic, payload: new Uint8Array(bytes).fill(0x41), qos: 1, retain: false }, clientId: null, createdAt: 0, attempts: 0 });
    // 40 KB of text is about 93 KB of JSON (base64 and payloadText): two fit a sendBatch; 100 KB is too large
    const rejected = await dest.send([t("a", 40_000), t("b", 40_000), t("big", 100_000), t("c", 40_000)], new AbortController().signal);
    expect(rejected).toEqual([2]);
    expect(calls.map((c) => c.map((m) => m.body.topic))).toEqual([["a", "b"], ["c"]]);
  });
});

describe("outbox", () => {
  /** A host over the memory store with a hand-driven clock, timers and alarm. */
  function setup(kinds: Record<string, { filter: string; qos?: 0 | 1 }>, config: Partial<BrokerConfig> = {}) {
    const store = new MemoryStore();
    let now = 1000;
    const laters: (() => void)[] = [];
    const wakes: number[] = [];
    const logs: string[] = [];
    const host: RulesHost = {
      store,
      config: { ...DEFAULTS, ...config },
      now: () => now,
      wakeAt: (ms) => void wakes.push(ms),
      later: (fn) => void laters.push(fn),
      log: (level, m) => void logs.push(`${level}: ${m}`),
    };
    const sent: Record<string, string[][]> = {};
    let fail: Error | null = null;
    const routes = Object.entries(kinds).map(([name, k]) => {
      const dest: Destination = {
        batchSize: 100,
        async send(batch) {
          if (fail) throw fail;
          (sent[name] ??= []).push(batch.map((t) => `${t.msg.topic}#${t.attempts + 1}`));
        },
      };
      return { rule: { name, filter: k.filter, to: { kind: "queue" as const, binding: "Q" }, format: "json" as const, timeoutMs: 1000, qos: k.qos ?? 1 }, dest };
    });
    const engine = new RuleEngine(routes, host);
    const run = async () => {
      while (laters.length) laters.shift()!();
      for (let i = 0; i < 5; i++) await Promise.resolve();
    };
    return {
      store, engine, sent, logs, wakes, run,
      tick: (ms: number) => void (now += ms),
      get now() { return now; },
      failWith: (e: Error | null) => void (fail = e),
    };
  }
  const msg = (topic: string, qos: 0 | 1 | 2 = 1, origin?: string) => ({ topic, payload: Buffer.from("p"), qos, retain: false, origin });

  test("QoS >= 1: stored when offered (before any send), sent in one batch per rule in a later turn, then deleted", async () => {
    const t = setup({ a: { filter: "s/#" }, b: { filter: "s/+" } });
    t.engine.offer(msg("s/1", 1, "c1"));
    t.engine.offer(msg("s/2", 2));
    t.engine.offer(msg("x/1", 1));
    expect(t.store.countRuleSends()).toBe(4); // 2 messages × 2 rules, written in the publishing event
    expect(t.sent).toEqual({});
    await t.run();
    expect(t.sent).toEqual({ a: [["s/1#1", "s/2#1"]], b: [["s/1#1", "s/2#1"]] });
    expect(t.store.countRuleSends()).toBe(0);
    expect(t.engine.stats().total).toMatchObject({ matched: 4, delivered: 4, failedSends: 0 });
  });

  test("QoS 0 and qos:0 rules are never stored; a failed send loses them (at most once)", async () => {
    const t = setup({ a: { filter: "#" }, zero: { filter: "#", qos: 0 } });
    t.engine.offer(msg("t", 0));
    t.engine.offer(msg("u", 1));
    expect(t.store.countRuleSends()).toBe(1); // only "u" through rule a
    t.failWith(new Error("down"));
    await t.run();
    const s = t.engine.stats();
    expect(s.rules.find((r) => r.name === "zero")).toMatchObject({ lost: 2, failedSends: 1 });
    expect(s.rules.find((r) => r.name === "a")).toMatchObject({ lost: 1, failedSends: 1, dropped: 0 });
    expect(s.pending).toBe(1);
  });

  test("a failed stored send is retried from the alarm with backoff, then dropped after RULES_MAX_ATTEMPTS", async () => {
    const t = setup({ a: { filter: "#" } }, { RULES_MAX_ATTEMPTS: 3, RULES_RETRY_BASE: 1, RULES_RETRY_MAX: 300 });
    t.failWith(new Error("HTTP 500"));
    t.engine.offer(msg("t"));
    await t.run();
    expect(t.store.dueRuleSends(Infinity, 10).map((r) => [r.attempts, r.nextAt - t.now])).toEqual([[1, 1000]]);
    expect(t.wakes).toContain(t.now + 1000);
    t.tick(999);
    t.engine.due(t.now); // not yet due: nothing sent
    await t.run();
    expect(t.store.dueRuleSends(Infinity, 10)[0]!.attempts).toBe(1);
    t.tick(1);
    t.engine.due(t.now);
    await t.run();
    expect(t.store.dueRuleSends(Infinity, 10).map((r) => [r.attempts, r.nextAt - t.now])).toEqual([[2, 2000]]);
    t.tick(2000);
    t.engine.due(t.now);
    await t.run();
    expect(t.store.countRuleSends()).toBe(0);
    expect(t.engine.stats().total).toMatchObject({ dropped: 1, failedSends: 3, delivered: 0 });
    expect(t.logs.some((l) => /^error: rules: "a": .*1 dropped after 3 attempts/.test(l))).toBe(true);
  });

  test("a retry that succeeds says its attempt number; a restart (new engine on the same store) takes pending sends up", async () => {
    const t = setup({ a: { filter: "#" } });
    t.failWith(new Error("down"));
    t.engine.offer(msg("t"));
    await t.run();
    t.failWith(null);
    t.tick(1000);
    t.engine.due(t.now);
    await t.run();
    expect(t.sent).toEqual({ a: [["t#2"]] });

    // a send under way when the object stopped: its lease ends, then the alarm sends it again
    const u = setup({ a: { filter: "#" } });
    u.engine.offer(msg("v"));
    const revived = new RuleEngine([{ rule: { name: "a", filter: "#", to: { kind: "queue", binding: "Q" }, format: "json", timeoutMs: 1000, qos: 1 }, dest: { batchSize: 100, send: async (b) => void (u.sent.b ??= []).push(b.map((x) => x.msg.topic)) } }], {
      store: u.store, config: DEFAULTS, now: () => u.now, wakeAt: () => {}, later: (fn) => fn(), log: () => {},
    });
    const settle = async () => {
      for (let i = 0; i < 5; i++) await Promise.resolve();
    };
    revived.due(u.now); // (the first engine's send never starts: it "stopped")
    await settle();
    expect(u.sent.b).toBeUndefined(); // lease not over
    u.tick(6000);
    revived.due(u.now);
    await settle();
    expect(u.sent.b).toEqual([["v"]]);
    expect(u.store.countRuleSends()).toBe(0);
  });

  test("a stored send waiting behind a busy rule is not taken up twice by the alarm, and its time moves on", async () => {
    const t = setup({ a: { filter: "#" } });
    const gates: (() => void)[] = [];
    const sent: string[] = [];
    const slow: Destination = { batchSize: 100, send: (batch) => new Promise<void>((resolve) => gates.push(() => (sent.push(...batch.map((b) => b.msg.topic)), resolve()))) };
    const engine = new RuleEngine([{ rule: { name: "a", filter: "#", to: { kind: "queue", binding: "Q" }, format: "json", timeoutMs: 60_000, qos: 1 }, dest: slow }], {
      store: t.store, config: DEFAULTS, now: () => t.now, wakeAt: () => {}, later: (fn) => fn(), log: () => {},
    });
    for (const topic of ["1", "2", "3", "4", "5"]) engine.offer(msg(topic)); // 4 sends under way, "5" waits
    expect(gates).toHaveLength(4);
    t.tick(70_000); // past every lease
    engine.due(t.now);
    expect(gates).toHaveLength(4); // "5" is not taken up again
    expect(t.store.nextRuleSendAt()).toBeGreaterThan(t.now); // nor left due (an alarm loop)
    for (let i = 0; i < 5; i++) {
      gates.shift()?.();
      for (let j = 0; j < 5; j++) await Promise.resolve();
    }
    expect(sent.sort()).toEqual(["1", "2", "3", "4", "5"]);
    expect(t.store.countRuleSends()).toBe(0);
  });

  test("# does not match $ topics; a $ filter does [MQTT-4.7.2-1]", async () => {
    const t = setup({ all: { filter: "#" }, plus: { filter: "+/x" }, dollar: { filter: "$app/#" } });
    t.engine.offer(msg("$app/x", 0));
    t.engine.offer(msg("a/x", 0));
    await t.run();
    expect(t.sent).toEqual({ all: [["a/x#1"]], plus: [["a/x#1"]], dollar: [["$app/x#1"]] });
  });

  describe("memory stays bounded with large messages (MAX_PACKET_SIZE is 1 MiB; an isolate has 128 MB)", () => {
    const MiB = 1024 * 1024;
    const big = (topic: string, qos: 0 | 1 = 1) => ({ topic, payload: new Uint8Array(MiB), qos, retain: false });
    const bytes = (batch: readonly TakenMessage[]) => batch.reduce((n, t) => n + t.msg.payload.byteLength, 0);
    /** an engine whose destination holds every send open until released; records each send's payload bytes */
    function stalled(store: MemoryStore, clock: () => number, later: (fn: () => void) => void = (fn) => fn()) {
      const sends: number[] = [];
      const gates: (() => void)[] = [];
      const dest: Destination = { batchSize: 100, send: (batch) => new Promise<void>((resolve) => (sends.push(bytes(batch)), gates.push(resolve))) };
      const engine = new RuleEngine([{ rule: { name: "a", filter: "#", to: { kind: "webhook", url: "https://x.test/" }, format: "json", timeoutMs: 60_000, qos: 1 }, dest }], {
        store, config: DEFAULTS, now: clock, wakeAt: () => {}, later, log: () => {},
      });
      const held = () => {
        const route = (engine as unknown as { routes: Map<string, { batch: TakenMessage[] }> }).routes.get("a")!;
        return bytes(route.batch) + sends.reduce((n, b) => n + b, 0);
      };
      return { engine, sends, gates, held };
    }

    test("one send carries at most about 1 MiB of payloads (a JSON body of 100 × 1 MiB would be ~270 MB of strings)", () => {
      const store = new MemoryStore();
      const laters: (() => void)[] = [];
      const { engine, sends } = stalled(store, () => 1000, (fn) => void laters.push(fn));
      for (let i = 0; i < 20; i++) engine.offer(big(`t/${i}`)); // one event's messages: one batch
      while (laters.length) laters.shift()!();
      expect(sends.length).toBeGreaterThan(0);
      for (const n of sends) expect(n).toBeLessThanOrEqual(MiB);
    });

    test("messages waiting in memory (batches and sends under way) are bounded in bytes; the rest wait in storage", () => {
      const store = new MemoryStore();
      const { engine, held } = stalled(store, () => 1000);
      for (let i = 0; i < 200; i++) engine.offer(big(`t/${i}`));
      expect(store.countRuleSends()).toBe(200); // all taken (stored), for the alarm to send later
      expect(held()).toBeLessThanOrEqual(32 * MiB);
    });

    test("the alarm loads due sends up to the memory bound, not 500 rows of 1 MiB", () => {
      const store = new MemoryStore();
      for (let i = 0; i < 300; i++) store.addRuleSend("a", big(`t/${i}`), null, 0, 0); // a previous life's pending sends
      let loaded = 0;
      const due = store.dueRuleSends.bind(store);
      store.dueRuleSends = (...args: Parameters<MemoryStore["dueRuleSends"]>) => {
        const rows = due(...args);
        loaded += rows.reduce((n, r) => n + r.msg.payload.byteLength, 0);
        return rows;
      };
      const { engine, held } = stalled(store, () => 1000);
      engine.due(1000);
      expect(loaded).toBeLessThanOrEqual(32 * MiB + MiB);
      expect(held()).toBeLessThanOrEqual(32 * MiB);
      expect(engine.nextWake()).toBeGreaterThan(1000); // what was not loaded does not make the alarm fire again at once (no loop)
    });
  });

  test("pending sends of a rule that RULES no longer has: dropped with one log line per alarm, not one per row", () => {
    const t = setup({ a: { filter: "#" } });
    for (let i = 0; i < 300; i++) t.store.addRuleSend("renamed", msg(`t/${i}`), null, 0, 0);
    const engine = new RuleEngine([], { store: t.store, config: DEFAULTS, now: () => t.now, wakeAt: () => {}, later: () => {}, log: (l, m) => void t.logs.push(`${l}: ${m}`) });
    engine.due(t.now);
    expect(t.store.countRuleSends()).toBe(0);
    const lines = t.logs.filter((l) => l.includes("renamed"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/300 pending send/);
  });

  test("RULES_MAX_PENDING: a QoS 1 message beyond it is not taken, and counted", async () => {
    const t = setup({ a: { filter: "#" } }, { RULES_MAX_PENDING: 2 });
    for (const topic of ["1", "2", "3"]) t.engine.offer(msg(topic));
    expect(t.store.countRuleSends()).toBe(2);
    expect(t.engine.stats().total.overflow).toBe(1);
  });
});
