// Bridges, second part: a ws:// remote (Aedes over WebSocket, in this process), and a broker that
// requires authentication: the bridge's own local socket is let in without credentials because
// it comes from the bridge object, and an outside WebSocket cannot pretend to be it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MqttClient } from "mqtt";
import { Aedes } from "aedes";
import { WebSocket, WebSocketServer, createWebSocketStream } from "ws";
import { TEST_API_TOKEN, collect, connect, end, freePort, startBroker, type Broker } from "./harness";
import { until } from "./marker";
import { makeKeys, sign } from "../jwt-helpers";

let broker: Broker;
let aedes: Aedes;
let wss: WebSocketServer;
let remoteUrl: string;
let token: string;
const clients: MqttClient[] = [];

beforeAll(async () => {
  aedes = await Aedes.createBroker();
  const port = await freePort();
  wss = new WebSocketServer({ host: "127.0.0.1", port });
  wss.on("connection", (socket, req) => aedes.handle(createWebSocketStream(socket), req));
  remoteUrl = `ws://127.0.0.1:${port}`;
  const keys = await makeKeys();
  token = await sign(keys, "HS256", { sub: "dev", ns: "default", exp: Math.floor(Date.now() / 1000) + 600 });
  broker = await startBroker({
    API_TOKEN: TEST_API_TOKEN,
    AUTH_MODE: "jwt",
    // ordinary clients are held to 1 publish a second; the bridge carries many publishers' messages
    MAX_PUBLISH_RATE: "1",
    MAX_PACKET_SIZE: "4096",
    PUBLISH_BURST: "2",
    JWT_SECRET: keys.secret,
    // the bridge's local client is allowed everything; ordinary clients only their own topics
    ACL_DEFAULT: JSON.stringify({ publish: ["clients/%c/#"], subscribe: ["clients/%c/#"] }),
    BRIDGES: JSON.stringify([
      {
        name: "ws-remote", url: `${remoteUrl}/mqtt`, version: 4, tryPrivate: false, reconnectMin: 0.1, reconnectMax: 0.5,
        out: [{ filter: "sensors/#", prefix: "edge/", qos: 1 }], in: [{ filter: "commands/#", prefix: "clients/admin/", qos: 1 }],
      },
    ]),
  });
});

afterAll(async () => {
  await end(...clients);
  await broker?.close();
  await new Promise<void>((r) => wss?.close(() => r()));
  await new Promise<void>((r) => aedes?.close(() => r()));
});

async function status(): Promise<Record<string, any>> {
  const res = await fetch(broker.http("/api/default/bridges"), { headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
  return ((await res.json()) as { bridges: Record<string, any>[] }).bridges[0]!;
}

describe("bridge over ws:// into a namespace that requires authentication", () => {
  it("links without local credentials, and carries messages both ways", async () => {
    let last: Record<string, any> = {};
    await until(async () => {
      last = await status();
      return last.connected?.remote && last.connected?.local;
    }, "the bridge to connect", 10_000).catch(() => {
      throw new Error(JSON.stringify(last));
    });
    // an ordinary client needs its token, and may use only clients/<id>/#
    const admin = await connect(broker.url(), { protocolVersion: 5, clientId: "admin", username: "x", password: token });
    clients.push(admin);
    const rsub = await connect(remoteUrl, { protocolVersion: 4 });
    const rpub = await connect(remoteUrl, { protocolVersion: 4 });
    clients.push(rsub, rpub);
    await rsub.subscribeAsync("edge/#", { qos: 1 });
    // out: published through the HTTP API (the client's ACL does not cover sensors/#)
    const out = collect(rsub, 1);
    const res = await fetch(broker.http("/api/default/publish"), {
      method: "POST",
      headers: { "content-type": "application/json", Authorization: `Bearer ${TEST_API_TOKEN}` },
      body: JSON.stringify({ topic: "sensors/t", payload: "21.5", qos: 1 }),
    });
    expect(res.status).toBe(200);
    expect((await out)[0]).toMatchObject({ topic: "edge/sensors/t", payload: "21.5" });
    // in: published locally by the bridge (whose own rights cover it), read by a client whose ACL does
    await admin.subscribeAsync("clients/admin/#", { qos: 1 });
    const inbound = collect(admin, 1);
    await rpub.publishAsync("commands/reboot", "now", { qos: 1 });
    expect((await inbound)[0]).toMatchObject({ topic: "clients/admin/commands/reboot", payload: "now" });
  });

  it("is not held to the per-connection publish rate (MAX_PUBLISH_RATE)", async () => {
    const admin = await connect(broker.url(), { protocolVersion: 5, clientId: "admin", username: "x", password: token });
    clients.push(admin);
    await admin.subscribeAsync("clients/admin/#", { qos: 1 });
    const n = 30;
    const got = collect(admin, n, 10_000);
    const rpub = await connect(remoteUrl, { protocolVersion: 4 });
    clients.push(rpub);
    for (let i = 0; i < n; i++) await rpub.publishAsync("commands/burst", String(i), { qos: 1 });
    expect((await got).map((m) => Number(m.payload))).toEqual(Array.from({ length: n }, (_, i) => i));
    const s = await status();
    expect(s.reconnects).toBe(0);
    expect(s.lastError).toBeNull();
  });

  it("a remote message larger than the namespace's Maximum Packet Size is dropped and reported, and the link stays up", async () => {
    const admin = await connect(broker.url(), { protocolVersion: 5, clientId: "admin", username: "x", password: token });
    clients.push(admin);
    await admin.subscribeAsync("clients/admin/#", { qos: 1 });
    const got = collect(admin, 1, 10_000);
    const rpub = await connect(remoteUrl, { protocolVersion: 4 });
    clients.push(rpub);
    const before = await status();
    await rpub.publishAsync("commands/big", Buffer.alloc(10_000), { qos: 1 });
    await rpub.publishAsync("commands/small", "after", { qos: 1 });
    expect((await got)[0]).toMatchObject({ topic: "clients/admin/commands/small", payload: "after" });
    const s = await status();
    expect(s.dropped).toBe(before.dropped + 1);
    expect(s.lastError).toMatch(/refused a message on clients\/admin\/commands\/big \(0x95\)/);
    expect(s.reconnects).toBe(before.reconnects);
  });

  it("an outside WebSocket carrying the bridge header is refused by the Worker", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(broker.url(), "mqtt", { headers: { "X-MQTT-Bridge": "ws-remote" } });
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.on("open", () => {
        ws.close();
        reject(new Error("the WebSocket was accepted"));
      });
      ws.on("error", () => undefined);
    });
    expect(status).toBe(400);
    // and without credentials an ordinary client is refused (the bridge's exemption is not general)
    await expect(connect(broker.url(), { protocolVersion: 4 })).rejects.toThrow();
  });
});
