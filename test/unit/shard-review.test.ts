// Review of the shard node (src/shards/node.ts) in plain Node: two nodes over MemoryStore, calls
// held until the test lets them through, so the order of acknowledgements is chosen.
import { describe, expect, test, vi } from "vitest";
import { SUBACK_WAIT_MS, ShardNode, type ShardHost } from "../../src/shards/node";
import type { LinkAck, LinkBatch } from "../../src/shards/peer";
import { MemoryStore } from "../../src/storage/memory-store";
import { Links } from "../../src/shards/link";
import { home } from "../../src/shards/layout";
import { NamespaceView } from "../../src/api/namespace";
import * as admin from "../../src/broker/admin";
import { mergeStats } from "../../src/broker/merge";
import type { Env } from "../../src/env";
import { decodeAll, encodeEntry, TunnelOp } from "../../src/shards/wire";
import { BrokerCore, type Runtime } from "../../src/broker/core";
import { DEFAULTS } from "../../src/config";
import { Authenticator } from "../../src/auth/authenticator";
import { loadAuthConfig } from "../../src/auth/config";
import type { Message } from "../../src/session/message";
import { Connection } from "../../src/broker/connection";
import * as mqtt from "mqtt-packet";

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Held {
  target: number;
  batch: LinkBatch;
  answer(): void;
}

class Pair {
  readonly nodes: ShardNode[] = [];
  readonly held: Held[] = [];
  readonly closed: { id: string; code: number }[] = [];
  private laters: (() => void)[] = [];

  constructor(
    readonly k = 2,
    hosts: Partial<ShardHost> | ((self: number) => Partial<ShardHost>) = {},
  ) {
    for (let self = 0; self < k; self++) {
      const host = typeof hosts === "function" ? hosts(self) : hosts;
      const store = new MemoryStore();
      const shardHost: ShardHost = {
        deliverForwarded: () => 1,
        hasSharedMember: () => false,
        retainedForwarded: () => {},
        tunnelAtHome: () => {},
        peerLost: () => {},
        moveArrived: () => {},
        ...host,
      };
      const node: ShardNode = new ShardNode(
        self,
        k,
        store,
        {
          self,
          k,
          now: () => 1000,
          sync: () => Promise.resolve(),
          wakeAt: () => {},
          later: (fn) => this.laters.push(fn),
          log: () => {},
          call: (target, batch) =>
            new Promise<LinkAck>((resolve) => {
              this.held.push({ target, batch, answer: () => resolve(this.nodes[target]!.receive(batch)) });
            }),
          onFailure: (target) => node.linkFailed(target),
        },
        shardHost,
      );
      node.restore(false);
      this.nodes.push(node);
    }
  }

  /** runs the later events (link flushes) until none is left */
  async run(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      await tick();
      const fns = this.laters;
      if (fns.length === 0) return;
      this.laters = [];
      for (const fn of fns) fn();
    }
  }

  /** lets the oldest held call through */
  async answerOne(): Promise<void> {
    this.held.shift()!.answer();
    await this.run();
  }
}

describe("SUBACK wait (interestSettled)", () => {
  test("an older announcement's acknowledgement does not settle a newer one still in flight", async () => {
    const pair = new Pair();
    const node = pair.nodes[0]!;
    node.localInterest("a", true);
    const first = node.interestSettled();
    expect(first).not.toBeNull();
    await pair.run(); // the call carrying "a" leaves and is held
    node.localInterest("b", true); // goes in the next call, after the first is answered
    const second = node.interestSettled();
    expect(second).not.toBeNull();
    await pair.answerOne(); // "a" acknowledged; the call carrying "b" is now held
    await first;
    expect(pair.held.length).toBe(1);
    // a second local subscriber to "b": nothing new to announce, but "b" itself is not acknowledged
    node.localInterest("b", true);
    expect(node.interestSettled()).not.toBeNull();
    await pair.answerOne();
    await second;
    expect(node.interestSettled()).toBeNull();
  });

  test("after a wake with announcements still unacknowledged (a link backing off), a SUBACK for an announced filter still waits", async () => {
    const pair = new Pair();
    const node = pair.nodes[0]!;
    node.localInterest("a", true); // stored as a chunk; the call is held (never answered)
    await pair.run();
    // the object wakes from storage: the chunk is still pending
    const store = MemoryStore.fromSnapshot((node as unknown as { store: MemoryStore }).store.snapshot());
    const woken = new ShardNode(0, 2, store, { self: 0, k: 2, now: () => 1000, sync: () => Promise.resolve(), wakeAt: () => {}, later: () => {}, log: () => {}, call: () => new Promise<LinkAck>(() => {}) }, { deliverForwarded: () => 1, hasSharedMember: () => false, retainedForwarded: () => {}, tunnelAtHome: () => {}, peerLost: () => {}, moveArrived: () => {} });
    woken.interest.localAdded("a"); // core.restore rebuilds the local counts from the stored subscriptions
    woken.restore(false);
    woken.localInterest("a", true); // a second subscriber: nothing new to announce
    expect(woken.interestSettled()).not.toBeNull();
  });
});

