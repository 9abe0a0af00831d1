// Lifecycle events (broker/lifecycle.ts): the EVENTS syntax, the reason words, the topics and JSON
// shapes, what an event costs when nobody listens, the history; on the pure core (plain Node, a
// fake clock, an in-memory store).
import { afterEach, describe, expect, test, vi } from "vitest";
import * as mqtt from "mqtt-packet";
import { BrokerCore, type Runtime } from "../../src/broker/core";
import { Connection } from "../../src/broker/connection";
import { DEFAULTS, loadConfig, type BrokerConfig } from "../../src/config";
import { Authenticator } from "../../src/auth/authenticator";
import { MemoryStore } from "../../src/storage/memory-store";
import { HISTORY_CLIENTS, HISTORY_PER_CLIENT, eventTopic, isEventTopic, parseEvents, reasonWords, topicLevel } from "../../src/broker/lifecycle";
import { ProtocolError } from "../../src/protocol/errors";
import { RuleEngine } from "../../src/rules/engine";
import { inspect } from "../../src/broker/inspect";
import type { Rule } from "../../src/rules/config";

describe("EVENTS parsing", () => {
  const on = (value: string) =>
    Object.entries(parseEvents(value).on)
      .filter(([, v]) => v)
      .map(([k]) => k);

  test("the default: client events and session expiry, not the subscription events", () => {
    expect(DEFAULTS.EVENTS).toBe("connected,disconnected,expired");
    expect(on(DEFAULTS.EVENTS)).toEqual(["connected", "disconnected", "expired"]);
    expect(on(loadConfig({}).EVENTS)).toEqual(["connected", "disconnected", "expired"]);
    expect(loadConfig({}).PRESENCE_RETAINED).toBe(false);
  });

  test("names, all, none, default; case and spaces ignored", () => {
    expect(on("all")).toEqual(["connected", "disconnected", "expired", "subscribed", "unsubscribed"]);
    expect(on("none")).toEqual([]);
    expect(on(" Default , SUBSCRIBED")).toEqual(["connected", "disconnected", "expired", "subscribed"]);
    expect(on("disconnected")).toEqual(["disconnected"]);
    expect(on("unsubscribed,,connected")).toEqual(["connected", "unsubscribed"]);
  });

  test("unknown names are reported and ignored", () => {
    const r = parseEvents("connected, conected ,presence");
    expect(r.unknown).toEqual(["conected", "presence"]);
    expect(r.on.connected).toBe(true);
    expect(r.on.disconnected).toBe(false);
  });

  test("an unknown name is logged once when the broker starts", () => {
    const logs: string[] = [];
    const runtime: Runtime = { now: () => 0, wakeAt: () => {}, rearm: () => {}, later: (fn) => fn(), log: (_l, m) => void logs.push(m) };
    new BrokerCore(new MemoryStore(), { ...DEFAULTS, EVENTS: "connected,bogus" }, runtime, Authenticator.open());
    expect(logs.filter((l) => l.includes("EVENTS"))).toEqual([expect.stringMatching(/unknown event names ignored: bogus/)]);
  });
});

describe("reason words", () => {
  test.each([
    [{ code: 0, by: "client" }, "normal disconnect"],
    [{ code: 0x04, by: "client" }, "disconnect with will"],
    [{ code: 0x80, by: "client" }, "client error"],
    [{ code: null, by: "socket" }, "socket lost"],
    [{ code: null, by: "restart" }, "server restart"],
    [{ code: 0x8d, by: "server" }, "keep-alive expired"],
    [{ code: 0x8e, by: "server" }, "takeover"],
    [{ code: 0x98, by: "server" }, "administrative disconnect"],
    [{ code: 0xa0, by: "server" }, "token expired"],
    [{ code: 0x8b, by: "server" }, "server shutting down"],
    [{ code: 0x83, by: "server" }, "internal error"],
    [{ code: 0x81, by: "server" }, "protocol error"],
    [{ code: 0x82, by: "server" }, "protocol error"],
    [{ code: 0x96, by: "server" }, "protocol error"],
  ] as const)("%o → %s", (end, words) => {
    expect(reasonWords(end)).toBe(words);
  });
});

