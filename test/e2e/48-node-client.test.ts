// client/node-websocket.mjs, the `createWebsocket` helper for MQTT.js in Node: one WebSocket frame
// per MQTT packet (each incoming frame is a billed Durable Object event). Frames are counted by a
// proxy in front of the broker that forwards every message as one message, in both directions,
// so the broker receives exactly the frames counted; it also splits the client's bytes into MQTT
// packets to count them. Then the helper against the worker directly: MQTT 3.1.1 and 5, QoS 0/1/2,
// a 1 MiB payload, a burst, a reconnect and a clean DISCONNECT.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import type { IClientOptions, MqttClient } from "mqtt";
import { createWebsocket, coalescingWebsocket, CoalescingWebSocket } from "../../client/node-websocket.mjs";
import { startBroker, connect, collect, end, freePort, quietFor, TEST_API_TOKEN, SHARDED, type Broker } from "./harness";
import { sleep, shardStub } from "./inspect";

const TYPES = ["?", "connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp", "subscribe", "suback", "unsubscribe", "unsuback", "pingreq", "pingresp", "disconnect", "auth"];

/** What a client sent through the proxy: frames (messages), bytes, and the MQTT packets in them. */
interface Tally {
  frames: number;
  bytes: number;
  frameSizes: number[];
  packets: string[];
}

/** Splits a byte stream into MQTT packets (fixed header + Remaining Length) and names them. */
function packetSplitter(onPacket: (type: string) => void): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  return (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    for (;;) {
      if (pending.length < 2) return;
      let length = 0;
      let multiplier = 1;
      let at = 1;
      for (;;) {
        if (at >= pending.length) return;
        const b = pending[at++]!;
        length += (b & 0x7f) * multiplier;
        multiplier *= 128;
        if ((b & 0x80) === 0) break;
      }
      if (pending.length < at + length) return;
      onPacket(TYPES[pending[0]! >> 4]!);
      pending = pending.subarray(at + length);
    }
  };
}

interface FrameCounter {
  /** ws://127.0.0.1:<proxy port>/mqtt[/namespace] */
  url(namespace?: string): string;
  /** one tally per client connection, in the order they were accepted */
  tallies: Tally[];
  close(): Promise<void>;
}

/** A WebSocket proxy in front of `broker` that counts what each client sends. */
async function frameCounter(broker: Broker): Promise<FrameCounter> {
  const port = await freePort();
  const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false, handleProtocols: (offered) => [...offered][0] ?? false });
  await new Promise((r) => wss.once("listening", r));
  const tallies: Tally[] = [];
  wss.on("connection", (client, req) => {
    const tally: Tally = { frames: 0, bytes: 0, frameSizes: [], packets: [] };
    tallies.push(tally);
    const split = packetSplitter((t) => tally.packets.push(t));
    const up = new WebSocket(`ws://127.0.0.1:${broker.port}${req.url}`, client.protocol ? [client.protocol] : [], { perMessageDeflate: false });
    const early: Buffer[] = [];
    client.on("message", (data: Buffer) => {
      tally.frames++;
      tally.bytes += data.length;
      tally.frameSizes.push(data.length);
      split(data);
      if (up.readyState === WebSocket.OPEN) up.send(data);
      else early.push(data);
    });
    up.on("open", () => early.splice(0).forEach((d) => up.send(d)));
    up.on("message", (data: Buffer) => client.readyState === WebSocket.OPEN && client.send(data));
    const closeCode = (code: number) => (code >= 1000 && code < 5000 && ![1004, 1005, 1006, 1015].includes(code) ? code : 1000);
    up.on("close", (code) => client.readyState === WebSocket.OPEN && client.close(closeCode(code)));
    client.on("close", (code) => (up.readyState === WebSocket.OPEN ? up.close(closeCode(code)) : up.terminate()));
    up.on("error", () => client.terminate());
    client.on("error", () => up.terminate());
  });
  return {
    url: (namespace) => `ws://127.0.0.1:${port}/mqtt${namespace ? `/${namespace}` : ""}`,
    tallies,
    close: () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  };
}

