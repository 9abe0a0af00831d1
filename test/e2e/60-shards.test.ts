// One namespace over 4 shards (docs/scale-out.md §11): clients whose ids are chosen with
// `home(id, 4)` sit on chosen shards (the harness adds the placement hint `?client=<id>`), and
// every test puts publisher and subscriber on different shards. Each test first checks that its
// clients are where the hash says (the `inspect` RPC of every shard), so a test can only pass by
// crossing shards.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import mqtt, { type MqttClient, type IClientOptions } from "mqtt";
import { startBroker, connect, collect, end, quietFor, hinted, type Broker } from "./harness";
import { createWebsocket } from "../../client/node-websocket.mjs";
import { inspectShard, shardStub } from "./inspect";
import { home } from "../../src/shards/layout";

const K = 4;
let broker: Broker;
beforeAll(async () => {
  broker = await startBroker({ SHARDS: String(K), SHARDS_EXPERIMENTAL: "1" });
});
afterAll(() => broker.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const v5 = { protocolVersion: 5 as const };

/** A client id (`<name>-<n>`) whose home shard at K = 4 is `shard`. */
function idOn(shard: number, name: string): string {
  for (let n = 0; ; n++) {
    const id = `${name}-${n}`;
    if (home(id, K) === shard) return id;
  }
}

/** The shards whose `inspect` shows `clientId` connected. */
async function shardsHolding(clientId: string): Promise<number[]> {
  const snaps = await Promise.all(Array.from({ length: K }, (_, i) => inspectShard(broker, "default", i)));
  return snaps.flatMap((s, i) => (s.sessions.some((x) => x.clientId === clientId && x.connected) ? [i] : []));
}

/** Connects `clientId` (hinted) and checks it landed on its home shard, and only there. */
async function on(shard: number, name: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const clientId = idOn(shard, name);
  const client = await connect(broker.url(), { ...opts, clientId });
  expect(await shardsHolding(clientId), `${clientId} should sit on shard ${shard}`).toEqual([shard]);
  return client;
}

/**
 * A persistent client (hinted, on `shard`) that reconnects by itself every 100 ms after a loss:
 * connect errors while the runtime restarts are expected (the harness's `connect` ends the client
 * at the first one).
 */
async function reconnecting(shard: number, name: string): Promise<MqttClient> {
  const clientId = idOn(shard, name);
  const client = mqtt.connect(hinted(broker.url(), clientId), { clientId, clean: false, reconnectPeriod: 100, connectTimeout: 5000, createWebsocket });
  client.on("error", () => {});
  await new Promise((resolve) => client.once("connect", resolve));
  expect(await shardsHolding(clientId)).toEqual([shard]);
  return client;
}

/** No shard reports a consistency problem. */
async function consistent(): Promise<void> {
  for (let i = 0; i < K; i++) expect((await inspectShard(broker, "default", i)).problems, `shard ${i}`).toEqual([]);
}

/** The copies shard `shard` has applied from the others (its stats' `shard.forwardedIn`). */
async function forwardedIn(shard: number): Promise<number> {
  const stub = await shardStub<{ stats(): Promise<{ shard?: { forwardedIn: number } }> }>(broker, "default", shard);
  return (await stub.stats()).shard!.forwardedIn;
}

/** Polls `check` until it holds; fails after `ms`. */
async function until(check: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await sleep(20);
  }
}

const seq = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

