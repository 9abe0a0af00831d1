// Raising SHARDS under a namespace that holds sessions (issue 13, docs/scale-out.md §9): the
// sessions whose home moved go to their new shards with everything they hold (subscriptions,
// queue, messages in flight, inbound QoS 2 ids, will), retained messages reach the new shards,
// and nothing is lost or doubled. Sockets are refused (503) only while the sessions move.
import { afterEach, expect, test } from "vitest";
import WebSocket from "ws";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { createWebsocket } from "../../client/node-websocket.mjs";
import { startBroker, connect, collect, end, quietFor, TEST_API_TOKEN, type Broker } from "./harness";
import { RawClient } from "./raw";
import { until } from "./marker";
import { inspectShard, shardStub } from "./inspect";
import { home } from "../../src/shards/layout";

let broker: Broker | undefined;
afterEach(async () => {
  await broker?.close();
  broker = undefined;
});

/** an id whose home is `before` at `k1` shards and `after` at `k2` */
function idMoving(prefix: string, k1: number, before: number, k2: number, after: number): string {
  for (let i = 0; ; i++) {
    const id = `${prefix}${i}`;
    if (home(id, k1) === before && home(id, k2) === after) return id;
  }
}

const persistent = (clientId: string) => ({ clientId, clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 } });

/**
 * Connects and collects the first `n` messages, listening from the start: a queue can arrive in
 * the CONNACK's own frame, before a listener added after `connect` resolves.
 */