describe("topics", () => {
  test("a client id is one topic level: / + # % and NUL percent-encoded", () => {
    expect(topicLevel("dev-1")).toBe("dev-1");
    expect(topicLevel("a/b+c#d%e\u0000")).toBe("a%2Fb%2Bc%23d%25e%00");
    expect(eventTopic.connected("a/b")).toBe("$events/clients/a%2Fb/connected");
    expect(eventTopic.expired("x")).toBe("$events/sessions/x/expired");
    expect(eventTopic.subscribed("x")).toBe("$events/subscriptions/x/subscribed");
    expect(eventTopic.presence("x")).toBe("$events/presence/x");
  });

  test("$events topics are recognised, look-alikes are not", () => {
    expect(isEventTopic("$events")).toBe(true);
    expect(isEventTopic("$events/x")).toBe(true);
    expect(isEventTopic("$eventsx")).toBe(false);
    expect(isEventTopic("events/x")).toBe(false);
    expect(isEventTopic("$SYS/x")).toBe(false);
  });
});

// ——— on the pure core ———

function setup(config: Partial<BrokerConfig> = {}) {
  let now = 1_000_000;
  const store = new MemoryStore();
  const runtime: Runtime = { now: () => now, wakeAt: () => {}, rearm: () => {}, later: (fn) => fn(), log: () => {} };
  const core = new BrokerCore(store, { ...DEFAULTS, ...config }, runtime, Authenticator.open());

  function client(clientId: string, opts: { version?: 4 | 5; clean?: boolean; keepalive?: number; expiry?: number; will?: boolean } = {}) {
    const version = opts.version ?? 5;
    const received: mqtt.Packet[] = [];
    const parser = mqtt.parser({ protocolVersion: version });
    parser.on("packet", (p) => received.push(p));
    const transport = { send: (b: Uint8Array) => void parser.parse(Buffer.from(b)), close: () => {}, saveAttachment: () => {} };
    const conn = new Connection(transport, core.config, { seen: now, at: now }, core.counters);
    core.open(conn);
    const send = (p: mqtt.Packet) => core.receive(conn, new Uint8Array(mqtt.generate(p, { protocolVersion: version })).buffer);
    send({
      cmd: "connect",
      clientId,
      protocolVersion: version,
      protocolId: "MQTT",
      clean: opts.clean ?? true,
      keepalive: opts.keepalive ?? 0,
      properties: version === 5 && opts.expiry ? { sessionExpiryInterval: opts.expiry } : undefined,
      will: opts.will ? { topic: "wills/" + clientId, payload: Buffer.from("gone"), qos: 0, retain: false } : undefined,
    } as mqtt.IConnectPacket);
    const events = () =>
      received
        .filter((p): p is mqtt.IPublishPacket => p.cmd === "publish" && p.topic.startsWith("$events/"))
        .map((p) => ({ topic: p.topic, qos: p.qos, body: p.topic.startsWith("$events/presence/") ? p.payload.toString() : JSON.parse(p.payload.toString()) }));
    return { conn, send, received, events };
  }
  return {
    core,
    store,
    client,
    advance(ms: number) {
      now += ms;
    },
    get now() {
      return now;
    },
  };
}

const subscribe = (topic: string, qos: 0 | 1 | 2 = 1, messageId = 1): mqtt.ISubscribePacket => ({ cmd: "subscribe", messageId, subscriptions: [{ topic, qos }] });

afterEach(() => vi.restoreAllMocks());