describe("publish and subscribe across shards", () => {
  describe.each([0, 1, 2] as const)("QoS %i", (qos) => {
    test.each([
      [1, 2],
      [2, 1],
    ])("publisher on shard %i, subscriber on shard %i: every message once, in order", async (from, to) => {
      const topic = `x/${qos}/${from}-${to}`;
      const sub = await on(to, `sub-q${qos}-${from}${to}`);
      await sub.subscribeAsync(topic, { qos });
      const pub = await on(from, `pub-q${qos}-${from}${to}`);
      const got = collect(sub, 50);
      for (const m of seq(50, "m")) await pub.publishAsync(topic, m, { qos });
      const messages = await got;
      expect(messages.map((m) => m.payload)).toEqual(seq(50, "m"));
      expect(messages.every((m) => m.packet.qos === qos)).toBe(true);
      expect(await quietFor(sub, 300)).toEqual([]); // no duplicate behind them
      await end(sub, pub);
    });
  });

  test("two publishers on two shards to a subscriber on a third, QoS 1 and 2 mixed: order per publisher, nothing twice", async () => {
    const sub = await on(3, "sub-mix");
    await sub.subscribeAsync("mix/#", { qos: 2 });
    const [a, b] = [await on(0, "pub-mix-a"), await on(1, "pub-mix-b")];
    const got = collect(sub, 80);
    await Promise.all([
      (async () => {
        for (const m of seq(40, "a")) await a.publishAsync("mix/a", m, { qos: 1 });
      })(),
      (async () => {
        for (const m of seq(40, "b")) await b.publishAsync("mix/b", m, { qos: 2 });
      })(),
    ]);
    const messages = (await got).map((m) => m.payload);
    expect(messages.filter((m) => m.startsWith("a"))).toEqual(seq(40, "a"));
    expect(messages.filter((m) => m.startsWith("b"))).toEqual(seq(40, "b"));
    expect(await quietFor(sub, 300)).toEqual([]);
    await end(sub, a, b);
  });

  test("wildcard subscribers on three shards each get every matching message once", async () => {
    const filters = ["wc/#", "wc/+/x", "+/a/x"];
    const subs = await Promise.all([1, 2, 3].map((s) => on(s, `sub-wc-${s}`)));
    await Promise.all(subs.map((s, i) => s.subscribeAsync(filters[i]!, { qos: 1 })));
    const pub = await on(0, "pub-wc");
    const gots = subs.map((s, i) => collect(s, i === 0 ? 21 : 20));
    for (const m of seq(20, "w")) await pub.publishAsync("wc/a/x", m, { qos: 1 });
    await pub.publishAsync("wc/b/y", "only-hash", { qos: 1 }); // matches wc/# alone
    const [hash, ...others] = await Promise.all(gots);
    expect(hash!.map((m) => m.payload)).toEqual([...seq(20, "w"), "only-hash"]);
    for (const got of others) expect(got.map((m) => m.payload)).toEqual(seq(20, "w"));
    for (const s of subs) expect(await quietFor(s, 300)).toEqual([]);
    await end(pub, ...subs);
  });

  test("No Local: a client's own message does not come back to it through another shard; others' do", async () => {
    const x = await on(1, "nl-x", v5);
    await x.subscribeAsync("nl/t", { qos: 1, nl: true });
    const y = await on(2, "nl-y", v5);
    await y.subscribeAsync("nl/t", { qos: 1 });
    const z = await on(3, "nl-z", v5);
    const atY = collect(y, 2);
    const atX = collect(x, 1);
    await x.publishAsync("nl/t", "from-x", { qos: 1 });
    await z.publishAsync("nl/t", "from-z", { qos: 1 });
    expect((await atY).map((m) => m.payload)).toEqual(["from-x", "from-z"]);
    expect((await atX).map((m) => m.payload)).toEqual(["from-z"]);
    expect(await quietFor(x, 300)).toEqual([]);
    await end(x, y, z);
  });

  test("overlapping subscriptions on another shard: one copy at the highest QoS with every subscription id", async () => {
    const sub = await on(2, "sid-sub", v5);
    await sub.subscribeAsync("sid/+", { qos: 1, properties: { subscriptionIdentifier: 7 } });
    await sub.subscribeAsync("sid/#", { qos: 2, properties: { subscriptionIdentifier: 9 } });
    await sub.subscribeAsync("sid/only/#", { qos: 0, properties: { subscriptionIdentifier: 11 } });
    const pub = await on(0, "sid-pub", v5);
    const got = collect(sub, 2);
    await pub.publishAsync("sid/x", "both", { qos: 2 });
    await pub.publishAsync("sid/only/y", "two", { qos: 1 });
    // MQTT.js hands a QoS 2 message over at PUBREL, so the QoS 1 one may come first
    const messages = await got;
    const both = messages.find((m) => m.payload === "both");
    const two = messages.find((m) => m.payload === "two");
    expect(both!.packet.qos).toBe(2);
    expect(([] as number[]).concat(both!.packet.properties!.subscriptionIdentifier as number | number[]).sort((a, b) => a - b)).toEqual([7, 9]);
    expect(two!.packet.qos).toBe(1); // min(published 1, highest granted 2)
    expect(([] as number[]).concat(two!.packet.properties!.subscriptionIdentifier as number | number[]).sort((a, b) => a - b)).toEqual([9, 11]);
    expect(await quietFor(sub, 300)).toEqual([]);
    await end(sub, pub);
  });

  test("a SUBSCRIBE on one shard then at once a publish on another: delivered (the SUBACK waited for the peers)", async () => {
    const sub = await on(1, "race-sub");
    const pub = await on(3, "race-pub");
    for (let i = 0; i < 10; i++) {
      await sub.subscribeAsync(`race/${i}`, { qos: 1 });
      const got = collect(sub, 1, 3000);
      await pub.publishAsync(`race/${i}`, `r${i}`, { qos: i % 2 ? 1 : 0 });
      expect((await got)[0]!.payload).toBe(`r${i}`);
    }
    await end(sub, pub);
  });
});

