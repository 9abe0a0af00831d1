// Denial of service from one client, and what bounds it (issue 18 items 4-6, issue 11 item 8):
// SUBSCRIBE amplification, paced retained messages, password-guessing throttles, and the bytes
// a socket may hold before its CONNECT is accepted.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startBroker, connect, end, SHARDED, type Broker } from "./harness";
import { RawClient, publishPacket } from "./raw";
import { closedWithin, record, sleep, uncaught } from "./inspect";
import { encode } from "../packets";
import { hashPassword } from "../../src/auth/password";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker({
    MAX_FILTERS_PER_SUBSCRIBE: "10",
    RETAINED_BYTES_PER_TURN: "4096",
  });
});
afterAll(() => broker.close());

/** Retained messages `prefix/0..n-1`, `size` bytes each, published by a throwaway client. */
async function retain(ns: string, prefix: string, n: number, size: number): Promise<void> {
  const c = await connect(broker.url(ns));
  for (let i = 0; i < n; i++) await c.publishAsync(`${prefix}/${i}`, Buffer.alloc(size, 65 + (i % 26)), { qos: 1, retain: true });
  await end(c);
}

/** Waits until `c` has received `n` PUBLISH packets (taking them), or fails after `ms`. */
async function publishes(c: RawClient, n: number, ms = 5000): Promise<{ topic: string; retain: boolean }[]> {
  const got: { topic: string; retain: boolean }[] = [];
  while (got.length < n) {
    const p = (await c.next("publish", ms)) as { topic: string; retain: boolean };
    got.push({ topic: p.topic, retain: p.retain });
  }
  return got;
}

describe.each([
  [4, 0x80],
  [5, 0x97],
] as const)("SUBSCRIBE amplification (protocol %i)", (v, quota) => {
  test("filters beyond MAX_FILTERS_PER_SUBSCRIBE are refused; a repeated filter counts once, and its retained messages are sent once", async () => {
    const ns = `amp-${v}`;
    await retain(ns, "r", 3, 10);
    const c = await RawClient.connect(broker.url(ns), { protocolVersion: v, clientId: `amp-${v}` });
    const subscriptions = Array.from({ length: 50 }, () => ({ topic: "#", qos: 0 as const }));
    c.send({ cmd: "subscribe", messageId: 1, subscriptions } as never);
    const suback = (await c.next("suback")) as { granted: number[] };
    expect(suback.granted).toEqual([...Array(10).fill(0), ...Array(40).fill(quota)]);
    const got = await publishes(c, 3);
    expect(got.map((g) => g.topic).sort()).toEqual(["r/0", "r/1", "r/2"]);
    expect(got.every((g) => g.retain)).toBe(true);
    // nothing more: a marker published now arrives next, with nothing before it
    const pub = await connect(broker.url(ns), { protocolVersion: v });
    await pub.publishAsync("marker", "m", { qos: 1 });
    const next = (await c.next(undefined, 5000)) as { cmd: string; topic?: string };
    expect(next).toMatchObject({ cmd: "publish", topic: "marker" });
    await end(pub);
    await c.end();
  });
});

test("a filter repeated in one SUBSCRIBE takes the options of its last copy", async () => {
  const ns = "amp-repeat";
  const c = await RawClient.connect(broker.url(ns), { protocolVersion: 5, clientId: "repeat" });
  c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t", qos: 0 }, { topic: "u", qos: 1 }, { topic: "t", qos: 2 }] } as never);
  expect(((await c.next("suback")) as { granted: number[] }).granted).toEqual([0, 1, 2]); // each copy granted, each replacing the one before
  const pub = await connect(broker.url(ns), { protocolVersion: 5 });
  await pub.publishAsync("t", "x", { qos: 2 });
  expect(await c.next("publish")).toMatchObject({ topic: "t", qos: 2 });
  await end(pub);
  await c.end();
});

// sharded: a retained write reaches the other shards over the links after its PUBACK; a reader there right after may miss it (flaky)
test.skipIf(SHARDED)("retained messages are paced (RETAINED_BYTES_PER_TURN a turn), and every one is delivered", async () => {
  const ns = "paced";
  await retain(ns, "p", 40, 1000);
  const c = await RawClient.connect(broker.url(ns), { protocolVersion: 4, clientId: "paced" });
  c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "p/#", qos: 0 }] } as never);
  await c.next("suback");
  const got = await publishes(c, 40);
  expect(new Set(got.map((g) => g.topic)).size).toBe(40);
  // the 40 KB left in several frames, none much over the 4 KB budget (one turn, one frame)
  expect(c.frames.length).toBeGreaterThanOrEqual(10);
  expect(Math.max(...c.frames)).toBeLessThan(4096 + 1100);
  await c.end();
});