describe("tunnels", () => {
  test("frames for a tunnel the entrance no longer has (its shard restarted) end the connection at the home", async () => {
    const atHome: { from: number; op: TunnelOp; id: string }[] = [];
    const pair = new Pair(2, { tunnelAtHome: (from, e) => void atHome.push({ from, op: e.op, id: e.id }) });
    // shard 0 is the home of a tunnel whose entrance, shard 1, lost it (a crash: sockets and memory gone)
    pair.nodes[0]!.tunnelOut(1, "1.lost", 7, new Uint8Array([0x30, 0]));
    await pair.run();
    await pair.answerOne();
    while (pair.held.length > 0) await pair.answerOne();
    expect(atHome).toEqual([{ from: 1, op: TunnelOp.Close, id: "1.lost" }]);
  });
});

/** Shard `self` of `k` as the object runs it, over MemoryStore; its link calls are kept (never answered). */
function shardedCore(self: number, k: number, now = { ms: 1_000_000 }, store = new MemoryStore()) {
  const runtime: Runtime = { now: () => now.ms, wakeAt: () => {}, rearm: () => {}, later: () => {}, log: () => {} };
  const config = { ...DEFAULTS, SYS_INTERVAL: 0, MAX_PUBLISH_RATE: 0, SHARDS: k };
  const core = new BrokerCore(store, config, runtime, new Authenticator(loadAuthConfig({}), "default", runtime.log, () => now.ms));
  const calls: { target: number; batch: LinkBatch }[] = [];
  const host = { self, k, now: () => now.ms, sync: () => Promise.resolve(), wakeAt: () => {}, later: () => {}, log: () => {}, call: (target: number, batch: LinkBatch) => (calls.push({ target, batch }), new Promise<LinkAck>(() => {})) };
  const node = new ShardNode(self, k, store, host, core);
  core.joinShards(node);
  core.restore([]);
  return { core, store, node, calls, now };
}

const retainedMsg = (topic: string, payload: string): Message => ({ topic, payload: new TextEncoder().encode(payload), qos: 1, retain: true });
const retainedPayload = (store: MemoryStore, topic: string) => {
  const row = store.retainedWithPrefix(topic).find((m) => m.topic === topic);
  return row ? new TextDecoder().decode(row.payload) : null;
};