/** The namespace's stats over RPC; `events.websocketMessages` once the broker counts them. */
async function brokerStats(broker: Broker, namespace: string): Promise<{ bytes: { received: number }; events?: { websocketMessages?: number } }> {
  // every shard's figures, summed (the client sits on one of them)
  type Figures = { bytes: { received: number }; events?: { websocketMessages?: number } };
  const all = await Promise.all(Array.from({ length: broker.shards }, (_, i) => shardStub<{ stats(): Promise<Figures> }>(broker, namespace, i).then((s) => s.stats())));
  const events = all.every((s) => s.events?.websocketMessages !== undefined) ? { websocketMessages: all.reduce((n, s) => n + s.events!.websocketMessages!, 0) } : undefined;
  return { bytes: { received: all.reduce((n, s) => n + s.bytes.received, 0) }, events };
}

const ratio = (t: Tally) => t.frames / t.packets.length;
const count = (t: Tally) => Object.entries(t.packets.reduce<Record<string, number>>((m, p) => ((m[p] = (m[p] ?? 0) + 1), m), {})).map(([k, v]) => `${k}×${v}`).sort().join(" ");

describe("frames per packet, counted in front of the broker", () => {
  let broker: Broker;
  let proxy: FrameCounter;
  beforeAll(async () => {
    broker = await startBroker();
    proxy = await frameCounter(broker);
  });
  afterAll(async () => {
    await proxy.close();
    await broker.close();
  });

  /**
   * One client: CONNECT, SUBSCRIBE, 10 awaited publishes at each QoS (its own messages come back:
   * it acknowledges them too), UNSUBSCRIBE, PINGREQ-free, DISCONNECT. Returns its tally.
   */
  async function session(version: 4 | 5, helper: boolean, namespace: string): Promise<Tally> {
    const n = proxy.tallies.length;
    const opts: IClientOptions = { protocolVersion: version, clientId: `fpp-${version}-${helper ? "h" : "p"}`, createWebsocket: helper ? createWebsocket : undefined };
    const c = await connect(proxy.url(namespace), opts);
    await c.subscribeAsync("fpp/#", { qos: 2 });
    const got = collect(c, 30);
    for (const qos of [0, 1, 2] as const) for (let i = 0; i < 10; i++) await c.publishAsync(`fpp/${qos}`, `m${i} ${"x".repeat(100)}`, { qos });
    expect((await got).map((m) => m.topic + m.payload.slice(0, 3))).toEqual([0, 1, 2].flatMap((q) => Array.from({ length: 10 }, (_, i) => `fpp/${q}m${i} `)));
    await c.unsubscribeAsync("fpp/#");
    await new Promise<void>((r) => c.end(false, {}, () => r()));
    await sleep(100);
    return proxy.tallies[n]!;
  }

  for (const version of [4, 5] as const) {
    test(`MQTT ${version === 4 ? "3.1.1" : "5"}: MQTT.js alone sends several frames per packet; with the helper, at most one`, async () => {
      const plain = await session(version, false, `fpp-plain-${version}`);
      const helped = await session(version, true, `fpp-helped-${version}`);
      const line = (name: string, t: Tally) => `${name}: ${t.frames} frames / ${t.packets.length} packets = ${ratio(t).toFixed(2)} frames per packet (${count(t)})`;
      console.log(`[frames per packet] MQTT ${version === 4 ? "3.1.1" : "5"}\n  ${line("MQTT.js     ", plain)}\n  ${line("with helper ", helped)}`);
      // Same conversation, same bytes.
      expect(count(helped)).toEqual(count(plain));
      expect(helped.bytes).toBe(plain.bytes);
      expect(ratio(plain)).toBeGreaterThan(3); // what the helper is for (MQTT.js 5.16 over `ws`)
      expect(helped.frames).toBeLessThanOrEqual(helped.packets.length);
      // The broker saw exactly these bytes (and, once it counts them, these frames).
      const stats = await brokerStats(broker, `fpp-helped-${version}`);
      expect(stats.bytes.received).toBe(helped.bytes);
      if (stats.events?.websocketMessages !== undefined) expect(stats.events.websocketMessages).toBe(helped.frames);
    });
  }

  test("packets written apart (a publisher sending every few ms): exactly one frame per packet", async () => {
    const measure = async (helper: boolean) => {
      const n = proxy.tallies.length;
      const c = await connect(proxy.url("fpp-apart"), { protocolVersion: 5, clientId: `apart-${helper ? "h" : "p"}`, createWebsocket: helper ? createWebsocket : undefined });
      for (let i = 0; i < 20; i++) {
        c.publish("apart/x", `reading ${i}`, { qos: i % 2 === 0 ? 0 : 1 });
        await sleep(5);
      }
      await sleep(50);
      await new Promise<void>((r) => c.end(false, {}, () => r()));
      await sleep(100);
      return proxy.tallies[n]!;
    };
    const plain = await measure(false);
    const helped = await measure(true);
    console.log(`[frames per packet] publishes 5 ms apart (QoS 0 and 1), client to broker: MQTT.js ${plain.frames} frames / ${plain.packets.length} packets = ${ratio(plain).toFixed(2)}; with helper ${helped.frames} / ${helped.packets.length} = ${ratio(helped).toFixed(2)}`);
    expect(count(helped)).toBe("connect×1 disconnect×1 publish×20");
    expect(helped.frames).toBe(helped.packets.length);
    expect(ratio(plain)).toBeGreaterThan(3);
  });

  test("a burst of 1,000 QoS 1 publishes written in one turn: far fewer frames than packets, none over 1 MiB", async () => {
    const n = proxy.tallies.length;
    const sub = await connect(broker.url("fpp-burst"), { protocolVersion: 5, createWebsocket });
    await sub.subscribeAsync("burst/#", { qos: 1 });
    const got = collect(sub, 1000, 15_000);
    const pub = await connect(proxy.url("fpp-burst"), { protocolVersion: 5, createWebsocket });
    const acks = Array.from({ length: 1000 }, (_, i) => pub.publishAsync("burst/x", `b${i}`, { qos: 1 }));
    await Promise.all(acks);
    expect((await got).map((m) => m.payload)).toEqual(Array.from({ length: 1000 }, (_, i) => `b${i}`));
    const t = proxy.tallies[n]!;
    console.log(`[frames per packet] burst of 1,000 QoS 1: ${t.frames} frames / ${t.packets.length} packets`);
    expect(t.packets.filter((p) => p === "publish")).toHaveLength(1000);
    expect(t.frames).toBeLessThan(t.packets.length / 10);
    expect(Math.max(...t.frameSizes)).toBeLessThanOrEqual(1024 * 1024);
    await end(sub, pub);
  });
});

