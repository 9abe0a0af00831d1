// The bridge's forwarding rules (src/bridge/link.ts) between two scripted servers: a message is
// acknowledged to its sender only once the other side acknowledged it (QoS 1, and QoS 2 hop by
// hop); a side that goes away takes the other down and nothing is acknowledged for it.
import { describe, expect, test } from "vitest";
import * as mqtt from "mqtt-packet";
import { parseBridges } from "../../src/bridge/config";
import { BridgeLink, type LinkRuntime } from "../../src/bridge/link";
import type { Sink } from "../../src/bridge/transport";

/** One end of a socket, played by the test: packets the bridge sent, and a way to answer. */
class Server {
  sent: mqtt.Packet[] = [];
  sink: Sink | null = null;
  closed = false;
  private readonly parser;
  constructor(readonly version: 4 | 5) {
    this.parser = mqtt.parser({ protocolVersion: version });
    this.parser.on("packet", (p) => this.sent.push(p));
  }
  channel(sink: Sink) {
    this.sink = sink;
    return { send: (b: Uint8Array) => void this.parser.parse(Buffer.from(b)), close: () => (this.closed = true) };
  }
  answer(p: mqtt.Packet) {
    this.sink!.data(mqtt.generate(p, { protocolVersion: this.version }));
  }
  last(cmd: string) {
    return this.sent.filter((p) => p.cmd === cmd).at(-1) as any;
  }
}

const flush = () => new Promise((r) => setTimeout(r, 0));

/** Answers one link attempt's CONNECTs and SUBSCRIBEs (and the first one's UNSUBSCRIBE). */
async function bringUp(remote: Server, local: Server, unsubscribe: boolean, sessionPresent = { remote: false, local: false }) {
  await flush();
  remote.answer({ cmd: "connack", sessionPresent: sessionPresent.remote, reasonCode: 0, returnCode: 0 } as mqtt.Packet);
  await flush();
  expect(local.last("connect")).toMatchObject({ clientId: "bridge/t", clean: false });
  local.answer({ cmd: "connack", sessionPresent: sessionPresent.local, reasonCode: 0 });
  await flush();
  if (unsubscribe) {
    remote.answer({ cmd: "unsuback", messageId: remote.last("unsubscribe").messageId, granted: [0x11] } as mqtt.Packet);
    await flush();
  }
  expect(local.last("subscribe").subscriptions).toEqual([{ topic: "s/#", qos: 2, nl: true, rap: true, rh: 1 }]);
  local.answer({ cmd: "suback", messageId: local.last("subscribe").messageId, granted: [2] });
  await flush();
  remote.answer({ cmd: "suback", messageId: remote.last("subscribe").messageId, granted: [2] });
  await flush();
}

async function linked(version: 4 | 5 = 5) {
  const config = parseBridges(
    JSON.stringify([{ name: "t", url: "mqtt://r", version, out: [{ filter: "s/#", prefix: "p/", qos: 2 }], in: [{ filter: "c/#", prefix: "in/", qos: 2 }] }]),
  ).bridges[0]!;
  const remote = new Server(version);
  const local = new Server(5);
  const timers: [() => void, number][] = [];
  const saved: unknown[] = [];
  const clock = { now: 0 };
  const stored = new Map<string, unknown>();
  let filters = { local: [] as string[], remote: ["old/#"] };
  const rt: LinkRuntime = {
    openRemote: async (sink) => remote.channel(sink),
    openLocal: async (sink) => local.channel(sink),
    password: () => undefined,
    now: () => clock.now,
    setTimer: (fn, ms) => {
      timers.push([fn, ms]);
      return () => undefined;
    },
    log: () => undefined,
    loadFilters: async () => filters,
    saveFilters: async (f) => {
      saved.push(f);
      filters = f;
    },
    storage: {
      get: async <T,>(key: string) => stored.get(key) as T | undefined,
      put: (key: string, value: unknown) => void stored.set(key, structuredClone(value)),
    },
  };
  const link = new BridgeLink(config, rt);
  link.start();
  await bringUp(remote, local, true);
  expect(link.status().connected).toEqual({ remote: true, local: true });
  expect(saved).toEqual([{ local: ["s/#"], remote: ["c/#"] }]);
  return { link, remote, local, timers, clock, rt, config };
}