describe("event shapes", () => {
  test("connected and disconnected carry the client's facts; a DISCONNECT 0x04 publishes the will", () => {
    const t = setup();
    const monitor = t.client("monitor");
    monitor.send(subscribe("$events/#", 2));
    const dev = t.client("dev", { version: 5, keepalive: 30, expiry: 60, will: true });
    t.advance(5);
    dev.send({ cmd: "disconnect", reasonCode: 0x04 });
    const [connected, disconnected] = monitor.events();
    expect(connected).toEqual({
      topic: "$events/clients/dev/connected",
      qos: 1, // min(1, granted 2)
      body: { event: "connected", clientId: "dev", username: null, protocolVersion: 5, keepalive: 30, sessionExpiry: 60, time: 1_000_000, cleanStart: true, sessionPresent: false },
    });
    expect(disconnected).toEqual({
      topic: "$events/clients/dev/disconnected",
      qos: 1,
      body: {
        event: "disconnected",
        clientId: "dev",
        username: null,
        protocolVersion: 5,
        keepalive: 30,
        sessionExpiry: 60,
        time: 1_000_005,
        reason: "disconnect with will",
        reasonCode: 4,
        willPublished: true,
        willDelayed: false,
      },
    });
    expect(t.core.lifecycle.published).toBe(2);
  });

  test("QoS 0 subscribers get QoS 0; MQTT 5 ones see a JSON content type", () => {
    const t = setup();
    const monitor = t.client("monitor");
    monitor.send(subscribe("$events/clients/+/connected", 0));
    t.client("x", { version: 4 });
    const p = monitor.received.find((x): x is mqtt.IPublishPacket => x.cmd === "publish")!;
    expect(p.qos).toBe(0);
    expect(p.properties).toMatchObject({ payloadFormatIndicator: true, contentType: "application/json" });
    expect(JSON.parse(p.payload.toString())).toMatchObject({ clientId: "x", protocolVersion: 4, keepalive: 0, sessionExpiry: 0, cleanStart: true });
  });

  test("each end's reason: socket lost, keep-alive, protocol error with its code, takeover, token expiry", () => {
    const t = setup();
    const monitor = t.client("monitor");
    monitor.send(subscribe("$events/clients/+/disconnected"));
    const lost = t.client("lost", { will: true });
    t.core.socketClosed(lost.conn);
    const idle = t.client("idle", { keepalive: 1 });
    t.advance(1600);
    t.core.alarm();
    const bad = t.client("bad");
    t.core.receive(bad.conn, new Uint8Array([0x30, 0x02, 0xff, 0xff]).buffer); // PUBLISH with a topic length past its end
    t.client("taken");
    t.client("taken"); // takes the session over
    const token = t.client("token");
    t.core.fail(token.conn, new ProtocolError(0xa0, "token expired"));
    const normal = t.client("normal", { version: 4 });
    normal.send({ cmd: "disconnect" });
    const got = monitor.events().map((e) => [e.body.clientId, e.body.reason, e.body.reasonCode, e.body.willPublished]);
    expect(got).toEqual([
      ["lost", "socket lost", null, true],
      ["idle", "keep-alive expired", 0x8d, false],
      ["bad", "protocol error", 0x81, false],
      ["taken", "takeover", 0x8e, false],
      ["token", "token expired", 0xa0, false],
      ["normal", "normal disconnect", 0, false],
    ]);
  });

  test("a delayed will is reported as delayed, not published", () => {
    const t = setup();
    const monitor = t.client("monitor");
    monitor.send(subscribe("$events/clients/+/disconnected"));
    const dev = t.client("dev", { expiry: 60 });
    t.core.sessions.get("dev")!.will = { topic: "w", payload: new Uint8Array(1), qos: 0, retain: false, delay: 10 };
    t.core.socketClosed(dev.conn);
    expect(monitor.events()[0]!.body).toMatchObject({ reason: "socket lost", willPublished: false, willDelayed: true });
  });

  test("session expiry; subscription events only when switched on", () => {
    const t = setup({ EVENTS: "all" });
    const monitor = t.client("monitor");
    monitor.send(subscribe("$events/sessions/#"));
    monitor.send(subscribe("$events/subscriptions/#", 1, 2));
    const dev = t.client("dev", { expiry: 2 });
    dev.send({ cmd: "subscribe", messageId: 3, subscriptions: [{ topic: "a/+", qos: 2 }, { topic: "b/#/c", qos: 0 }, { topic: "c", qos: 0 }] } as mqtt.ISubscribePacket);
    dev.send({ cmd: "unsubscribe", messageId: 4, unsubscriptions: ["c", "never"] } as mqtt.IUnsubscribePacket);
    t.core.socketClosed(dev.conn);
    t.advance(2001);
    t.core.alarm();
    // (the monitor's own second SUBSCRIBE is reported too)
    expect(monitor.events()[0]!.body).toMatchObject({ event: "subscribed", clientId: "monitor", subscriptions: [{ filter: "$events/subscriptions/#", qos: 1 }] });
    expect(monitor.events().slice(1).map((e) => e.body)).toEqual([
      { event: "subscribed", clientId: "dev", username: null, subscriptions: [{ filter: "a/+", qos: 2 }, { filter: "c", qos: 0 }], time: 1_000_000 },
      { event: "unsubscribed", clientId: "dev", username: null, filters: ["c"], time: 1_000_000 },
      { event: "expired", clientId: "dev", username: null, protocolVersion: 5, time: 1_002_001 },
    ]);
  });
});

