// Bridges to another MQTT broker (BRIDGES), against a real Mosquitto: messages both ways at each
// QoS, retained messages, no loops, a remote restart losing nothing at QoS 1, and clear statuses
// for a bad address or bad credentials. MQTT.js clients on both sides.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MqttClient } from "mqtt";
import { TEST_API_TOKEN, collect, connect, end, freePort, startBroker, type Broker } from "./harness";
import { until } from "./marker";
import { record } from "./inspect";
import { MOSQUITTO_PASSWORD, MOSQUITTO_USER, startMosquitto, type Mosquitto } from "./mosquitto";

let mosq: Mosquitto;
let broker: Broker;
let closedPort: number;
const clients: MqttClient[] = [];

const fast = { reconnectMin: 0.1, reconnectMax: 0.5 };

async function bridges(ns: string): Promise<{ bridges: Record<string, any>[]; errors: string[] }> {
  const res = await fetch(broker.http(`/api/${ns}/bridges`), { headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as { bridges: Record<string, any>[]; errors: string[] };
}

async function statusOf(ns: string, name: string): Promise<Record<string, any>> {
  const b = (await bridges(ns)).bridges.find((x) => x.name === name);
  if (!b) throw new Error(`no bridge ${name} in ${ns}`);
  return b;
}

async function linked(ns: string, name: string, timeoutMs = 10_000): Promise<Record<string, any>> {
  let last: Record<string, any> = {};
  try {
    await until(async () => {
      last = await statusOf(ns, name);
      return last.connected?.remote === true && last.connected?.local === true;
    }, `bridge ${name} to connect`, timeoutMs);
  } catch (e) {
    throw new Error(`${(e as Error).message}; last status: ${JSON.stringify(last)}`);
  }
  return last;
}

async function remote(opts: Parameters<typeof connect>[1] = {}): Promise<MqttClient> {
  const c = await connect(mosq.url, { protocolVersion: 5, ...opts });
  clients.push(c);
  return c;
}

async function local(ns: string, opts: Parameters<typeof connect>[1] = {}): Promise<MqttClient> {
  const c = await connect(broker.url(ns), { protocolVersion: 5, ...opts });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  mosq = await startMosquitto();
  closedPort = await freePort();
  const url = mosq.url;
  broker = await startBroker({
    API_TOKEN: TEST_API_TOKEN,
    REMOTE_PW: MOSQUITTO_PASSWORD,
    BRIDGES: JSON.stringify([
      { name: "b5", namespace: "site", url, version: 5, clientId: "bridge-b5", ...fast,
        out: [{ filter: "sensors/#", prefix: "site-1/", qos: 2 }], in: [{ filter: "commands/#", prefix: "from-cloud/", qos: 2 }] },
      { name: "loop5", namespace: "loop5", url, version: 5, ...fast,
        out: [{ filter: "l5/#", prefix: "", qos: 1 }], in: [{ filter: "l5/#", prefix: "", qos: 1 }] },
      { name: "loop4", namespace: "loop4", url, version: 4, ...fast,
        out: [{ filter: "l4/#", prefix: "", qos: 1 }], in: [{ filter: "l4/#", prefix: "", qos: 1 }] },
      { name: "down", namespace: "bad", url: `mqtt://127.0.0.1:${closedPort}`, ...fast, out: [{ filter: "x/#" }] },
      { name: "wrongpw", namespace: "bad", url: `mqtt://127.0.0.1:${mosq.authPort}`, username: MOSQUITTO_USER, password: "wrong", ...fast, out: [{ filter: "x/#" }] },
      { name: "nosecret", namespace: "bad", url, passwordSecret: "NOT_SET", ...fast, out: [{ filter: "x/#" }] },
      { name: "authed", namespace: "auth", url: `mqtt://127.0.0.1:${mosq.authPort}`, username: MOSQUITTO_USER, passwordSecret: "REMOTE_PW", ...fast,
        out: [{ filter: "a/#", prefix: "authed/" }] },
      { name: "persist", namespace: "persist", url, version: 4, ...fast, out: [{ filter: "p/#", prefix: "site-p/", qos: 1 }] },
      { name: "broken", namespace: "bad", url: "http://nope" },
      { name: "ka", namespace: "ka", url, version: 4, keepalive: 2, ...fast, out: [{ filter: "k/#" }] },
    ]),
  });
});

afterAll(async () => {
  await end(...clients);
  await broker?.close();
  await mosq?.close();
});

describe("bridge to Mosquitto", () => {
  it("carries messages out (local → remote, under the prefix) at QoS 0, 1 and 2", async () => {
    await linked("site", "b5");
    const sub = await remote();
    await sub.subscribeAsync("site-1/sensors/#", { qos: 2 });
    const pub = await local("site");
    const got = collect(sub, 3);
    for (const qos of [0, 1, 2] as const) await pub.publishAsync(`sensors/q${qos}`, `out-${qos}`, { qos });
    const msgs = await got;
    expect(msgs.map((m) => `${m.topic}=${m.payload}@${m.packet.qos}`).sort()).toEqual(["site-1/sensors/q0=out-0@0", "site-1/sensors/q1=out-1@1", "site-1/sensors/q2=out-2@2"]);
  });

  it("carries messages in (remote → local, under the prefix) at QoS 0, 1 and 2", async () => {
    await linked("site", "b5");
    const sub = await local("site");
    await sub.subscribeAsync("from-cloud/#", { qos: 2 });
    const pub = await remote();
    const got = collect(sub, 3);
    for (const qos of [0, 1, 2] as const) await pub.publishAsync(`commands/q${qos}`, `in-${qos}`, { qos });
    const msgs = await got;
    expect(msgs.map((m) => `${m.topic}=${m.payload}@${m.packet.qos}`).sort()).toEqual([
      "from-cloud/commands/q0=in-0@0", "from-cloud/commands/q1=in-1@1", "from-cloud/commands/q2=in-2@2",
    ]);
    const s = await statusOf("site", "b5");
    expect(s.received).toBeGreaterThanOrEqual(3);
    expect(s.sent).toBeGreaterThanOrEqual(3);
    expect(s.lastError).toBeNull();
  });
});

describe("bridge: retained messages", () => {
  it("a retained message crosses with its retain flag, both ways", async () => {
    await linked("site", "b5");
    const pub = await local("site");
    await pub.publishAsync("sensors/ret", "kept-out", { qos: 1, retain: true });
    const rpub = await remote();
    await rpub.publishAsync("commands/ret", "kept-in", { qos: 1, retain: true });
    // a remote subscriber arriving later gets it from Mosquitto's retained store
    await until(async () => {
      const late = await remote();
      const got = collect(late, 1, 1000).catch(() => []);
      await late.subscribeAsync("site-1/sensors/ret", { qos: 1 });
      const m = await got;
      await end(late);
      return m.length === 1 && m[0]!.payload === "kept-out" && m[0]!.packet.retain === true;
    }, "the retained message to reach Mosquitto", 10_000);
    await until(async () => {
      const late = await local("site");
      const got = collect(late, 1, 1000).catch(() => []);
      await late.subscribeAsync("from-cloud/commands/ret", { qos: 1 });
      const m = await got;
      await end(late);
      return m.length === 1 && m[0]!.payload === "kept-in" && m[0]!.packet.retain === true;
    }, "the retained message to reach the local namespace", 10_000);
  });
});

describe("bridge: retained messages with a 3.1.1 remote", () => {
  it("a live retained message keeps its flag both ways (Mosquitto keeps it for a bridge)", async () => {
    await linked("loop4", "loop4");
    await (await local("loop4")).publishAsync("l4/ret-out", "kept-out", { qos: 1, retain: true });
    await (await remote()).publishAsync("l4/ret-in", "kept-in", { qos: 1, retain: true });
    const late = async (where: "local" | "remote", topic: string, payload: string) =>
      until(async () => {
        const c = where === "local" ? await local("loop4") : await remote();
        const got = collect(c, 1, 1000).catch(() => []);
        await c.subscribeAsync(topic, { qos: 1 });
        const m = await got;
        await end(c);
        return m.length === 1 && m[0]!.payload === payload && m[0]!.packet.retain === true;
      }, `the retained ${topic} on the ${where} side`, 10_000);
    await late("remote", "l4/ret-out", "kept-out");
    await late("local", "l4/ret-in", "kept-in");
  });
});

describe("bridge: no loops with overlapping in and out filters", () => {
  for (const [ns, top, version] of [["loop5", "l5", 5], ["loop4", "l4", 4]] as const) {
    it(`MQTT ${version === 5 ? "5 remote (No Local)" : "3.1.1 remote (bridge bit)"}: a message goes across once and never comes back`, async () => {
      await linked(ns, ns);
      const lsub = await local(ns);
      await lsub.subscribeAsync(`${top}/loop/#`, { qos: 1 });
      const rsub = await remote();
      await rsub.subscribeAsync(`${top}/loop/#`, { qos: 1 });
      const lgot = record(lsub);
      const rgot = record(rsub);
      const lpub = await local(ns);
      const rpub = await remote();
      await lpub.publishAsync(`${top}/loop/from-local`, "L", { qos: 1 });
      await rpub.publishAsync(`${top}/loop/from-remote`, "R", { qos: 1 });
      await until(() => lgot.length >= 2 && rgot.length >= 2, "both messages on both sides", 10_000);
      // A marker each way, after anything that could still echo (each path keeps its order):
      // once both arrived on both sides, each side holds each message exactly once.
      const stamp = Date.now();
      await rpub.publishAsync(`${top}/loop/marker-r`, `${stamp}`, { qos: 1 });
      await lpub.publishAsync(`${top}/loop/marker-l`, `${stamp}`, { qos: 1 });
      const both = (got: string[]) => got.includes(`${top}/loop/marker-r=${stamp}`) && got.includes(`${top}/loop/marker-l=${stamp}`);
      await until(() => both(lgot) && both(rgot), "the markers on both sides", 10_000);
      const expected = [`${top}/loop/from-local=L`, `${top}/loop/from-remote=R`, `${top}/loop/marker-l=${stamp}`, `${top}/loop/marker-r=${stamp}`];
      expect(rgot.slice().sort(), "remote").toEqual(expected);
      expect(lgot.slice().sort(), "local").toEqual(expected);
    });
  }
});

describe("bridge status API", () => {
  it("answers an empty list for a namespace without bridges, with the configuration's errors; wants the token", async () => {
    const r = await bridges("no-bridges-here");
    expect(r).toEqual({ namespace: "no-bridges-here", bridges: [], errors: [expect.stringMatching(/^BRIDGES\[8\] \("broken"\)/)] });
    expect((await fetch(broker.http("/api/site/bridges"))).status).toBe(401);
    const post = await fetch(broker.http("/api/site/bridges"), { method: "POST", headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
    expect(post.status).toBe(405);
    expect(post.headers.get("Allow")).toBe("GET");
  });
});

describe("bridge: failures are reported, never a crash", () => {
  it("a bad address, bad credentials, a missing secret and an invalid entry show in the status", async () => {
    let report: { bridges: Record<string, any>[]; errors: string[] } = { bridges: [], errors: [] };
    await until(async () => {
      report = await bridges("bad");
      return report.bridges.length === 3 && report.bridges.every((b) => typeof b.lastError === "string");
    }, "three bridges with errors", 10_000).catch(() => {
      throw new Error(JSON.stringify(report));
    });
    const by = Object.fromEntries(report.bridges.map((b) => [b.name, b]));
    expect(by.down.lastError).toMatch(/cannot connect to 127\.0\.0\.1:\d+/);
    expect(by.wrongpw.lastError).toMatch(/refused the connection: (bad user name or password|not authorized)/);
    expect(by.nosecret.lastError).toMatch(/secret NOT_SET .*not set/);
    for (const b of report.bridges) expect(b.connected).toEqual({ remote: false, local: false });
    expect(report.errors.join("\n")).toMatch(/BRIDGES\[\d+\] \("broken"\): url: use mqtt:\/\/, mqtts:\/\/, ws:\/\/ or wss:\/\//);
    // the namespace still works
    const a = await local("bad");
    const got = collect(a, 1);
    await a.subscribeAsync("x/y");
    await a.publishAsync("x/y", "still fine");
    expect((await got)[0]!.payload).toBe("still fine");
    // and it keeps retrying with backoff: between attempts the status says when the next one is due
    await until(async () => ((await statusOf("bad", "down")).retryAt ?? 0) > 0, "a retry to be scheduled", 5000);
  });

  it("credentials from a Worker secret (passwordSecret) are accepted by the remote", async () => {
    const s = await linked("auth", "authed");
    expect(s.lastError).toBeNull();
    const sub = await remote();
    await sub.subscribeAsync("authed/a/#", { qos: 1 });
    const got = collect(sub, 1);
    await (await local("auth")).publishAsync("a/b", "with password", { qos: 1 });
    expect((await got)[0]!.topic).toBe("authed/a/b");
  });
});

describe("bridge: keep-alive", () => {
  it("PINGREQs keep an idle link up past the remote's 1.5 × keep-alive", async () => {
    const first = await linked("ka", "ka");
    // Mosquitto closes a client silent for 1.5 × 2 s; watch the idle link for 5 s.
    const until5000 = Date.now() + 5000;
    await until(async () => {
      const s = await statusOf("ka", "ka");
      expect(s.since).toBe(first.since);
      expect(s.connected).toEqual({ remote: true, local: true });
      return Date.now() > until5000;
    }, "5 s of an idle link", 10_000);
  });

  it("a remote that stops answering (SIGSTOP) is given up after 1.5 × keep-alive, and rejoined when it answers again", async () => {
    await linked("ka", "ka");
    mosq.pause();
    try {
      let s: Record<string, any> = {};
      await until(async () => {
        s = await statusOf("ka", "ka");
        return /keep-alive timeout/.test(s.lastError ?? "");
      }, "the keep-alive timeout", 10_000);
      expect(s.connected.remote).toBe(false);
    } finally {
      mosq.resume();
    }
    const back = await linked("ka", "ka");
    expect(back.reconnects).toBeGreaterThanOrEqual(1);
  });
});

describe("bridge: the remote restarts", () => {
  it("nothing published at QoS 1 while the remote is down is lost", async () => {
    await linked("persist", "persist");
    const subOpts = { protocolVersion: 4 as const, clientId: "remote-persistent-sub", clean: false };
    let sub = await remote(subOpts);
    await sub.subscribeAsync("site-p/#", { qos: 1 });
    const pub = await local("persist");
    await pub.publishAsync("p/before", "0", { qos: 1 });
    await collect(sub, 1);
    await end(sub);
    const before = (await statusOf("persist", "persist")).reconnects;

    await mosq.stop();
    await until(async () => (await statusOf("persist", "persist")).connected.remote === false, "the bridge to see the remote gone", 10_000);
    const n = 20;
    for (let i = 1; i <= n; i++) await pub.publishAsync(`p/during`, String(i), { qos: 1 });
    await mosq.start();

    sub = await remote(subOpts);
    const got = await collect(sub, n, 20_000);
    expect(got.map((m) => Number(m.payload)).sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    const s = await linked("persist", "persist");
    expect(s.reconnects).toBeGreaterThan(before);
  });
});

describe("bridge: the configuration changes across a restart of the runtime", () => {
  it("comes back after the restart, and a removed rule's subscription is dropped on both sides", async () => {
    const rules = (filters: string[]) => filters.map((f) => ({ filter: f, prefix: "cfg/", qos: 1 }));
    const entry = (filters: string[]) =>
      JSON.stringify([{ name: "cfg", namespace: "cfg", url: mosq.url, version: 5, ...fast, out: rules(filters), in: [{ filter: `cfg-in/${filters.length}/#`, qos: 1 }] }]);
    const vars: Record<string, string> = { API_TOKEN: TEST_API_TOKEN, BRIDGES: entry(["a/#", "b/#"]) };
    const b2 = await startBroker(vars);
    try {
      const statusIn = async () => {
        const res = await fetch(b2.http("/api/cfg/bridges"), { headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
        return ((await res.json()) as { bridges: Record<string, any>[] }).bridges[0]!;
      };
      await until(async () => (await statusIn()).connected?.local === true, "the first link", 10_000);
      const sub = await remote();
      await sub.subscribeAsync("cfg/#", { qos: 1 });
      const got: string[] = [];
      sub.on("message", (t, p) => got.push(`${t}=${p}`));
      vars.BRIDGES = entry(["a/#"]); // the harness restarts with the same (mutated) bindings
      await b2.restart();
      // No status call this time: the namespace object starting (a client connects) starts its bridge,
      // and what is published before the link is up waits in the bridge's local session.
      const pub = await connect(b2.url("cfg"), { protocolVersion: 5 });
      await pub.publishAsync("a/x", "kept rule", { qos: 1 });
      await until(() => got.includes("cfg/a/x=kept rule"), "the kept rule's message", 10_000);
      // the link is up with the new rules: b/x stays home (a/y, behind it, is the marker)
      await pub.publishAsync("b/x", "removed rule", { qos: 1 });
      await pub.publishAsync("a/y", "marker", { qos: 1 });
      await until(() => got.includes("cfg/a/y=marker"), "the marker", 10_000);
      expect(got).toEqual(["cfg/a/x=kept rule", "cfg/a/y=marker"]);
      // and on the remote: the old in-filter no longer brings anything in
      const lsub = await connect(b2.url("cfg"), { protocolVersion: 5 });
      await lsub.subscribeAsync("cfg-in/#", { qos: 1 });
      const lgot: string[] = [];
      lsub.on("message", (t, p) => lgot.push(`${t}=${p}`));
      const rpub = await remote();
      await rpub.publishAsync("cfg-in/2/x", "old", { qos: 1 });
      await rpub.publishAsync("cfg-in/1/x", "new", { qos: 1 });
      await until(() => lgot.includes("cfg-in/1/x=new"), "the new in-rule's message", 10_000);
      expect(lgot).toEqual(["cfg-in/1/x=new"]);
      // Unsubscribed on both sides: neither b/x nor cfg-in/2/x even reached the bridge (a stale
      // subscription would hand them over, and the bridge would drop them, having no rule).
      expect((await statusIn()).dropped).toBe(0);
      await end(pub, lsub);
    } finally {
      await b2.close();
    }
  });
});