describe("bridge link", () => {
  test("out at QoS 1: the local PUBACK waits for the remote's", async () => {
    const { link, remote, local } = await linked();
    local.answer({ cmd: "publish", topic: "s/1", payload: Buffer.from("v"), qos: 1, messageId: 7, retain: true, dup: false });
    await flush();
    const fwd = remote.last("publish");
    expect(fwd).toMatchObject({ topic: "p/s/1", qos: 1, retain: true });
    expect(local.last("puback")).toBeUndefined();
    expect(link.status().queued).toBe(1);
    remote.answer({ cmd: "puback", messageId: fwd.messageId });
    await flush();
    expect(local.last("puback")).toMatchObject({ messageId: 7 });
    expect(link.status()).toMatchObject({ sent: 1, queued: 0 });
  });

  test("in at QoS 2, hop by hop: the remote's PUBREC waits for the namespace's", async () => {
    const { link, remote, local } = await linked();
    remote.answer({ cmd: "publish", topic: "c/go", payload: Buffer.from("x"), qos: 2, messageId: 9, retain: false, dup: false });
    await flush();
    const fwd = local.last("publish");
    expect(fwd).toMatchObject({ topic: "in/c/go", qos: 2 });
    expect(remote.last("pubrec")).toBeUndefined();
    local.answer({ cmd: "pubrec", messageId: fwd.messageId });
    await flush();
    expect(local.last("pubrel")).toMatchObject({ messageId: fwd.messageId });
    expect(remote.last("pubrec")).toMatchObject({ messageId: 9 });
    remote.answer({ cmd: "pubrel", messageId: 9 });
    expect(remote.last("pubcomp")).toMatchObject({ messageId: 9 });
    expect(link.status().received).toBe(1);
  });

  test("the remote goes away: both sides close, the in-flight message is never acknowledged, a retry is scheduled", async () => {
    const { link, remote, local, timers } = await linked();
    local.answer({ cmd: "publish", topic: "s/2", payload: Buffer.from("v"), qos: 1, messageId: 8, retain: false, dup: false });
    await flush();
    remote.sink!.closed("the remote closed the connection");
    await flush();
    expect(local.closed).toBe(true);
    expect(local.last("puback")).toBeUndefined();
    const s = link.status();
    expect(s.connected).toEqual({ remote: false, local: false });
    expect(s.lastError).toMatch(/remote: the remote closed the connection/);
    expect(s.reconnects).toBe(1);
    expect(s.retryAt).not.toBeNull();
    expect(timers.length).toBeGreaterThan(0);
  });

  test("backoff: a link that drops at once backs off further; one that held 30 s starts again at reconnectMin", async () => {
    const { link, remote, local, timers, clock } = await linked();
    const retry = () => timers.filter(([, ms]) => ms !== 30_000 && ms !== 1000).at(-1)!;
    remote.sink!.closed("gone");
    expect(retry()[1]).toBeLessThanOrEqual(1000); // first failure: within reconnectMin (1 s)
    retry()[0]();
    await bringUp(remote, local, false);
    expect(link.status().connected).toEqual({ remote: true, local: true });
    remote.sink!.closed("gone again"); // at once: the second failure in a row
    expect(retry()[1]).toBeGreaterThanOrEqual(1000);
    retry()[0]();
    await bringUp(remote, local, false);
    // up on both sides before the clock moves (a loaded machine can need more turns than bringUp's)
    for (let i = 0; i < 100 && !(link.status().connected.remote && link.status().connected.local); i++) await flush();
    expect(link.status().connected).toEqual({ remote: true, local: true });
    clock.now += 30_000; // held for 30 s
    remote.sink!.closed("gone after a while");
    expect(retry()[1]).toBeLessThanOrEqual(1000);
    expect(link.status().reconnects).toBe(3);
  });

  test("a message the receiver refuses is acknowledged anyway and counted as dropped", async () => {
    const { link, remote, local } = await linked();
    local.answer({ cmd: "publish", topic: "s/3", payload: Buffer.from("v"), qos: 1, messageId: 10, retain: false, dup: false });
    await flush();
    remote.answer({ cmd: "puback", messageId: remote.last("publish").messageId, reasonCode: 0x87 });
    await flush();
    expect(local.last("puback")).toMatchObject({ messageId: 10 });
    expect(link.status()).toMatchObject({ dropped: 1, sent: 0 });
    expect(link.status().lastError).toMatch(/refused a message on s\/3 \(0x87\)/);
  });
});