describe("retained messages across shards (every shard keeps every one, newest version wins)", () => {
  test("a write accepted here after a newer-versioned copy arrived (a peer's clock ahead) still wins on every shard", () => {
    const b = shardedCore(1, 2);
    const ahead = (b.now.ms + 5_000) * 256 + 0; // shard 0's clock is 5 s ahead
    b.core.retainedForwarded(retainedMsg("t", "old"), ahead);
    b.core.publish(retainedMsg("t", "new"));
    expect(retainedPayload(b.store, "t")).toBe("new");
    // the copy shard 0 gets must beat what shard 0 holds, or the shards disagree for good
    expect(b.store.retainedVersion("t")!).toBeGreaterThan(ahead);
  });

  test("a removal is remembered: an older copy arriving after it does not bring the message back", () => {
    const b = shardedCore(1, 2);
    const older = (b.now.ms - 10) * 256 + 0; // shard 0 retained "v1" just before: its copy is on the way
    b.core.publish(retainedMsg("t", "")); // a client of shard 1 clears the topic
    b.core.retainedForwarded(retainedMsg("t", "v1"), older);
    expect(retainedPayload(b.store, "t")).toBeNull(); // shard 0 applies the removal (newer): it has none either
    // the same when the removal came from a third shard
    b.core.retainedForwarded(retainedMsg("u", ""), (b.now.ms - 5) * 256 + 2);
    b.core.retainedForwarded(retainedMsg("u", "v1"), (b.now.ms - 10) * 256 + 0);
    expect(retainedPayload(b.store, "u")).toBeNull();
    // a newer write after the removal is kept
    b.core.retainedForwarded(retainedMsg("u", "v2"), (b.now.ms + 1) * 256 + 0);
    expect(retainedPayload(b.store, "u")).toBe("v2");
  });

  test("a removal through the API is remembered too: an older copy on its way does not bring the message back", () => {
    const b = shardedCore(1, 2);
    b.core.retainedForwarded(retainedMsg("t", "v1"), (b.now.ms - 20) * 256 + 0);
    expect(admin.deleteRetained(b.core, "t")).toBe(true);
    b.core.retainedForwarded(retainedMsg("t", "v2"), (b.now.ms - 10) * 256 + 0); // published before the removal
    expect(retainedPayload(b.store, "t")).toBeNull();
    // a shard whose copy had not arrived yet when the removal came
    expect(admin.deleteRetained(b.core, "u")).toBe(false);
    b.core.retainedForwarded(retainedMsg("u", "v1"), (b.now.ms - 10) * 256 + 0);
    expect(retainedPayload(b.store, "u")).toBeNull();
  });

  test("copies from other shards count against the retained quota (each shard keeps them all)", () => {
    const b = shardedCore(1, 2);
    b.core.config.MAX_RETAINED_MESSAGES = 2;
    expect(b.core.admitRetained("a", 1)).toBe(true);
    b.core.publish(retainedMsg("a", "1"));
    b.core.retainedForwarded(retainedMsg("b", "1"), b.now.ms * 256);
    expect(b.core.admitRetained("c", 1)).toBe(false); // a and b are stored: a third is over the quota
  });
});

describe("K = 1 exactly as before", () => {
  test("a SUBSCRIBE whose own subscribed event it matches gets its SUBACK first, then the event", () => {
    const store = new MemoryStore();
    const runtime: Runtime = { now: () => 1_000_000, wakeAt: () => {}, rearm: () => {}, later: (fn) => fn(), log: () => {} };
    const core = new BrokerCore(store, { ...DEFAULTS, EVENTS: "all" }, runtime, Authenticator.open());
    const received: mqtt.Packet[] = [];
    const parser = mqtt.parser({ protocolVersion: 5 });
    parser.on("packet", (p) => received.push(p));
    const conn = new Connection({ send: (b) => void parser.parse(Buffer.from(b)), close: () => {}, saveAttachment: () => {} }, core.config, { seen: 0, at: 0 }, core.counters);
    core.open(conn);
    const send = (p: mqtt.Packet) => core.receive(conn, new Uint8Array(mqtt.generate(p, { protocolVersion: 5 })).buffer);
    send({ cmd: "connect", clientId: "mon", protocolVersion: 5, protocolId: "MQTT", clean: true, keepalive: 0 } as mqtt.IConnectPacket);
    send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$events/subscriptions/#", qos: 1 }] } as mqtt.ISubscribePacket);
    expect(received.map((p) => p.cmd)).toEqual(["connack", "suback", "publish"]);
  });
});

