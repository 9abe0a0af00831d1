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
async function bringUp(remote: Server, local: Server, unsubscribe: boolean) {
  await flush();
  remote.answer({ cmd: "connack", sessionPresent: false, reasonCode: 0, returnCode: 0 } as mqtt.Packet);
  await flush();
  expect(local.last("connect")).toMatchObject({ clientId: "bridge/t", clean: false });
  local.answer({ cmd: "connack", sessionPresent: false, reasonCode: 0 });
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
  };
  const link = new BridgeLink(config, rt);
  link.start();
  await bringUp(remote, local, true);
  expect(link.status().connected).toEqual({ remote: true, local: true });
  expect(saved).toEqual([{ local: ["s/#"], remote: ["c/#"] }]);
  return { link, remote, local, timers, clock };
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