describe("bridge link: a silent server", () => {
  test("a remote that accepts the socket but never answers CONNECT is given up after the link timeout", async () => {
    const config = parseBridges(JSON.stringify([{ name: "t", url: "mqtt://r", out: [{ filter: "s/#" }] }])).bridges[0]!;
    const remote = new Server(4);
    const timers: [() => void, number][] = [];
    const link = new BridgeLink(config, {
      openRemote: async (sink) => remote.channel(sink),
      openLocal: async () => {
        throw new Error("not reached");
      },
      password: () => undefined,
      now: () => 0,
      setTimer: (fn, ms) => {
        timers.push([fn, ms]);
        return () => undefined;
      },
      log: () => undefined,
      loadFilters: async () => ({ local: [], remote: [] }),
      saveFilters: async () => undefined,
      storage: { get: async () => undefined, put: () => undefined },
    });
    link.start();
    await flush();
    expect(remote.last("connect")).toBeDefined();
    const [timeout, ms] = timers[0]!;
    expect(ms).toBe(30_000);
    timeout();
    expect(link.status().lastError).toMatch(/timed out building the link/);
    expect(remote.closed).toBe(true);
    expect(timers.length).toBe(2); // the retry
  });
});

describe("bridge link: QoS 2 exchanges across a reconnect (review-c)", () => {
  const retry = (timers: [() => void, number][]) => timers.filter(([, ms]) => ms !== 30_000 && ms !== 1000).at(-1)!;

  /** A QoS 2 message in: the namespace's PUBREC came (the remote is acknowledged), its PUBCOMP not. */
  async function halfReleased() {
    const l = await linked();
    l.remote.answer({ cmd: "publish", topic: "c/a", payload: Buffer.from("first"), qos: 2, messageId: 9, retain: false, dup: false });
    await flush();
    const first = l.local.last("publish");
    l.local.answer({ cmd: "pubrec", messageId: first.messageId });
    await flush();
    expect(l.local.last("pubrel")).toMatchObject({ messageId: first.messageId });
    expect(l.remote.last("pubrec")).toMatchObject({ messageId: 9 }); // the remote is done with it
    return { ...l, id: first.messageId as number };
  }

  /** After the (re)connection: a new QoS 2 message must not take the id the namespace still holds. */
  async function expectReleasedThenFresh(remote: Server, local: Server, id: number, sent: number) {
    // MQTT: the client re-sends its PUBREL for the session's unfinished exchanges [MQTT-4.4.0-1]
    expect(local.sent.slice(sent).filter((p) => p.cmd === "pubrel").map((p: any) => p.messageId)).toContain(id);
    remote.answer({ cmd: "publish", topic: "c/b", payload: Buffer.from("second"), qos: 2, messageId: 10, retain: false, dup: false });
    await flush();
    // the namespace would take a PUBLISH with a held id for a re-send and drop it (MQTT-4.3.3-10)
    expect(local.last("publish")).toMatchObject({ topic: "in/c/b" });
    expect(local.last("publish").messageId).not.toBe(id);
  }

  test("the link drops before the namespace's PUBCOMP: the PUBREL is re-sent and its id is not reused", async () => {
    const { remote, local, timers, id } = await halfReleased();
    local.sink!.closed("gone");
    await flush();
    const sent = local.sent.length;
    retry(timers)[0]();
    await bringUp(remote, local, false, { remote: true, local: true });
    await expectReleasedThenFresh(remote, local, id, sent);
    local.answer({ cmd: "pubcomp", messageId: id });
    await flush();
  });

  test("the bridge object restarts before the namespace's PUBCOMP: the PUBREL is re-sent from storage", async () => {
    const { link, remote, local, rt, config, id } = await halfReleased();
    // a restart: the object's memory is gone (the link is dropped, not stopped), its storage stays
    const sent = local.sent.length;
    const again = new BridgeLink(config, rt);
    again.start();
    await bringUp(remote, local, false, { remote: true, local: true });
    expect(again.status().connected).toEqual({ remote: true, local: true });
    await expectReleasedThenFresh(remote, local, id, sent);
    void link;
  });

  test("a session that is not present any more forgets the unfinished exchanges", async () => {
    const { remote, local, timers, id } = await halfReleased();
    local.sink!.closed("gone");
    await flush();
    const sent = local.sent.length;
    retry(timers)[0]();
    await bringUp(remote, local, false, { remote: true, local: false });
    expect(local.sent.slice(sent).filter((p) => p.cmd === "pubrel")).toEqual([]);
  });
});