describe("shared groups across shards", () => {
  test("a group's copy reaching a shard whose last member just left goes on to a shard that still has one", async () => {
    const delivered: { shard: number; topic: string; share: string | null }[] = [];
    const members = [false, true, true];
    const pair = new Pair(3, (self) => ({
      hasSharedMember: () => members[self]!,
      deliverForwarded: (msg, share) => delivered.push({ shard: self, topic: msg.topic, share }),
    }));
    const settle = async () => {
      await pair.run();
      while (pair.held.length > 0) await pair.answerOne();
    };
    pair.nodes[1]!.localInterest("$share/g/t", true);
    pair.nodes[2]!.localInterest("$share/g/t", true);
    await settle();
    // shard 1's member leaves; its removal is not out yet when shard 0 hands it the group's copy
    members[1] = false;
    const msg: Message = { topic: "t", payload: new Uint8Array([1]), qos: 1, retain: false };
    pair.nodes[0]!.forward(msg, 0);
    await settle();
    expect(delivered).toEqual([{ shard: 2, topic: "t", share: "$share/g/t" }]);
  });
});

describe("$events across shards", () => {
  test("a client's connected event reaches a subscriber on another shard", () => {
    const a = shardedCore(0, 2);
    // shard 1 has a subscriber to the connected events
    a.node.receive({ from: 1, chunks: [{ seq: 1, entries: encodeEntry({ kind: "interest", add: true, filter: "$events/clients/+/connected" }) }], volatile: [] });
    const conn = new Connection({ send: () => {}, close: () => {}, saveAttachment: () => {} }, a.core.config, { seen: 0, at: 0 }, a.core.counters);
    a.core.open(conn);
    a.core.receive(conn, new Uint8Array(mqtt.generate({ cmd: "connect", clientId: "dev", protocolVersion: 4, protocolId: "MQTT", clean: true, keepalive: 0 } as mqtt.IConnectPacket)).buffer);
    const sent = a.store.loadChunks().flatMap((c) => decodeAll(c.entries));
    expect(sent).toEqual([expect.objectContaining({ kind: "publish", topic: "$events/clients/dev/connected", qos: 1 })]);
  });
});

describe("the operations view", () => {
  test("a tunnelled frame is one WebSocket message (counted by the entrance), not one more at the home", () => {
    const home = shardedCore(1, 2);
    const connect = new Uint8Array(mqtt.generate({ cmd: "connect", clientId: "dev", protocolVersion: 4, protocolId: "MQTT", clean: true, keepalive: 0 } as mqtt.IConnectPacket));
    home.node.receive({ from: 0, chunks: [], volatile: [{ after: 0, entries: encodeEntry({ kind: "tunnel", op: TunnelOp.Open, id: "0.t", n: 1, bytes: connect, code: 0, text: "{}" }) }] });
    expect(home.core.sessions.get("dev")?.conn).toBeTruthy();
    expect(home.core.counters.websocketMessages).toBe(0);
  });
});

describe("one session per client id: ids the broker assigns or a token pins", () => {
  const connectTo = (core: BrokerCore, p: Partial<mqtt.IConnectPacket>) => {
    const received: mqtt.Packet[] = [];
    const parser = mqtt.parser({ protocolVersion: 5 });
    parser.on("packet", (pk) => received.push(pk));
    const conn = new Connection({ send: (b) => void parser.parse(Buffer.from(b)), close: () => {}, saveAttachment: () => {} }, core.config, { seen: 0, at: 0 }, core.counters);
    core.open(conn);
    core.receive(conn, new Uint8Array(mqtt.generate({ cmd: "connect", clientId: "", protocolVersion: 5, protocolId: "MQTT", clean: true, keepalive: 0, properties: { sessionExpiryInterval: 3600 }, ...p } as mqtt.IConnectPacket, { protocolVersion: 5 })).buffer);
    return received[0] as mqtt.IConnackPacket;
  };

  test("an assigned id has its home on the shard that made the session (its reconnection, placed by the id, finds it)", () => {
    for (let self = 0; self < 4; self++) {
      const s = shardedCore(self, 4);
      for (let i = 0; i < 8; i++) {
        const ack = connectTo(s.core, {});
        expect(ack.reasonCode).toBe(0);
        expect(home(ack.properties!.assignedClientIdentifier!, 4)).toBe(self);
      }
    }
  });

  test("a token-pinned id whose home is another shard is not given a second session here", () => {
    const s = shardedCore(0, 4);
    let pinned = "";
    for (let i = 0; home(pinned, 4) === 0 || pinned === ""; i++) pinned = `dev${i}`;
    s.core.auth.authenticate = () => ({ clientId: pinned, identity: "token:x", publish: ["#"], subscribe: ["#"] });
    const ack = connectTo(s.core, {});
    expect(ack.reasonCode).not.toBe(0);
    expect(s.core.sessions.get(pinned)).toBeUndefined();
  });
});


