// The HTTP API end to end: auth, publish delivered like MQTT, retained, clients, stats, and
// bad requests answered with 4xx JSON.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { request } from "node:http";
import type { IPublishPacket } from "mqtt";
import { startBroker, connect, collect, end, SHARDED, type Broker } from "./harness";
import { record } from "./inspect";
import { expectOnlyMarker, until } from "./marker";

const TOKEN = "s3cret-token";
let broker: Broker;
beforeAll(async () => {
  broker = await startBroker({ API_TOKEN: TOKEN });
});
afterAll(() => broker.close());

interface Reply {
  status: number;
  body: any;
  headers: Headers;
}

async function api(method: string, path: string, body?: unknown, token: string | null = TOKEN): Promise<Reply> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token !== null) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(broker.http(path), { method, headers, body: typeof body === "string" ? body : body === undefined ? undefined : JSON.stringify(body) });
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  return { status: res.status, body: await res.json(), headers: res.headers };
}

describe("auth", () => {
  test("without an API_TOKEN secret the API is off", async () => {
    const off = await startBroker();
    try {
      const res = await fetch(off.http("/api/default/stats"), { headers: { Authorization: "Bearer anything" } });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: string }).error).toMatch(/API_TOKEN/);
    } finally {
      await off.close();
    }
  });

  test.each([
    ["no header", null],
    ["a wrong token", "s3cret-tokeN"],
    ["a prefix of the token", "s3cret"],
    ["an empty token", ""],
  ])("%s is refused with 401", async (_name, token) => {
    const r = await api("GET", "/api/default/stats", undefined, token);
    expect(r.status).toBe(401);
    expect(r.headers.get("www-authenticate")).toBe("Bearer");
    expect(r.body.error).toMatch(/token/);
  });

  test("the right token is accepted, the scheme in any case", async () => {
    const res = await fetch(broker.http("/api/default/stats"), { headers: { Authorization: `bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
  });
});

describe("POST /api/<namespace>/publish", () => {
  test("delivers exactly like an MQTT publish, with MQTT 5 properties, and counts the matches", async () => {
    const v5 = await connect(broker.url("pub"), { protocolVersion: 5 });
    const v4 = await connect(broker.url("pub"), { protocolVersion: 4 });
    await v5.subscribeAsync("plant/#", { qos: 2 });
    await v4.subscribeAsync("plant/+/temp", { qos: 0 });
    const got5 = collect(v5, 1);
    const got4 = collect(v4, 1);
    const r = await api("POST", "/api/pub/publish", {
      topic: "plant/boiler/temp",
      payload: "81.5",
      qos: 1,
      properties: {
        contentType: "text/plain",
        responseTopic: "plant/boiler/reply",
        correlationData: "req-7",
        messageExpiryInterval: 60,
        payloadFormatIndicator: true,
        userProperties: { unit: "C", tags: ["a", "b"] },
      },
    });
    expect(r).toMatchObject({ status: 200, body: { matched: 2 } });
    const [m5] = await got5;
    expect(m5!.payload).toBe("81.5");
    expect(m5!.packet.qos).toBe(1);
    expect(m5!.packet.retain).toBe(false);
    const p = m5!.packet.properties!;
    expect(p.contentType).toBe("text/plain");
    expect(p.responseTopic).toBe("plant/boiler/reply");
    expect(Buffer.from(p.correlationData!).toString()).toBe("req-7");
    expect(p.messageExpiryInterval).toBeGreaterThan(55);
    expect(p.payloadFormatIndicator).toBe(true);
    expect(p.userProperties).toEqual({ unit: "C", tags: ["a", "b"] });
    const [m4] = await got4;
    expect(m4!.payload).toBe("81.5");
    expect(m4!.packet.qos).toBe(0);
    await end(v5, v4);
  });

  // sharded: an API publish is accepted by a random shard (its `matched` is that shard's) and retained writes reach the others after the answer
  test.skipIf(SHARDED)("binary payloads as base64; retained messages reach later subscribers", async () => {
    const bytes = Buffer.from([0, 1, 2, 0xfe, 0xff]);
    const r = await api("POST", "/api/pub/publish", { topic: "bin/blob", payloadBase64: bytes.toString("base64"), qos: 2, retain: true });
    expect(r).toMatchObject({ status: 200, body: { matched: 0 } });
    const late = await connect(broker.url("pub"), { protocolVersion: 5 });
    const got = new Promise<IPublishPacket>((resolve) => late.once("message", (_t, _p, packet) => resolve(packet)));
    await late.subscribeAsync("bin/#", { qos: 2 });
    const packet = await got;
    expect(Buffer.from(packet.payload as Buffer).equals(bytes)).toBe(true);
    expect(packet.retain).toBe(true);
    expect(packet.qos).toBe(2);
    await end(late);
  });

  // sharded: an API publish is accepted by a random shard (its `matched` is that shard's) and retained writes reach the others after the answer
  test.skipIf(SHARDED)("an empty retained publish clears the retained message, as in MQTT", async () => {
    await api("POST", "/api/clear/publish", { topic: "x/y", payload: "keep", retain: true });
    expect((await api("GET", "/api/clear/stats")).body.retained).toBe(1);
    await api("POST", "/api/clear/publish", { topic: "x/y", retain: true });
    expect((await api("GET", "/api/clear/stats")).body.retained).toBe(0);
  });

  test("namespaces are separate", async () => {
    const other = await connect(broker.url("other"));
    await other.subscribeAsync("#");
    const got = record(other);
    const r = await api("POST", "/api/not-other/publish", { topic: "t", payload: "x" });
    expect(r.body.matched).toBe(0);
    await expectOnlyMarker(got, (m) => api("POST", "/api/other/publish", { topic: "t", payload: m }));
    await end(other);
  });
});

describe("retained", () => {
  beforeAll(async () => {
    for (const [topic, payload] of [
      ["home/kitchen/temp", "21"],
      ["home/hall/temp", "19"],
      ["home/hall/door", "closed"],
      ["garden/temp", "12"],
    ]) {
      await api("POST", "/api/ret/publish", { topic, payload, retain: true });
    }
    await api("POST", "/api/ret/publish", { topic: "home/raw", payloadBase64: Buffer.from([0xff, 0]).toString("base64"), retain: true });
  });

  // sharded: a retained write reaches the other shards over the links after its PUBACK; a reader there right after may miss it (flaky)
  test.skipIf(SHARDED)("GET lists the messages matching a filter, text and base64", async () => {
    const all = await api("GET", "/api/ret/retained");
    expect(all.body.filter).toBe("#");
    expect(all.body.messages.map((m: { topic: string }) => m.topic)).toEqual([
      "garden/temp",
      "home/hall/door",
      "home/hall/temp",
      "home/kitchen/temp",
      "home/raw",
    ]);
    const temps = await api("GET", `/api/ret/retained?filter=${encodeURIComponent("home/+/temp")}`);
    expect(temps.body.messages).toEqual([
      { topic: "home/hall/temp", qos: 0, payload: "19", payloadBase64: "MTk=" },
      { topic: "home/kitchen/temp", qos: 0, payload: "21", payloadBase64: "MjE=" },
    ]);
    const raw = await api("GET", "/api/ret/retained?filter=home/raw");
    expect(raw.body.messages).toEqual([{ topic: "home/raw", qos: 0, payloadBase64: "/wA=" }]);
    const limited = await api("GET", "/api/ret/retained?filter=home/%23&limit=2");
    expect(limited.body.messages).toHaveLength(2);
    expect(limited.body.truncated).toBe(true);
  });

  test("DELETE removes one retained message without publishing anything", async () => {
    const watcher = await connect(broker.url("ret"));
    const got = record(watcher);
    await watcher.subscribeAsync("garden/#");
    const del = await api("DELETE", "/api/ret/retained?topic=garden/temp");
    expect(del).toMatchObject({ status: 200, body: { topic: "garden/temp", deleted: true } });
    expect((await api("DELETE", "/api/ret/retained?topic=garden/temp")).body.deleted).toBe(false);
    // the retained copy on subscribe, then the marker: no empty "deletion" message between them
    await expectOnlyMarker(got, (m) => api("POST", "/api/ret/publish", { topic: "garden/marker", payload: m }), ["garden/temp=12"]);
    const left = await api("GET", "/api/ret/retained?filter=garden/%23");
    expect(left.body.messages).toEqual([]);
    await end(watcher);
  });
});

describe("clients", () => {
  test("GET lists sessions with their presence and subscriptions", async () => {
    const online = await connect(broker.url("cl"), { clientId: "online-5", protocolVersion: 5, keepalive: 30 });
    await online.subscribeAsync("cmd/online-5/#", { qos: 1 });
    const leaving = await connect(broker.url("cl"), { clientId: "offline-4", protocolVersion: 4, clean: false });
    await leaving.subscribeAsync("cmd/offline-4", { qos: 1 });
    await end(leaving);
    const offline = async () => (await api("GET", "/api/cl/clients")).body.clients.some((c: { clientId: string; status: string }) => c.clientId === "offline-4" && c.status === "offline");
    await until(offline, "offline-4 to be listed offline");
    const r = await api("GET", "/api/cl/clients");
    expect(r.status).toBe(200);
    const [off, on] = r.body.clients;
    expect(on).toMatchObject({
      clientId: "online-5",
      status: "online",
      protocolVersion: 5,
      keepalive: 30,
      subscriptions: [{ filter: "cmd/online-5/#", qos: 1 }],
      hasWill: false,
    });
    expect(on.connectedAt).toBeTypeOf("number");
    expect(off).toMatchObject({ clientId: "offline-4", status: "offline", protocolVersion: 4, subscriptions: [{ filter: "cmd/offline-4", qos: 1 }] });
    expect(off.expiresAt).toBeGreaterThan(Date.now());
    await end(online);
  });

  test("DELETE disconnects a client (MQTT 5: reason 0x98) and its will is published", async () => {
    const watcher = await connect(broker.url("cl"));
    await watcher.subscribeAsync("wills/#", { qos: 1 });
    const device = await connect(broker.url("cl"), {
      clientId: "dev/1",
      protocolVersion: 5,
      will: { topic: "wills/dev-1", payload: Buffer.from("gone"), qos: 1, retain: false },
    });
    const reason = new Promise<number | undefined>((resolve) => device.once("disconnect", (p) => resolve(p.reasonCode)));
    const will = collect(watcher, 1);
    const r = await api("DELETE", `/api/cl/clients/${encodeURIComponent("dev/1")}`);
    expect(r).toMatchObject({ status: 200, body: { disconnected: "dev/1" } });
    expect(await reason).toBe(0x98);
    expect((await will).map((m) => `${m.topic}=${m.payload}`)).toEqual(["wills/dev-1=gone"]);
    const again = await api("DELETE", `/api/cl/clients/${encodeURIComponent("dev/1")}`);
    expect(again.status).toBe(404);
    expect(again.body.error).toMatch(/not connected/);
    await end(watcher, device);
  });
});

test("GET stats counts clients, subscriptions, retained, messages and bytes", async () => {
  const before = (await api("GET", "/api/st/stats")).body;
  expect(before).toMatchObject({ namespace: "st", clients: { connected: 0, total: 0 }, subscriptions: 0, retained: 0 });
  const sub = await connect(broker.url("st"));
  await sub.subscribeAsync("s/#", { qos: 1 });
  const got = collect(sub, 3);
  const pub = await connect(broker.url("st"));
  await pub.publishAsync("s/1", "a", { qos: 1 });
  await pub.publishAsync("s/2", "b", { qos: 0, retain: true });
  await api("POST", "/api/st/publish", { topic: "s/3", payload: "c" });
  await got;
  const after = (await api("GET", "/api/st/stats")).body;
  expect(after.clients).toEqual({ connected: 2, total: 2 });
  expect(after.subscriptions).toBe(1);
  expect(after.retained).toBe(1);
  expect(after.messages.received - before.messages.received).toBe(3);
  expect(after.messages.sent - before.messages.sent).toBe(3);
  expect(after.bytes.received).toBeGreaterThan(before.bytes.received + 20);
  expect(after.bytes.sent).toBeGreaterThan(before.bytes.sent + 20);
  expect(after.time).toBeGreaterThanOrEqual(before.time);
  expect(after.uptime).toBeTypeOf("number");
  await end(sub, pub);
});

describe("bad requests get a 4xx with a JSON error", () => {
  test.each<[string, string, string, unknown, number, RegExp]>([
    ["body not JSON", "POST", "/api/v/publish", "{nope", 400, /JSON/],
    ["body not an object", "POST", "/api/v/publish", "[1]", 400, /object/],
    ["no topic", "POST", "/api/v/publish", { payload: "x" }, 400, /topic is required/],
    ["wildcard topic", "POST", "/api/v/publish", { topic: "a/+/b" }, 400, /wildcards/],
    ["$SYS topic", "POST", "/api/v/publish", { topic: "$SYS/broker/uptime" }, 400, /\$SYS/],
    ["NUL in topic", "POST", "/api/v/publish", { topic: "a\u0000b" }, 400, /NUL/],
    ["qos 3", "POST", "/api/v/publish", { topic: "a", qos: 3 }, 400, /qos/],
    ["qos as text", "POST", "/api/v/publish", { topic: "a", qos: "1" }, 400, /qos/],
    ["retain not boolean", "POST", "/api/v/publish", { topic: "a", retain: "yes" }, 400, /retain/],
    ["unknown field", "POST", "/api/v/publish", { topic: "a", retained: true }, 400, /unknown field "retained"/],
    ["payload and payloadBase64", "POST", "/api/v/publish", { topic: "a", payload: "x", payloadBase64: "eA==" }, 400, /not both/],
    ["bad base64", "POST", "/api/v/publish", { topic: "a", payloadBase64: "***" }, 400, /base64/],
    ["payload a number", "POST", "/api/v/publish", { topic: "a", payload: 5 }, 400, /text/],
    ["unknown property", "POST", "/api/v/publish", { topic: "a", properties: { topicAlias: 1 } }, 400, /unknown property/],
    ["bad expiry", "POST", "/api/v/publish", { topic: "a", properties: { messageExpiryInterval: -1 } }, 400, /messageExpiryInterval/],
    ["bad user property", "POST", "/api/v/publish", { topic: "a", properties: { userProperties: { a: 1 } } }, 400, /userProperties/],
    ["wildcard response topic", "POST", "/api/v/publish", { topic: "a", properties: { responseTopic: "r/#" } }, 400, /responseTopic/],
    ["bad namespace", "POST", "/api/no%20spaces/publish", { topic: "a" }, 400, /namespace/],
    ["too long namespace", "GET", `/api/${"n".repeat(65)}/stats`, undefined, 400, /namespace/],
    ["bad filter", "GET", "/api/v/retained?filter=a/%23/b", undefined, 400, /filter/],
    ["bad limit", "GET", "/api/v/retained?limit=0", undefined, 400, /limit/],
    ["delete retained without topic", "DELETE", "/api/v/retained", undefined, 400, /topic is required/],
    ["delete retained with a filter", "DELETE", "/api/v/retained?topic=a/%2B", undefined, 400, /wildcards/],
    ["bad percent-encoding", "DELETE", "/api/v/clients/%E0%A4%A", undefined, 400, /percent/],
    ["unknown resource", "GET", "/api/v/sessions", undefined, 404, /no such API path/],
    ["no resource", "GET", "/api", undefined, 404, /no such API path/],
    ["extra path", "GET", "/api/v/stats/more", undefined, 404, /no such API path/],
    ["wrong method", "GET", "/api/v/publish", undefined, 405, /POST/],
    ["wrong method on a client", "PUT", "/api/v/clients/someone", undefined, 405, /GET, DELETE/],
  ])("%s", async (_name, method, path, body, status, error) => {
    const r = await api(method, path, body);
    expect(r.status).toBe(status);
    expect(r.body.error).toMatch(error);
  });
});

test("a body over the limit gets 413 before it is read", async () => {
  // Its own connection: the broker answers without reading the body and then closes, which would
  // reset the next request sent on a pooled keep-alive connection.
  const body = JSON.stringify({ topic: "a", payload: "x".repeat(1024 * 1024 + 1) });
  const reply = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = request(broker.http("/api/v/publish"), { method: "POST", agent: false, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), authorization: `Bearer ${TOKEN}` } }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode!, text }));
    });
    req.on("error", (e: NodeJS.ErrnoException) => (e.code === "EPIPE" || e.code === "ECONNRESET" ? undefined : reject(e)));
    req.end(body);
  });
  expect(reply.status).toBe(413);
  expect((JSON.parse(reply.text) as { error: string }).error).toMatch(/exceeds/);
});

describe("routing", () => {
  test("the console is served as static assets; /mqtt and /api still reach the Worker", async () => {
    const page = await fetch(broker.http("/"));
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    expect(await page.text()).toContain("vendor/mqtt.min.js");
    for (const [path, type] of [
      ["/console.js", /javascript/],
      ["/console.css", /^text\/css/],
      ["/vendor/mqtt.min.js", /javascript/],
    ] as const) {
      const res = await fetch(broker.http(path));
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type"), path).toMatch(type);
      await res.arrayBuffer();
    }
    const mqttPlain = await fetch(broker.http("/mqtt"));
    expect(mqttPlain.status).toBe(426);
    await mqttPlain.arrayBuffer();
    const missing = await fetch(broker.http("/no-such-file"));
    expect(missing.status).toBe(404);
    await missing.arrayBuffer();
  });
});