// sharded: a retained write reaches the other shards over the links after its PUBACK; a subscriber there right after may get it late, live, or twice
test.skipIf(SHARDED)("an unsubscribe stops the paced retained messages still owed; a dropped connection ends them quietly", async () => {
  const ns = "paced-stop";
  await retain(ns, "q", 40, 1000);
  const c = await RawClient.connect(broker.url(ns), { protocolVersion: 4, clientId: "stop" });
  c.sendBytes(
    Uint8Array.from([
      ...c.encode({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "q/#", qos: 0 }, { topic: "marker", qos: 0 }] } as never),
      ...c.encode({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["q/#"] } as never),
    ]),
  );
  await c.take("unsuback");
  const pub = await connect(broker.url(ns));
  await new Promise((r) => setTimeout(r, 100)); // later turns would have come by now
  await pub.publishAsync("marker", "m", { qos: 1 });
  const got: string[] = [];
  for (;;) {
    const p = (await c.next("publish")) as { topic: string };
    if (p.topic === "marker") break;
    got.push(p.topic);
  }
  expect(got.length).toBeGreaterThan(0); // the first turn (4 KB) went out with the SUBACK's frame
  expect(got.length).toBeLessThan(10);
  await c.end();
  // subscribe and vanish: the owed turns find the connection gone
  const gone = await RawClient.connect(broker.url(ns), { protocolVersion: 4, clientId: "gone" });
  gone.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "q/#", qos: 1 }] } as never);
  await gone.next("suback");
  await gone.destroy();
  await new Promise((r) => setTimeout(r, 200));
  await end(pub);
});

describe("password guessing", () => {
  let auth: Broker;
  beforeAll(async () => {
    auth = await startBroker({
      AUTH_MODE: "password",
      AUTH_USERS: JSON.stringify({ alice: { password: await hashPassword("wonderland") } }), // 100,000 iterations
      AUTH_FAILURE_BURST: "3",
      AUTH_RATE: "10",
      AUTH_BURST: "10",
    });
  });
  afterAll(() => auth.close());

  /** CONNACK code from `address` (0: accepted) and how long the answer took. */
  async function login(v: 4 | 5, password: string, address: string, ns = "guess"): Promise<{ code: number; ms: number }> {
    const t = Date.now();
    try {
      const c = await connect(auth.url(ns), { protocolVersion: v, username: "alice", password, wsOptions: { headers: { "CF-Connecting-IP": address } } });
      await end(c);
      return { code: 0, ms: Date.now() - t };
    } catch (e) {
      return { code: (e as { code?: number }).code ?? -1, ms: Date.now() - t };
    }
  }

  // sharded: the password-failure throttle is per shard, not per namespace
  test.skipIf(SHARDED).each([
    [4, 4, 3],
    [5, 0x86, 0x9f],
  ] as const)("protocol %i: failures from one address beyond AUTH_FAILURE_BURST are refused at once; other addresses are not", async (v, bad, throttled) => {
    const ip = `203.0.113.${v}`;
    for (let i = 0; i < 3; i++) expect((await login(v, `guess-${i}`, ip, `guess-${v}`)).code).toBe(bad);
    const refused = await login(v, "guess-3", ip, `guess-${v}`);
    expect(refused.code).toBe(throttled);
    expect((await login(v, "wonderland", ip, `guess-${v}`)).code).toBe(throttled); // the right password learns nothing
    expect((await login(v, "wonderland", `198.51.100.${v}`, `guess-${v}`)).code).toBe(0);
  });

  test("a reconnect storm of a verified client is cheap: 40 logins within the namespace's burst of 10", async () => {
    expect((await login(5, "wonderland", "192.0.2.1", "storm")).code).toBe(0);
    const codes = await Promise.all(Array.from({ length: 40 }, (_, i) => login(5, "wonderland", `192.0.2.${i + 2}`, "storm")));
    expect(codes.map((c) => c.code)).toEqual(Array(40).fill(0));
  });

  test("nothing escaped to the runtime", () => {
    expect(uncaught(auth)).toEqual([]);
  });
});