describe("the HTTP API and RPC over several shards", () => {
  test("publishes to one topic are accepted by one shard, so they reach subscribers in the order they were made", async () => {
    const used: string[] = [];
    const env = {
      SHARDS: "4",
      BROKER: {
        idFromName: (name: string) => name,
        get: (name: string) => ({ publish: async () => (used.push(name), { matched: 0 }) }),
      },
    } as unknown as Env;
    const view = new NamespaceView(env, "ns");
    for (let i = 0; i < 20; i++) await view.publish({ topic: "orders/1", payload: new Uint8Array([i]), qos: 1, retain: false } as never);
    expect(new Set(used).size).toBe(1);
  });
});

describe("SUBACK wait, bounded", () => {
  test("a peer that does not answer holds a SUBACK at most SUBACK_WAIT_MS (an object backing off may hibernate, and a wait in memory would be lost)", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      const pair = new Pair();
      const node = pair.nodes[0]!;
      node.localInterest("a", true);
      let done = false;
      void node.interestSettled()!.then(() => (done = true));
      await pair.run(); // the call leaves and is never answered
      await vi.advanceTimersByTimeAsync(SUBACK_WAIT_MS - 1);
      expect(done).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      expect(done).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("volatile entries (QoS 0 copies, tunnel frames)", () => {
  test("an entry larger than the volatile cap still goes when nothing else waits (a frame of a MAX_PACKET_SIZE packet through a tunnel)", async () => {
    const got: Uint8Array[] = [];
    const laters: (() => void)[] = [];
    let receiver!: Links;
    const host = (self: number) => ({
      self,
      k: 2,
      now: () => 1000,
      sync: () => Promise.resolve(),
      wakeAt: () => {},
      later: (fn: () => void) => void laters.push(fn),
      log: () => {},
      call: async (_target: number, batch: LinkBatch): Promise<LinkAck> => receiver.receive(batch, (_from, bytes) => void got.push(bytes)),
    });
    const sender = new Links(host(0), new MemoryStore(), { maxVolatileBytes: 100 });
    receiver = new Links(host(1), new MemoryStore());
    const big = encodeEntry({ kind: "tunnel", op: TunnelOp.Out, id: "t", n: 1, bytes: new Uint8Array(150), code: 0, text: "" });
    sender.send(1, big, false);
    while (laters.length > 0) {
      laters.shift()!();
      await tick();
    }
    expect(got.map((b) => b.byteLength)).toEqual([big.byteLength]);
    expect(sender.stats.volatileLost).toBe(0);
  });
});

describe("merged stats", () => {
  test("each rule's counters add up over the shards, as the rules' total does", () => {
    const runtime: Runtime = { now: () => 1_000_000, wakeAt: () => {}, rearm: () => {}, later: () => {}, log: () => {} };
    const one = () => admin.namespaceStats(new BrokerCore(new MemoryStore(), { ...DEFAULTS, SYS_INTERVAL: 0 }, runtime, Authenticator.open()));
    const counters = (delivered: number) => ({ matched: delivered, delivered, failedSends: 0, dropped: 0, expired: 0, lost: 0, overflow: 0, rejected: 0 });
    const a = one();
    const b = one();
    a.rules = { pending: 0, sending: 0, total: counters(2), rules: [{ name: "r", filter: "#", to: "https://x", ...counters(2) }] };
    b.rules = { pending: 0, sending: 0, total: counters(3), rules: [{ name: "r", filter: "#", to: "https://x", ...counters(3) }] };
    const merged = mergeStats([a, b]);
    expect(merged.rules!.total.delivered).toBe(5);
    expect(merged.rules!.rules[0]).toMatchObject({ name: "r", delivered: 5, matched: 5 });
  });
});