describe("bridge link: what the namespace would refuse by disconnecting is dropped here (review-c)", () => {
  // The namespace answers an invalid topic name or a QoS 0 payload that breaks its format indicator
  // with a DISCONNECT: the link would be rebuilt, and a QoS 1/2 message resent at every attempt.
  const cases: [string, mqtt.IPublishPacket][] = [
    ["a topic name with a wildcard", { cmd: "publish", topic: "c/+", payload: Buffer.from("x"), qos: 1, messageId: 5, retain: false, dup: false }],
    ["a topic of more than 65535 bytes once prefixed", { cmd: "publish", topic: "c/" + "x".repeat(65533), payload: Buffer.from("x"), qos: 1, messageId: 5, retain: false, dup: false }],
    ["a NUL in the topic", { cmd: "publish", topic: "c/a\u0000b", payload: Buffer.from("x"), qos: 2, messageId: 5, retain: false, dup: false }],
    [
      "a payload that is not the UTF-8 its format indicator promises",
      { cmd: "publish", topic: "c/a", payload: Buffer.from([0xff, 0xfe]), qos: 1, messageId: 5, retain: false, dup: false, properties: { payloadFormatIndicator: true } },
    ],
  ];
  for (const [what, packet] of cases) {
    test(`in: ${what} is acknowledged, counted as dropped, not sent into the namespace`, async () => {
      const { link, remote, local } = await linked();
      const before = local.sent.length;
      remote.answer(packet);
      await flush();
      expect(local.sent.slice(before).filter((p) => p.cmd === "publish")).toEqual([]);
      expect(remote.last(packet.qos === 1 ? "puback" : "pubrec")).toMatchObject({ messageId: 5 });
      expect(link.status()).toMatchObject({ dropped: 1, connected: { remote: true, local: true } });
      expect(link.status().lastError).toMatch(/dropped/);
    });
  }

  test("out: a topic of more than 65535 bytes once prefixed is dropped, not a broken link", async () => {
    const { link, remote, local } = await linked();
    const before = remote.sent.length;
    local.answer({ cmd: "publish", topic: "s/" + "x".repeat(65533), payload: Buffer.from("v"), qos: 1, messageId: 11, retain: false, dup: false });
    await flush();
    expect(remote.sent.slice(before).filter((p) => p.cmd === "publish")).toEqual([]);
    expect(local.last("puback")).toMatchObject({ messageId: 11 });
    expect(link.status()).toMatchObject({ dropped: 1, connected: { remote: true, local: true } });
  });
});

describe("bridge link: before the namespace side is up (review-c)", () => {
  test("QoS 0 messages the remote sends early are held only up to a budget; QoS 1 ones all wait for the link", async () => {
    const config = parseBridges(JSON.stringify([{ name: "t", url: "mqtt://r", version: 5, in: [{ filter: "c/#", prefix: "in/", qos: 1 }] }])).bridges[0]!;
    const remote = new Server(5);
    const local = new Server(5);
    const link = new BridgeLink(config, {
      openRemote: async (sink) => remote.channel(sink),
      openLocal: async (sink) => local.channel(sink),
      password: () => undefined,
      now: () => 0,
      setTimer: () => () => undefined,
      log: () => undefined,
      loadFilters: async () => ({ local: [], remote: [] }),
      saveFilters: async () => undefined,
      storage: { get: async () => undefined, put: () => undefined },
    });
    link.start();
    await flush();
    remote.answer({ cmd: "connack", sessionPresent: true, reasonCode: 0 } as mqtt.Packet);
    // a persistent session's backlog, or a flood, before the namespace has answered
    const payload = Buffer.alloc(16 * 1024, 1);
    for (let i = 0; i < 2000; i++) remote.answer({ cmd: "publish", topic: "c/q0", payload, qos: 0, retain: false, dup: false });
    for (let i = 1; i <= 50; i++) remote.answer({ cmd: "publish", topic: "c/q1", payload: Buffer.from(String(i)), qos: 1, messageId: i, retain: false, dup: false });
    await flush();
    local.answer({ cmd: "connack", sessionPresent: true, reasonCode: 0 });
    await flush();
    remote.answer({ cmd: "suback", messageId: remote.last("subscribe").messageId, granted: [1] });
    await flush();
    expect(link.status().connected).toEqual({ remote: true, local: true });
    const forwarded = local.sent.filter((p) => p.cmd === "publish") as mqtt.IPublishPacket[];
    const q0 = forwarded.filter((p) => p.qos === 0).length;
    expect(q0 * payload.byteLength).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(q0).toBeGreaterThan(0);
    expect(link.status().dropped).toBe(2000 - q0);
    expect(forwarded.filter((p) => p.qos === 1)).toHaveLength(50);
  });
});