describe("bytes held before CONNECT is accepted", () => {
  let held: Broker;
  beforeAll(async () => {
    held = await startBroker({
      AUTH_MODE: "password",
      AUTH_USERS: JSON.stringify({ alice: { password: await hashPassword("wonderland") } }), // slow enough to pile packets behind
      MAX_UNCONNECTED_BYTES: String(150 * 1024),
    });
  });
  afterAll(() => held.close());

  const connectBytes = (clientId: string, willBytes = 0, v: 4 | 5 = 4) =>
    encode(
      {
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: v,
        clientId,
        clean: true,
        keepalive: 0,
        username: "alice",
        password: Buffer.from("wonderland"),
        ...(willBytes ? { will: { topic: "w", payload: Buffer.alloc(willBytes), qos: 0, retain: false } } : {}),
      } as never,
      v,
    );

  // sharded: a socket whose client id is not yet in sight (no hint: it may need a tunnel) waits for the whole CONNECT: the announced 100 KB is not refused early (since main de1f82f)
  test.skipIf(SHARDED)("a CONNECT over MAX_CONNECT_PACKET_SIZE (64 KiB) is refused as soon as its length arrives", async () => {
    const big = connectBytes("big", 100 * 1024);
    const c = await RawClient.open(held.url("first"));
    c.sendBytes(big.subarray(0, 10)); // the fixed header announces 100 KB
    expect(await closedWithin(c, 2000)).not.toBe("open"); // not after CONNECT_TIMEOUT (10 s)
    // a CONNECT with a 40 KB will is fine
    const ok = await RawClient.open(held.url("first"));
    ok.sendBytes(connectBytes("will-40k", 40 * 1024));
    expect(await ok.next("connack")).toMatchObject({ returnCode: 0 });
    await ok.end();
  });

  // sharded: the limit is counted per shard, not per namespace
  test.skipIf(SHARDED)("sockets not yet connected hold at most MAX_UNCONNECTED_BYTES together; the excess is closed, the others connect", async () => {
    const parts = [0, 1, 2].map((i) => connectBytes(`partial-${i}`, 60 * 1024));
    const socks = await Promise.all(parts.map(() => RawClient.open(held.url("unconnected"))));
    for (let i = 0; i < 3; i++) {
      socks[i]!.sendBytes(parts[i]!.subarray(0, parts[i]!.length - 10)); // all but the last 10 bytes
      await sleep(50);
    }
    expect(await closedWithin(socks[2]!, 2000)).not.toBe("open"); // 3 × 60 KB > 150 KB
    for (let i = 0; i < 2; i++) {
      expect(socks[i]!.isClosed).toBe(false);
      socks[i]!.sendBytes(parts[i]!.subarray(parts[i]!.length - 10));
      expect(await socks[i]!.next("connack")).toMatchObject({ returnCode: 0 });
    }
    // their bytes are released once connected: another large CONNECT fits again
    const again = await RawClient.open(held.url("unconnected"));
    again.sendBytes(connectBytes("again", 60 * 1024));
    expect(await again.next("connack")).toMatchObject({ returnCode: 0 });
    await Promise.all([...socks.slice(0, 2), again].map((s) => s.end()));
  });

  test.each([
    [4, { returnCode: 3 }],
    [5, { reasonCode: 0x97 }],
  ] as const)("protocol %i: 10 × 90 KB PUBLISH behind a CONNECT being verified: refused beyond MAX_HELD_BYTES, nothing delivered", async (v, refusal) => {
    const ns = `behind-${v}`;
    const watcher = await connect(held.url(ns), { username: "alice", password: "wonderland" });
    await watcher.subscribeAsync("behind/#");
    const got = record(watcher);
    const c = await RawClient.open(held.url(ns), v);
    const publish = encode({ cmd: "publish", topic: "behind/x", payload: Buffer.alloc(90 * 1024), qos: 0, retain: false, dup: false }, v);
    c.sendBytes(Uint8Array.from([...connectBytes(`eager-${v}`, 0, v), ...Array.from({ length: 10 }, () => [...publish]).flat()]));
    expect(await c.next("connack")).toMatchObject(refusal);
    expect(await closedWithin(c, 2000)).not.toBe("open");
    // a marker from the watcher's own path arrives, and nothing before it
    await watcher.publishAsync("behind/marker", "m", { qos: 1 });
    await sleep(200);
    expect(got).toEqual(["behind/marker=m"]);
    await end(watcher);
  });

  test("nothing escaped to the runtime", () => {
    expect(uncaught(held)).toEqual([]);
  });
});

test("nothing escaped to the runtime", () => {
  expect(uncaught(broker)).toEqual([]);
});