describe("the helper against the worker", () => {
  let broker: Broker;
  beforeAll(async () => {
    broker = await startBroker({ MAX_PACKET_SIZE: String(2 * 1024 * 1024), API_TOKEN: TEST_API_TOKEN });
  });
  afterAll(() => broker.close());

  for (const version of [4, 5] as const) {
    test(`MQTT ${version === 4 ? "3.1.1" : "5"}: QoS 0, 1 and 2 both ways, in order, with retained messages`, async () => {
      const ns = `helper-${version}`;
      const sub = await connect(broker.url(ns), { protocolVersion: version, createWebsocket });
      await sub.subscribeAsync("h/#", { qos: 2 });
      const pub = await connect(broker.url(ns), { protocolVersion: version, createWebsocket });
      const got = collect(sub, 30);
      for (const qos of [0, 1, 2] as const) for (let i = 0; i < 10; i++) pub.publish(`h/${qos}`, `q${qos}-${i}`, { qos });
      const msgs = await got;
      for (const qos of [0, 1, 2]) {
        const mine = msgs.filter((m) => m.topic === `h/${qos}`);
        expect(mine.map((m) => m.payload)).toEqual(Array.from({ length: 10 }, (_, i) => `q${qos}-${i}`));
        expect(mine.every((m) => m.packet.qos === qos)).toBe(true);
      }
      await pub.publishAsync("h/retained", "kept", { qos: 1, retain: true });
      const late = await connect(broker.url(ns), { protocolVersion: version, createWebsocket });
      const retained = collect(late, 1);
      await late.subscribeAsync("h/retained", { qos: 1 });
      expect((await retained)[0]).toMatchObject({ topic: "h/retained", payload: "kept" });
      await end(sub, pub, late);
    });
  }

  // sharded: passes alone at K = 4; under the whole suite's load a 1 MiB copy crossing shards (a link call of its own) misses the 30 s test timeout
  test.skipIf(SHARDED)("a 1 MiB payload at QoS 1 and 2 arrives intact; the packet leaves as a 1 MiB frame and the rest", async () => {
    const payload = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + (i >> 8)) & 0xff;
    const sub = await connect(broker.url("helper-big"), { protocolVersion: 5, createWebsocket });
    await sub.subscribeAsync("big/#", { qos: 2 });
    const received: Buffer[] = [];
    sub.on("message", (_t, p) => received.push(p));
    const proxy = await frameCounter(broker);
    const pub = await connect(proxy.url("helper-big"), { protocolVersion: 5, createWebsocket });
    await pub.publishAsync("big/1", payload, { qos: 1 });
    await pub.publishAsync("big/2", payload, { qos: 2 });
    for (let i = 0; i < 100 && received.length < 2; i++) await sleep(50);
    expect(received).toHaveLength(2);
    expect(received.every((p) => p.equals(payload))).toBe(true);
    await end(sub, pub);
    await proxy.close();
    // CONNECT; each PUBLISH as a frame of 1 MiB and one of the few bytes beyond; PUBREL.
    const sizes = proxy.tallies[0]!.frameSizes;
    expect(sizes.filter((n) => n === 1024 * 1024)).toHaveLength(2);
    expect(Math.max(...sizes)).toBe(1024 * 1024);
  });

  // sharded: as above: passes alone at K = 4, times out under the whole suite's load
  test.skipIf(SHARDED)("a payload that keeps the packet within 1 MiB leaves as one frame", async () => {
    const proxy = await frameCounter(broker);
    try {
      const pub = await connect(proxy.url("helper-big"), { protocolVersion: 4, createWebsocket });
      const payload = Buffer.alloc(1024 * 1024 - 64, 7);
      await pub.publishAsync("big/3", payload, { qos: 1 });
      await end(pub);
      const t = proxy.tallies[0]!;
      expect(t.packets.slice(0, 2)).toEqual(["connect", "publish"]);
      expect(t.frames).toBe(t.packets.length);
      expect(Math.max(...t.frameSizes)).toBeLessThanOrEqual(1024 * 1024);
    } finally {
      await proxy.close();
    }
  });

  test("reconnect: after the broker drops it, MQTT.js builds a new helper socket and resumes the session", async () => {
    const ns = "helper-reconnect";
    let sockets = 0;
    const counted: typeof createWebsocket = (...args) => (sockets++, createWebsocket(...args));
    const sub = await connect(broker.url(ns), { protocolVersion: 5, createWebsocket: counted, clientId: "rc-sub", clean: false, properties: { sessionExpiryInterval: 300 }, reconnectPeriod: 200 });
    await sub.subscribeAsync("rc/#", { qos: 1 });
    const reconnected = new Promise<void>((r) => sub.once("connect", () => r()));
    const res = await fetch(broker.http(`/api/${ns}/clients/rc-sub`), { method: "DELETE", headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
    expect(res.ok).toBe(true);
    // Published while it is away: queued for the session.
    const pub = await connect(broker.url(ns), { protocolVersion: 5, createWebsocket });
    await pub.publishAsync("rc/while-away", "queued", { qos: 1 });
    const got = collect(sub, 2, 10_000);
    await reconnected;
    await pub.publishAsync("rc/after", "live", { qos: 1 });
    expect((await got).map((m) => `${m.topic}=${m.payload}`)).toEqual(["rc/while-away=queued", "rc/after=live"]);
    expect(sockets).toBe(2);
    await end(sub, pub);
  });

  test("end() flushes DISCONNECT before the close: no will; a dropped socket publishes it", async () => {
    const ns = "helper-will";
    const watcher = await connect(broker.url(ns), { protocolVersion: 5, createWebsocket });
    await watcher.subscribeAsync("will/#", { qos: 1 });
    const will = { topic: "will/gone", payload: Buffer.from("gone"), qos: 1 as const, retain: false };
    const polite = await connect(broker.url(ns), { protocolVersion: 5, createWebsocket, will });
    await new Promise<void>((r) => polite.end(false, {}, () => r()));
    expect(await quietFor(watcher, 500)).toEqual([]);
    const rude = await connect(broker.url(ns), { protocolVersion: 5, createWebsocket, will });
    const got = collect(watcher, 1);
    (rude.stream as unknown as { destroy(): void }).destroy();
    rude.end(true);
    expect((await got)[0]).toMatchObject({ topic: "will/gone", payload: "gone" });
    await end(watcher);
  });
});

describe("CoalescingWebSocket on a plain ws server", () => {
  let wss: WebSocketServer;
  let url: string;
  const received: Buffer[] = [];
  beforeAll(async () => {
    wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise((r) => wss.once("listening", r));
    url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}`;
    wss.on("connection", (s) => s.on("message", (d: Buffer) => received.push(d)));
  });
  afterAll(() => new Promise<void>((r) => wss.close(() => r())));

  async function open(ws: CoalescingWebSocket): Promise<CoalescingWebSocket> {
    await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
    return ws;
  }
  const settle = () => sleep(50);

  test("sends of one turn leave as one binary frame, in order; the next turn as the next frame", async () => {
    received.length = 0;
    const ws = await open(createWebsocket(url, ["mqtt"], {}));
    ws.send(Buffer.from("ab"));
    ws.send(new Uint8Array([0x63]));
    ws.send(new TextEncoder().encode("d").buffer);
    await settle();
    ws.send(Buffer.from("e"));
    ws.send("text goes alone, after what was buffered");
    await settle();
    expect(received.map((b) => b.toString())).toEqual(["abcd", "e", "text goes alone, after what was buffered"]);
    expect(ws.framesSent).toBe(2);
    ws.close();
  });

  test("bytes are taken when sent (the caller may reuse its buffer); close() sends what is buffered first", async () => {
    received.length = 0;
    const ws = await open(createWebsocket(url, ["mqtt"], {}));
    const b = Buffer.from("first");
    ws.send(b);
    b.write("XXXXX");
    ws.send(Buffer.from("+last"));
    ws.close();
    await new Promise((r) => ws.once("close", r));
    await settle();
    expect(received.map((x) => x.toString())).toEqual(["first+last"]);
  });

  test("maxFrameSize cuts a turn's bytes into frames of that size, in order", async () => {
    received.length = 0;
    const ws = await open(new CoalescingWebSocket(url, ["mqtt"], {}, { maxFrameSize: 1000 }));
    ws.send(Buffer.alloc(600, 1));
    ws.send(Buffer.alloc(600, 2)); // 1,200 bytes: a frame of 1,000 leaves now
    ws.send(Buffer.alloc(1000, 3));
    expect(ws.framesSent).toBe(2);
    await settle();
    expect(received.map((x) => x.length)).toEqual([1000, 1000, 200]);
    expect(Buffer.concat(received)).toEqual(Buffer.concat([Buffer.alloc(600, 1), Buffer.alloc(600, 2), Buffer.alloc(1000, 3)]));
    ws.close();
  });

  test("backpressure: callbacks come on the next tick under highWaterMark, once their frame is written above it", async () => {
    const ws = await open(new CoalescingWebSocket(url, ["mqtt"], {}, { highWaterMark: 500 }));
    const order: string[] = [];
    ws.send(Buffer.alloc(100), () => order.push(`small, frames sent ${ws.framesSent}`));
    await new Promise((r) => process.nextTick(r));
    expect(order).toEqual(["small, frames sent 0"]);
    ws.send(Buffer.alloc(600), () => order.push(`large, frames sent ${ws.framesSent}`));
    expect(ws.bufferedAmount).toBeGreaterThanOrEqual(700);
    await new Promise((r) => process.nextTick(r));
    expect(order).toHaveLength(1);
    await settle();
    expect(order).toEqual(["small, frames sent 0", "large, frames sent 1"]);
    ws.close();
  });

  test("a send after the peer closed reports an error to its callback, as ws does", async () => {
    const ws = await open(createWebsocket(url, ["mqtt"], {}));
    for (const s of wss.clients) s.terminate();
    await new Promise((r) => ws.once("close", r));
    const err = await new Promise<Error | undefined>((r) => ws.send(Buffer.from("late"), r));
    expect(err).toBeInstanceOf(Error);
  });

  test("coalescingWebsocket passes its limits; MQTT.js's wsOptions reach ws", async () => {
    const make = coalescingWebsocket({ maxFrameSize: 4 });
    const ws = await open(make(url, ["mqtt"], { wsOptions: { headers: { "x-test": "1" } } }));
    received.length = 0;
    ws.send(Buffer.from("123456789"));
    await settle();
    expect(received.map((x) => x.toString())).toEqual(["1234", "5678", "9"]);
    ws.close();
  });
});

export type { MqttClient };