describe("a session whose expiry passed before the alarm ran", () => {
  test("a client returning after the expiry (the alarm late, or not run yet) starts anew: expired, then connected", () => {
    const t = setup();
    const monitor = t.client("monitor");
    monitor.send(subscribe("$events/#"));
    const dev = t.client("dev", { clean: false, expiry: 2 });
    dev.send(subscribe("a/#"));
    t.core.socketClosed(dev.conn);
    t.advance(2001); // past the expiry; no alarm yet (alarms can be late; the CONNECT may come first)
    const back = t.client("dev", { clean: false, expiry: 2 });
    const connack = back.received.find((p): p is mqtt.IConnackPacket => p.cmd === "connack")!;
    expect(connack.sessionPresent).toBe(false); // [MQTT-3.1.2-23] the session ended when its expiry passed
    expect(t.core.sessions.get("dev")!.subscriptions.size).toBe(0);
    expect(monitor.events().map((e) => `${e.body.event} ${e.body.clientId}`).slice(-3)).toEqual(["disconnected dev", "expired dev", "connected dev"]);
    expect(monitor.events().at(-1)!.body).toMatchObject({ sessionPresent: false });
    t.core.alarm(); // nothing more to expire
    expect(monitor.events().filter((e) => e.body.event === "expired")).toHaveLength(1);
  });
});

describe("cost when nobody listens", () => {
  test("no event JSON is built and nothing is counted; subscription events off by default build no list", () => {
    const t = setup();
    const other = t.client("other");
    other.send(subscribe("#")); // `#` never matches `$events/...`
    const stringify = vi.spyOn(JSON, "stringify");
    const dev = t.client("dev", { expiry: 1 });
    dev.send(subscribe("x"));
    dev.send({ cmd: "disconnect" });
    t.advance(1001);
    t.core.alarm();
    expect(stringify.mock.results.filter((r) => String(r.value).includes('"event"'))).toEqual([]);
    expect(t.core.lifecycle.published).toBe(0);
    expect(other.events()).toEqual([]);
  });

  test("without PRESENCE_RETAINED no retained row is written", () => {
    const t = setup();
    const dev = t.client("dev", { expiry: 60 });
    t.core.socketClosed(dev.conn);
    expect(t.store.countRetained()).toBe(0);
  });
});

describe("PRESENCE_RETAINED", () => {
  test("online/offline kept retained while the session lives; removed when it ends", () => {
    const t = setup({ PRESENCE_RETAINED: true });
    const kept = t.client("kept", { expiry: 5 });
    const gone = t.client("gone");
    expect(t.store.retainedSize("$events/presence/kept")).toBe("online".length);
    expect(t.store.retainedSize("$events/presence/gone")).toBe("online".length);
    t.core.socketClosed(kept.conn);
    t.core.socketClosed(gone.conn); // a session that ends with its connection leaves no entry
    expect(t.store.retainedSize("$events/presence/kept")).toBe("offline".length);
    expect(t.store.retainedSize("$events/presence/gone")).toBeNull();
    const late = t.client("late");
    late.send(subscribe("$events/presence/+"));
    expect(late.events().map((e) => `${e.topic}=${e.body}`)).toEqual(["$events/presence/kept=offline", "$events/presence/late=online"]);
    t.advance(5001);
    t.core.alarm(); // kept's session expires
    expect(t.store.retainedSize("$events/presence/kept")).toBeNull();
  });

  test("presence entries do not take the clients' retained quota: a fleet's sessions cannot get the clients' retained messages refused", () => {
    const t = setup({ PRESENCE_RETAINED: true, MAX_RETAINED_MESSAGES: 2, MAX_RETAINED_BYTES: 10 });
    const monitor = t.client("monitor");
    monitor.send(subscribe("$events/presence/+"));
    for (const id of ["a", "b", "c"]) t.client(id, { expiry: 60 });
    // every session has its entry, beyond MAX_RETAINED_MESSAGES (they are bounded by the sessions)
    for (const id of ["monitor", "a", "b", "c"]) expect(t.store.retainedSize(`$events/presence/${id}`)).toBe(6);
    // ...and the clients' own retained messages still fit their quota
    const pub = t.client("pub");
    pub.send({ cmd: "publish", topic: "state/1", payload: Buffer.from("on"), qos: 1, messageId: 7, retain: true, dup: false } as mqtt.IPublishPacket);
    pub.send({ cmd: "publish", topic: "state/2", payload: Buffer.from("off"), qos: 1, messageId: 8, retain: true, dup: false } as mqtt.IPublishPacket);
    const acks = pub.received.filter((p): p is mqtt.IPubackPacket => p.cmd === "puback");
    expect(acks.map((a) => [a.messageId, a.reasonCode ?? 0])).toEqual([
      [7, 0x10], // no matching subscribers: stored all the same
      [8, 0x10],
    ]);
    expect(t.store.retainedSize("state/1")).toBe(2);
    expect(t.store.retainedSize("state/2")).toBe(3);
    // the quota still holds for the clients: a third is refused (0x97)
    pub.send({ cmd: "publish", topic: "state/3", payload: Buffer.from("x"), qos: 1, messageId: 9, retain: true, dup: false } as mqtt.IPublishPacket);
    expect(pub.received.filter((p): p is mqtt.IPubackPacket => p.cmd === "puback").at(-1)).toMatchObject({ messageId: 9, reasonCode: 0x97 });
    // an entry removed (the session ends) frees nothing of the clients' quota, nor corrupts its count
    t.core.socketClosed(t.client("gone").conn);
    expect(t.store.retainedSize("$events/presence/gone")).toBeNull();
    pub.send({ cmd: "publish", topic: "state/4", payload: Buffer.from("x"), qos: 1, messageId: 10, retain: true, dup: false } as mqtt.IPublishPacket);
    expect(pub.received.filter((p): p is mqtt.IPubackPacket => p.cmd === "puback").at(-1)).toMatchObject({ messageId: 10, reasonCode: 0x97 });
    // the invariants' check agrees: the clients' quota is kept, one presence entry per session at most
    expect(inspect(t.core).problems).toEqual([]);
  });

});