function connectReceiving(url: string, opts: IClientOptions, n: number): { client: Promise<MqttClient>; messages: Promise<string[]> } {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, createWebsocket, ...opts });
  const got: string[] = [];
  const messages = new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out with ${got.length}/${n} messages: ${got.join(", ")}`)), 5000);
    client.on("message", (_topic, payload) => {
      if (got.push(payload.toString()) === n) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
  return { client: new Promise((resolve, reject) => client.once("connect", () => resolve(client)).once("error", reject)), messages };
}

/** the HTTP status of a WebSocket upgrade (101 when it opened) */
function upgradeStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, "mqtt");
    ws.once("open", () => {
      ws.close();
      resolve(101);
    });
    ws.once("unexpected-response", (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
      ws.once("error", () => undefined);
    });
    ws.once("error", (e) => {
      if (ws.readyState !== WebSocket.CLOSED) reject(e);
    });
  });
}

/** Waits until shard 0 says the namespace serves with its new number of shards. */
async function grown(b: Broker, ns: string): Promise<void> {
  const stub = await shardStub<{ shardLayout(): Promise<{ growing: string | null; problem: string | null }> }>(b, ns, 0);
  await until(async () => {
    const layout = await stub.shardLayout();
    expect(layout.problem).toBeNull();
    return layout.growing === null;
  }, "the namespace to finish growing", 20_000);
}

/** the shards whose storage holds `clientId`'s session */
async function holders(b: Broker, ns: string, k: number, clientId: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < k; i++) if ((await inspectShard(b, ns, i)).sessions.some((s) => s.clientId === clientId)) out.push(i);
  return out;
}

async function consistent(b: Broker, ns: string, k: number): Promise<void> {
  for (let i = 0; i < k; i++) expect((await inspectShard(b, ns, i)).problems, `shard ${i}`).toEqual([]);
}

test("SHARDS 2 → 4: moved sessions keep their queue, in-flight messages, inbound QoS 2 ids and subscriptions; retained messages reach the new shards", async () => {
  const vars: Record<string, string> = { SHARDS: "2", API_TOKEN: TEST_API_TOKEN, EVENTS: "none" };
  broker = await startBroker(vars);
  const b = broker;
  const ns = "grow2";
  const url = (id: string) => `${b.url(ns)}?client=${encodeURIComponent(id)}`;
  const mover = idMoving("mover", 2, 0, 4, 2);
  const stayer = idMoving("stayer", 2, 1, 4, 1);
  const window2 = idMoving("window", 2, 1, 4, 3);
  const q2 = idMoving("qostwo", 2, 0, 4, 3);
  const watcher = idMoving("watcher", 2, 1, 4, 2);
  const pubId = idMoving("pub", 2, 0, 4, 0);

  // before: every session on its home at 2 shards
  const m = await connect(url(mover), persistent(mover));
  await m.subscribeAsync("g/t", { qos: 1 });
  await m.subscribeAsync("s/+", { qos: 2 });
  await end(m);
  const s = await connect(url(stayer), persistent(stayer));
  await s.subscribeAsync("g/t", { qos: 1 });
  await end(s);
  const w = await connect(url(watcher), persistent(watcher));
  await w.subscribeAsync("q2/t", { qos: 2 });
  // a client that acknowledges nothing: Receive Maximum 2 holds two in flight, the rest queue
  const win = await RawClient.connect(url(window2), { ...persistent(window2), properties: { sessionExpiryInterval: 600, receiveMaximum: 2 } });
  win.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "inf/#", qos: 1 }] } as never);
  await win.next("suback");
  const pub = await connect(url(pubId), { clientId: pubId, protocolVersion: 5 });
  for (let i = 0; i < 5; i++) await pub.publishAsync("inf/x", `i${i}`, { qos: 1 });
  expect([String((await win.next("publish")).payload), String((await win.next("publish")).payload)]).toEqual(["i0", "i1"]);
  win.ws.close();
  for (let i = 0; i < 10; i++) await pub.publishAsync("g/t", `m${i}`, { qos: 1 });
  await pub.publishAsync("r/a", "A", { qos: 1, retain: true });
  await pub.publishAsync("r/b", "B", { qos: 1, retain: true });
  // an inbound QoS 2 exchange left at PUBREC: the id is the session's
  const once = collect(w, 1);
  const q = await RawClient.connect(url(q2), persistent(q2));
  q.send({ cmd: "publish", topic: "q2/t", payload: Buffer.from("once"), qos: 2, messageId: 7, retain: false, dup: false } as never);
  expect((await q.next("pubrec")).messageId).toBe(7);
  expect((await once)[0]!.payload).toBe("once");
  q.ws.close();
  await end(pub, w);
  expect(await holders(b, ns, 2, mover)).toEqual([0]);

  vars.SHARDS = "4";
  await b.restart();
  await grown(b, ns);

  // each session is on its home at 4 shards, and only there
  expect(await holders(b, ns, 4, mover)).toEqual([2]);
  expect(await holders(b, ns, 4, stayer)).toEqual([1]);
  expect(await holders(b, ns, 4, window2)).toEqual([3]);
  expect(await holders(b, ns, 4, q2)).toEqual([3]);
  await consistent(b, ns, 4);
  expect(await upgradeStatus(url(mover))).toBe(101);

  // the queue, in order, on the moved session and on the one that stayed
  const moving = connectReceiving(url(mover), persistent(mover), 10);
  const staying = connectReceiving(url(stayer), persistent(stayer), 10);
  const [m2, s2] = [await moving.client, await staying.client];
  expect(await moving.messages).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
  expect(await staying.messages).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));

  // in flight: re-sent with DUP, then the queue
  const win2 = await RawClient.connect(url(window2), persistent(window2));
  const got: string[] = [];
  for (let i = 0; i < 5; i++) {
    const p = await win2.next("publish");
    got.push(`${String(p.payload)}${p.dup ? "+dup" : ""}`);
    win2.send({ cmd: "puback", messageId: p.messageId, reasonCode: 0 } as never);
  }
  expect(got).toEqual(["i0+dup", "i1+dup", "i2", "i3", "i4"]);

  // the inbound QoS 2 id moved: the PUBLISH sent again is not delivered again, PUBREL completes it
  const w2 = await connect(url(watcher), persistent(watcher));
  const q3 = await RawClient.connect(url(q2), persistent(q2));
  q3.send({ cmd: "publish", topic: "q2/t", payload: Buffer.from("once"), qos: 2, messageId: 7, retain: false, dup: true } as never);
  expect((await q3.next("pubrec")).messageId).toBe(7);
  q3.send({ cmd: "pubrel", messageId: 7 } as never);
  expect((await q3.next("pubcomp")).messageId).toBe(7);
  expect(await quietFor(w2, 500)).toEqual([]);

  // the moved subscriptions route from every shard; retained messages are on a new shard
  const pub2 = await connect(url(idMoving("pub", 2, 1, 4, 1)), { clientId: idMoving("pub", 2, 1, 4, 1) });
  const live = collect(m2, 1);
  await pub2.publishAsync("s/x", "after", { qos: 2 });
  expect((await live)[0]).toMatchObject({ topic: "s/x", payload: "after" });
  const fresh = idMoving("fresh", 4, 3, 4, 3);
  const f = await connect(url(fresh), { clientId: fresh });
  const retained = collect(f, 2);
  await f.subscribeAsync("r/#", { qos: 1 });
  expect((await retained).map((x) => `${x.topic}=${x.payload}`).sort()).toEqual(["r/a=A", "r/b=B"]);
  await end(m2, s2, w2, pub2, f);
  win2.ws.close();
  q3.ws.close();
  await consistent(b, ns, 4);
});

test("a namespace made with one object grows to 4 shards: its sessions and retained messages are found on their new homes", async () => {
  const vars: Record<string, string> = { EVENTS: "none" };
  broker = await startBroker(vars);
  const b = broker;
  const ns = "grow1";
  const ids = Array.from({ length: 12 }, (_, i) => `dev-${i}`);
  for (const id of ids) {
    const c = await connect(b.url(ns), persistent(id));
    await c.subscribeAsync(`dev/${id}/cmd`, { qos: 1 });
    await end(c);
  }
  const pub = await connect(b.url(ns), { clientId: "pub" });
  for (const id of ids) await pub.publishAsync(`dev/${id}/cmd`, `hello ${id}`, { qos: 1 });
  await pub.publishAsync("cfg", "v1", { qos: 1, retain: true });
  await end(pub);

  vars.SHARDS = "4";
  await b.restart();
  await grown(b, ns);
  const homes = new Set<number>();
  for (const id of ids) {
    expect(await holders(b, ns, 4, id)).toEqual([home(id, 4)]);
    homes.add(home(id, 4));
  }
  expect(homes.size).toBeGreaterThan(1); // some sessions did move
  await consistent(b, ns, 4);
  for (const id of ids) {
    const back = connectReceiving(`${b.url(ns)}?client=${encodeURIComponent(id)}`, persistent(id), 1);
    const c = await back.client;
    expect(await back.messages).toEqual([`hello ${id}`]);
    const cfg = collect(c, 1);
    await c.subscribeAsync("cfg", { qos: 1 });
    expect((await cfg)[0]!.payload).toBe("v1");
    await end(c);
  }
  // the subscriptions work across shards after the move
  const a = ids[0]!;
  const c = await connect(`${b.url(ns)}?client=${encodeURIComponent(a)}`, persistent(a));
  const other = idMoving("p", 4, (home(a, 4) + 1) % 4, 4, (home(a, 4) + 1) % 4);
  const p = await connect(`${b.url(ns)}?client=${other}`, { clientId: other });
  const got = collect(c, 1);
  await p.publishAsync(`dev/${a}/cmd`, "again", { qos: 1 });
  expect((await got)[0]!.payload).toBe("again");
  await end(c, p);
});

test("lowering SHARDS (to 2, or unset: one object) is refused (503 with the reason), sockets and API publishes alike; setting it back serves the sessions intact", async () => {
  const vars: Record<string, string> = { SHARDS: "4", EVENTS: "none", API_TOKEN: TEST_API_TOKEN };
  broker = await startBroker(vars);
  const b = broker;
  const ns = "shrink";
  const id = idMoving("keeper", 4, 3, 4, 3);
  const url = `${b.url(ns)}?client=${id}`;
  const c = await connect(url, persistent(id));
  await c.subscribeAsync("k/#", { qos: 1 });
  await end(c);
  vars.SHARDS = "2";
  await b.restart();
  expect(await upgradeStatus(`${b.url(ns)}?client=x`)).toBe(503);
  delete vars.SHARDS; // one object: shard 0 alone would hide the sessions of the three others
  await b.restart();
  expect(await upgradeStatus(`${b.url(ns)}?client=x`)).toBe(503);
  const api = await fetch(b.http(`/api/${ns}/publish`), { method: "POST", headers: { authorization: `Bearer ${TEST_API_TOKEN}`, "content-type": "application/json" }, body: JSON.stringify({ topic: "k/x", payload: "lost?" }) });
  expect(api.status).toBe(503);
  vars.SHARDS = "4";
  await b.restart();
  const back = await connect(url, persistent(id));
  const got = collect(back, 1);
  const pub = await connect(`${b.url(ns)}?client=p`, { clientId: "p" });
  await pub.publishAsync("k/x", "still subscribed", { qos: 1 });
  expect((await got)[0]!.payload).toBe("still subscribed");
  await end(back, pub);
});