describe("sessions across shards", () => {
  test("a persistent subscriber offline on one shard gets its queue, published on another, after reconnecting", async () => {
    const persistent = { clean: false };
    const sub = await on(2, "queue-sub", persistent);
    await sub.subscribeAsync("queue/t", { qos: 1 });
    await end(sub);
    const pub = await on(0, "queue-pub");
    const before = await forwardedIn(2);
    for (const m of seq(20, "q")) await pub.publishAsync("queue/t", m, { qos: 1 });
    await pub.publishAsync("queue/t", "qos0-not-queued", { qos: 0 });
    // the QoS 0 copy must reach shard 2 while its subscriber is offline (else it is delivered live)
    await until(async () => (await forwardedIn(2)) >= before + 21, 5000);
    const back = await connect(broker.url(), { ...persistent, clientId: idOn(2, "queue-sub") });
    const got = await collect(back, 20);
    expect(await shardsHolding(idOn(2, "queue-sub"))).toEqual([2]); // the hint brought it home
    expect(got.map((m) => m.payload)).toEqual(seq(20, "q"));
    expect(await quietFor(back, 300)).toEqual([]);
    await end(back, pub);
    await consistent();
  });

  test("Message Expiry across shards: a queued message past its expiry is dropped, the rest forwarded with the interval less the wait", async () => {
    const opts = { ...v5, clean: false, properties: { sessionExpiryInterval: 300 } };
    const sub = await on(1, "exp-sub", opts);
    await sub.subscribeAsync("exp/t", { qos: 1 });
    await end(sub);
    const pub = await on(3, "exp-pub", v5);
    await pub.publishAsync("exp/t", "short", { qos: 1, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync("exp/t", "long", { qos: 1, properties: { messageExpiryInterval: 30 } });
    await pub.publishAsync("exp/t", "forever", { qos: 1 });
    await sleep(2100); // time has to pass for anything to expire
    const back = await connect(broker.url(), { ...opts, clientId: idOn(1, "exp-sub") });
    const got = await collect(back, 2);
    expect(got.map((m) => m.payload)).toEqual(["long", "forever"]);
    expect(got[0]!.packet.properties!.messageExpiryInterval).toBeLessThanOrEqual(28);
    expect(got[1]!.packet.properties?.messageExpiryInterval).toBeUndefined();
    expect(await quietFor(back, 300)).toEqual([]);
    await end(back, pub);
  });

  test.each([1, 2] as const)("a restart of the whole broker in the middle of a QoS %i stream across shards loses nothing (QoS 2: nothing twice)", async (qos) => {
    const total = 200;
    const sub = await reconnecting(1, `restart-sub-${qos}`);
    await sub.subscribeAsync(`restart/${qos}`, { qos });
    const pub = await reconnecting(2, `restart-pub-${qos}`);
    const seen = new Set<string>();
    let received = 0;
    let restartAt: () => void;
    const halfway = new Promise<void>((r) => (restartAt = r));
    const all = new Promise<void>((resolve) =>
      sub.on("message", (_t, payload) => {
        received++;
        seen.add(payload.toString());
        if (seen.size === 50) restartAt();
        if (seen.size === total) resolve();
      }),
    );
    // Ten in flight at a time, so the restart falls in the middle of the stream. MQTT.js keeps
    // unacknowledged messages and sends them again (DUP; PUBREL for QoS 2) after it reconnects.
    const published = (async () => {
      const all = seq(total, "s");
      for (let i = 0; i < total; i += 10) await Promise.all(all.slice(i, i + 10).map((m) => pub.publishAsync(`restart/${qos}`, m, { qos })));
    })();
    await halfway;
    expect(seen.size).toBeLessThan(total);
    await broker.restart();
    await Promise.race([all, sleep(20_000).then(() => Promise.reject(new Error(`after the restart: ${seen.size}/${total} messages`)))]);
    await published;
    await quietFor(sub, 500); // anything late would be a repeat
    expect(seen.size).toBe(total);
    if (qos === 2) expect(received).toBe(total); // exactly once
    else expect(received).toBeGreaterThanOrEqual(total); // QoS 1: repeats allowed (DUP), loss not
    await end(sub, pub);
    await consistent();
  });

  // Takeover from one shard to another with in-flight and queued messages: 62-shard-tunnel. One
  // shard crashing in the middle of forwarding (QoS 1 nothing lost, QoS 2 nothing twice): 61-shard-crash.
});

/** Connects a fresh client on `shard`, subscribes `filter` and returns the retained messages it gets. */
async function retainedSeenFrom(shard: number, name: string, filter: string, expected: number): Promise<string[]> {
  const sub = await on(shard, name);
  const got: string[] = [];
  sub.on("message", (topic, payload, packet) => {
    if (packet.retain) got.push(`${topic}=${payload.toString()}`);
  });
  // the retained messages follow the SUBACK: wait for the expected count, then a quiet spell for extras
  const arrived = expected > 0 ? collect(sub, expected, 2000).catch(() => null) : null;
  await sub.subscribeAsync(filter, { qos: 1 });
  await arrived;
  await quietFor(sub, 300);
  await end(sub);
  return got.sort();
}

/**
 * Retained messages written on one shard reach the others over the links after the publisher's
 * acknowledgement; a new subscriber on another shard sees them once they arrived (bounded wait:
 * each attempt may see fewer, never a copy twice).
 */
async function eventuallyRetained(shard: number, name: string, filter: string, expected: string[]): Promise<void> {
  let last: string[] = [];
  for (let attempt = 0; attempt < 10; attempt++) {
    last = await retainedSeenFrom(shard, `${name}-${attempt}`, filter, expected.length);
    expect(new Set(last).size, `no copy twice: ${last.join()}`).toBe(last.length);
    if (last.join() === expected.join()) return;
  }
  expect(last).toEqual(expected);
}

describe("retained messages across shards", () => {
  const topics = Array.from({ length: 12 }, (_, i) => `ret/${i}`);

  test("published on two shards, found by new subscribers on other shards: exact and wildcard, each once", async () => {
    const p0 = await on(0, "ret-pub-0");
    const p2 = await on(2, "ret-pub-2");
    for (const [i, t] of topics.entries()) await (i % 2 ? p2 : p0).publishAsync(t, `v${i}`, { qos: 1, retain: true });
    await end(p0, p2);
    const all = topics.map((t, i) => `${t}=v${i}`).sort();
    await eventuallyRetained(3, "ret-sub-exact", "ret/5", ["ret/5=v5"]);
    await eventuallyRetained(3, "ret-sub-hash", "ret/#", all);
    await eventuallyRetained(1, "ret-sub-plus", "ret/+", all);
  });

  test("a retained delete on one shard reaches the others", async () => {
    const p = await on(1, "ret-del");
    await p.publishAsync("ret/5", "", { qos: 1, retain: true });
    await end(p);
    const rest = topics.filter((t) => t !== "ret/5").map((t) => `${t}=v${Number(t.slice(4))}`).sort();
    await eventuallyRetained(2, "ret-del-sub", "ret/#", rest);
    await eventuallyRetained(0, "ret-del-sub0", "ret/5", []);
  });
});

describe("shared subscriptions across shards", () => {
  test("a group with members on two shards: each QoS 1 message to exactly one member, none lost", async () => {
    const m1 = await on(1, "share-m1");
    const m2 = await on(2, "share-m2");
    await m1.subscribeAsync("$share/g/share/t", { qos: 1 });
    await m2.subscribeAsync("$share/g/share/t", { qos: 1 });
    const got: string[][] = [[], []];
    let done: () => void;
    const hundred = new Promise<void>((r) => (done = r));
    const count = (i: number) => (_t: string, p: Buffer) => {
      got[i]!.push(p.toString());
      if (got[0]!.length + got[1]!.length === 100) done();
    };
    m1.on("message", count(0));
    m2.on("message", count(1));
    const pub = await on(3, "share-pub");
    for (const m of seq(100, "g")) await pub.publishAsync("share/t", m, { qos: 1 });
    await Promise.race([hundred, sleep(5000)]);
    await Promise.all([quietFor(m1, 300), quietFor(m2, 300)]); // and nothing more
    const union = [...got[0]!, ...got[1]!];
    expect(union.length).toBe(100);
    expect(new Set(union).size).toBe(100);
    // each member's share keeps the publisher's order
    for (const g of got) expect(g).toEqual([...g].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1))));
    await end(m1, m2, pub);
  });
});