describe("rules (RULES) on $events", () => {
  /** a rule engine on the core whose one rule takes `filter` and records what it is sent */
  function withRule(t: ReturnType<typeof setup>, filter: string) {
    const sent: { topic: string; body: string }[] = [];
    const rule = { name: "presence", filter, to: { kind: "queue", binding: "Q" }, format: "json", timeoutMs: 1000, qos: 1 } as Rule;
    const dest = { batchSize: 100, send: async (b: { msg: { topic: string; payload: Uint8Array } }[]) => void sent.push(...b.map((x) => ({ topic: x.msg.topic, body: Buffer.from(x.msg.payload).toString() }))) };
    const host = { store: t.store, config: t.core.config, now: () => t.now, wakeAt: () => {}, later: (fn: () => void) => fn(), log: () => {} };
    t.core.rules = new RuleEngine([{ rule, dest } as never], host);
    return { sent, settle: () => new Promise((r) => setTimeout(r, 0)), stats: () => t.core.rules!.stats().rules[0]! };
  }

  test("a rule on $events/... gets the events although no client subscribes (it is accepted, so it must fire)", async () => {
    const t = setup();
    const r = withRule(t, "$events/clients/+/+");
    const dev = t.client("dev/1");
    t.core.socketClosed(dev.conn);
    await r.settle();
    expect(r.sent.map((m) => m.topic)).toEqual(["$events/clients/dev%2F1/connected", "$events/clients/dev%2F1/disconnected"]);
    expect(JSON.parse(r.sent[0]!.body)).toMatchObject({ event: "connected", clientId: "dev/1" });
    expect(JSON.parse(r.sent[1]!.body)).toMatchObject({ event: "disconnected", reason: "socket lost" });
    expect(r.stats()).toMatchObject({ matched: 2, delivered: 2 });
  });

  test("retained presence states go to a rule on $events/presence/+ too; events switched off go nowhere", async () => {
    const t = setup({ PRESENCE_RETAINED: true, EVENTS: "none" });
    const r = withRule(t, "$events/#");
    t.core.socketClosed(t.client("dev", { expiry: 60 }).conn);
    await r.settle();
    expect(r.sent).toEqual([
      { topic: "$events/presence/dev", body: "online" },
      { topic: "$events/presence/dev", body: "offline" },
    ]);
  });
});

describe("history", () => {
  test("the last entries per client, oldest first, with the reason of each end", () => {
    const t = setup();
    for (let i = 0; i < 7; i++) {
      const c = t.client("dev");
      t.advance(1);
      t.core.socketClosed(c.conn);
    }
    const h = t.core.lifecycle.history("dev");
    expect(h).toHaveLength(HISTORY_PER_CLIENT);
    expect(h[h.length - 1]).toEqual({ event: "disconnected", time: t.now, reason: "socket lost", reasonCode: null });
    expect(h[h.length - 2]).toEqual({ event: "connected", time: t.now - 1 });
    expect(t.core.lifecycle.history("nobody")).toEqual([]);
  });

  test("bounded in clients: the least recently active is dropped", () => {
    const t = setup({ MAX_CONNECTIONS: 0 });
    const first = t.client("c-0");
    for (let i = 1; i < HISTORY_CLIENTS; i++) t.client(`c-${i}`);
    t.core.socketClosed(first.conn); // c-0 active again: c-1 is now the oldest
    t.client("one-more");
    expect(t.core.lifecycle.history("c-0")).toHaveLength(2);
    expect(t.core.lifecycle.history("c-1")).toEqual([]);
    expect(t.core.lifecycle.history("one-more")).toHaveLength(1);
  });
});
