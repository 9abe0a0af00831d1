// The Worker in front of the Durable Objects: routing, status codes, subprotocols, namespaces.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { request } from "node:http";
import { startBroker, connect, collect, quietFor, end, type Broker } from "./harness";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker();
});
afterAll(() => broker.close());

/** A plain HTTP GET (node:http: fetch() refuses to send an Upgrade header). */
function http(path: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: broker.port, path, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** Opens a WebSocket and reports the handshake: the accepted subprotocol, or the HTTP status of a refusal. */
function handshake(path: string, protocols?: string | string[]): Promise<{ protocol?: string; status?: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${broker.port}${path}`, protocols);
    ws.once("open", () => {
      const protocol = ws.protocol;
      ws.close();
      resolve({ protocol });
    });
    ws.once("unexpected-response", (_req, res) => {
      resolve({ status: res.statusCode });
      res.resume();
      ws.terminate();
    });
    ws.once("error", (e) => {
      if (ws.readyState !== WebSocket.CLOSED) reject(e);
    });
  });
}

describe("HTTP routing", () => {
  // `/` is the web console and `/api/…` the HTTP API (test/e2e/30-api.test.ts).
  test.each(["/foo", "/mqttx", "/mqtt2/a", "/mqtt-console"])("unknown path %s → 404 with a hint", async (path) => {
    const res = await http(path);
    expect(res.status).toBe(404);
    expect(res.text).toMatch(/\/mqtt/);
  });

  test.each(["/mqtt/", "/mqtt/a/b", "/mqtt/" + "x".repeat(65), "/mqtt/has%20space", "/mqtt/%C3%BC", "/mqtt/a:b"])("invalid namespace %s → 400", async (path) => {
    const res = await http(path, { Connection: "Upgrade", Upgrade: "websocket" });
    expect(res.status).toBe(400);
    expect(res.text).toMatch(/namespace/);
  });

  // (The Worker also sets `Upgrade: websocket` on the 426; workerd drops that hop-by-hop header locally.)
  test.each(["/mqtt", "/mqtt/ns-1", "/mqtt/" + "x".repeat(64), "/mqtt/A.b_c-9"])("plain GET %s (no upgrade) → 426 with a hint", async (path) => {
    const res = await http(path);
    expect(res.status).toBe(426);
    expect(res.text).toMatch(/WebSocket/i);
  });

  test("a WebSocket to an invalid namespace is refused with 400", async () => {
    expect(await handshake("/mqtt/a/b", "mqtt")).toEqual({ status: 400 });
  });
});

describe("WebSocket subprotocol", () => {
  test.each([
    ["mqtt", "mqtt"],
    ["mqttv3.1", "mqttv3.1"],
    [["mqttv3.1", "mqtt"], "mqtt"],
    [["foo", "mqttv3.1"], "mqttv3.1"],
  ])("offer %j → echoes %j", async (offered, echoed) => {
    expect(await handshake("/mqtt", offered)).toEqual({ protocol: echoed });
  });

  test("no subprotocol offered → accepted without one", async () => {
    expect(await handshake("/mqtt")).toEqual({ protocol: "" });
  });

  test("only unknown subprotocols → 400", async () => {
    expect(await handshake("/mqtt", ["chat", "soap"])).toEqual({ status: 400 });
  });
});

describe("namespaces", () => {
  test.each([4, 5] as const)("a message in one namespace is not seen in another, protocol %i", async (protocolVersion) => {
    const subA = await connect(broker.url("tenant-a"), { protocolVersion });
    const subB = await connect(broker.url("tenant-b"), { protocolVersion });
    const subDefault = await connect(broker.url(), { protocolVersion });
    await Promise.all([subA, subB, subDefault].map((c) => c.subscribeAsync("ns/#", { qos: 1 })));
    const pubA = await connect(broker.url("tenant-a"), { protocolVersion });
    const gotA = collect(subA, 1);
    const quietB = quietFor(subB, 700);
    const quietDefault = quietFor(subDefault, 700);
    await pubA.publishAsync("ns/x", "only-a", { qos: 1 });
    expect((await gotA).map((m) => m.payload)).toEqual(["only-a"]);
    expect(await quietB).toEqual([]);
    expect(await quietDefault).toEqual([]);
    await end(subA, subB, subDefault, pubA);
  });

  test("/mqtt is the namespace `default`", async () => {
    const sub = await connect(broker.url("default"));
    await sub.subscribeAsync("d/x");
    const pub = await connect(broker.url());
    const got = collect(sub, 1);
    await pub.publishAsync("d/x", "same");
    expect((await got)[0]!.payload).toBe("same");
    await end(sub, pub);
  });

  test("the same client id in two namespaces is two sessions (no takeover)", async () => {
    const a = await connect(broker.url("ns1"), { clientId: "twin" });
    const b = await connect(broker.url("ns2"), { clientId: "twin" });
    let closed = false;
    a.on("close", () => (closed = true));
    await a.subscribeAsync("t");
    const got = collect(a, 1);
    const pub = await connect(broker.url("ns1"));
    await pub.publishAsync("t", "still-here");
    expect((await got)[0]!.payload).toBe("still-here");
    expect(closed).toBe(false);
    await end(a, b, pub);
  });
});
