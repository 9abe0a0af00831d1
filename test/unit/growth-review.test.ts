// Review of raising SHARDS (src/shards/grow.ts, src/broker/growth.ts): whole shards (BrokerCore +
// ShardNode over MemoryStore) in plain Node, their link calls delivered in later events, and the
// growth driven as shard 0 drives it.
import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { concatEntries, decodeAll, encodeEntry, MoveOp, WireError, type Entry } from "../../src/shards/wire";
import * as mqtt from "mqtt-packet";
import { BrokerCore, type Runtime } from "../../src/broker/core";
import { inspect } from "../../src/broker/inspect";
import { Connection } from "../../src/broker/connection";
import { DEFAULTS, type BrokerConfig } from "../../src/config";
import { Authenticator } from "../../src/auth/authenticator";
import { ShardNode } from "../../src/shards/node";
import type { LinkAck, LinkBatch } from "../../src/shards/peer";
import { MemoryStore } from "../../src/storage/memory-store";
import { home } from "../../src/shards/layout";
import { Session } from "../../src/session/session";
import { sessionEntries } from "../../src/session/transfer";
import { advanceGrowth, planStore, type GrowthCalls, type GrowthPlan } from "../../src/shards/grow";
import { beginGrowth, endGrowth, EXPORT_PAGE_ENTRIES, exportPage, growthStatus } from "../../src/broker/growth";

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The shards of one namespace at `k`, over the stores given (fresh ones for the rest). */
class Cluster {
  readonly cores: BrokerCore[] = [];
  readonly stores: MemoryStore[] = [];
  private laters: (() => void)[] = [];
  readonly now = { ms: 1_000_000 };

  constructor(
    readonly k: number,
    stores: MemoryStore[] = [],
    config: Partial<BrokerConfig> = {},
  ) {
    for (let self = 0; self < k; self++) {
      const store = stores[self] ?? new MemoryStore();
      const runtime: Runtime = { now: () => this.now.ms, wakeAt: () => {}, rearm: () => {}, later: (fn) => void this.laters.push(fn), log: () => {} };
      const core = new BrokerCore(store, { ...DEFAULTS, SYS_INTERVAL: 0, MAX_PUBLISH_RATE: 0, ...config, SHARDS: k }, runtime, Authenticator.open());
      if (k > 1) {
        const host = {
          self,
          k,
          now: () => this.now.ms,
          sync: () => Promise.resolve(),
          wakeAt: () => {},
          later: (fn: () => void) => void this.laters.push(fn),
          log: () => {},
          call: (target: number, batch: LinkBatch) => Promise.resolve().then((): LinkAck => this.cores[target]!.shards!.receive(batch)),
        };
        core.joinShards(new ShardNode(self, k, store, host, core));
      }
      this.cores.push(core);
      this.stores.push(store);
    }
    for (const core of this.cores) core.restore([]);
    // the shards other than 0 ask shard 0 before their first socket
    for (const core of this.cores.slice(1)) if (core.shards!.layoutUnconfirmed) core.shards!.confirmLayout(this.cores[0]!.shards!.layout());
  }

  /** every later event and link call, until none is left */
  async settle(): Promise<void> {
    for (let i = 0; i < 200; i++) {
      await tick();
      const fns = this.laters;
      if (fns.length === 0 && this.cores.every((c) => !c.shards || c.shards.links.pendingAll() === 0)) return;
      this.laters = [];
      for (const fn of fns) fn();
      for (const c of this.cores) c.shards?.links.due(this.now.ms);
    }
    throw new Error("links did not settle");
  }

  /** one round of the later events (link flushes) and what they started: then the test may crash the shards */
  async step(): Promise<void> {
    const fns = this.laters;
    this.laters = [];
    for (const fn of fns) fn();
    await tick();
  }

  /** the stores as a restart would find them (the sockets gone) */
  snapshot(): MemoryStore[] {
    return this.stores.map((s) => MemoryStore.fromSnapshot(s.snapshot()));
  }

  /** shard 0's growth, driven to its end as the object does (alarm after alarm) */
  async grow(from: number): Promise<void> {
    const store = this.stores[0]!;
    const plans = planStore(store);
    const calls: GrowthCalls = {
      begin: async (i, f, t) => beginGrowth(this.cores[i]!, f, t),
      status: async (i) => growthStatus(this.cores[i]!),
      exportPage: async (i, f, t) => exportPage(this.cores[i]!, f, t),
      end: async (i, t) => endGrowth(this.cores[i]!, t),
    };
    for (let n = 0; n < 50; n++) {
      if (await advanceGrowth(plans, from, this.k, calls)) {
        await this.settle();
        this.expectConsistent();
        return;
      }
      await this.settle();
    }
    throw new Error("the growth did not end");
  }

  /** every shard's memory and storage agree (broker/inspect.ts) */
  expectConsistent(): void {
    for (const core of this.cores) expect(inspect(core).problems).toEqual([]);
  }

  /** the shards holding a session for `clientId` */
  holders(clientId: string): number[] {
    return this.cores.flatMap((c, i) => (c.sessions.has(clientId) ? [i] : []));
  }
}

interface Client {
  conn: Connection;
  received: mqtt.Packet[];
  send(p: Partial<mqtt.Packet> & { cmd: string }): void;
}

function connect(core: BrokerCore, clientId: string, extra: Partial<mqtt.IConnectPacket> = {}): Client {
  const received: mqtt.Packet[] = [];
  const parser = mqtt.parser({ protocolVersion: 5 });
  parser.on("packet", (pk) => received.push(pk));
  const conn = new Connection({ send: (b) => void parser.parse(Buffer.from(b)), close: () => {}, saveAttachment: () => {} }, core.config, { seen: 0, at: 0 }, core.counters);
  core.open(conn);
  const send = (p: Partial<mqtt.Packet> & { cmd: string }) => core.receive(conn, new Uint8Array(mqtt.generate(p as mqtt.Packet, { protocolVersion: 5 })).buffer);
  send({ cmd: "connect", clientId, protocolVersion: 5, protocolId: "MQTT", clean: false, keepalive: 0, properties: { sessionExpiryInterval: 3600 }, ...extra } as mqtt.IConnectPacket);
  expect((received[0] as mqtt.IConnackPacket).reasonCode).toBe(0);
  return { conn, received, send };
}

/** an id whose home is `before` at `k1` shards and `after` at `k2` */
function idMoving(prefix: string, k1: number, before: number, k2: number, after: number): string {
  for (let i = 0; ; i++) {
    const id = `${prefix}${i}`;
    if (home(id, k1) === before && home(id, k2) === after) return id;
  }
}

const text = (p: mqtt.Packet) => Buffer.from((p as mqtt.IPublishPacket).payload).toString();
const publishes = (c: Client) => c.received.filter((p) => p.cmd === "publish").map(text);

describe("growth, whole shards", () => {
  test("K 2 → 4: a moved session keeps its subscription and queue, and is in one place only", async () => {
    const before = new Cluster(2);
    const id = idMoving("dev", 2, 1, 4, 3);
    const sub = connect(before.cores[1]!, id);
    sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t", qos: 1 }] } as mqtt.ISubscribePacket);
    await before.settle();
    before.cores[1]!.socketClosed(sub.conn);
    const pub = connect(before.cores[0]!, "pub", { clean: true, properties: {} });
    pub.send({ cmd: "publish", topic: "t", payload: Buffer.from("queued"), qos: 1, messageId: 1 } as mqtt.IPublishPacket);
    await before.settle();

    const after = new Cluster(4, before.snapshot());
    expect(after.cores[0]!.shards!.growingFrom).toBe(2);
    await after.grow(2);
    expect(after.holders(id)).toEqual([3]);
    // a publish after the growth, from shard 0, reaches the moved subscriber's new home
    const pub2 = connect(after.cores[0]!, "pub", { clean: true, properties: {} });
    pub2.send({ cmd: "publish", topic: "t", payload: Buffer.from("after"), qos: 1, messageId: 1 } as mqtt.IPublishPacket);
    await after.settle();
    const back = connect(after.cores[3]!, id);
    expect(publishes(back)).toEqual(["queued", "after"]);
  });
});

describe("growth: attacks", () => {
  test("K 1 → 2: a namespace of one object with data (no layout stored) moves its sessions and copies its retained messages", async () => {
    const before = new Cluster(1);
    const id = idMoving("dev", 1, 0, 2, 1);
    const sub = connect(before.cores[0]!, id);
    sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t", qos: 1 }] } as mqtt.ISubscribePacket);
    before.cores[0]!.socketClosed(sub.conn);
    const pub = connect(before.cores[0]!, "pub", { clean: true, properties: {} });
    pub.send({ cmd: "publish", topic: "t", payload: Buffer.from("queued"), qos: 1, messageId: 1 } as mqtt.IPublishPacket);
    pub.send({ cmd: "publish", topic: "r", payload: Buffer.from("kept"), qos: 1, retain: true, messageId: 2 } as mqtt.IPublishPacket);
    const after = new Cluster(2, before.snapshot());
    expect(after.cores[0]!.shards!.growingFrom).toBe(1);
    await after.grow(1);
    expect(after.holders(id)).toEqual([1]);
    const back = connect(after.cores[1]!, id);
    back.send({ cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "r", qos: 1 }] } as mqtt.ISubscribePacket);
    await after.settle();
    expect(publishes(back)).toEqual(["queued", "kept"]);
  });

  test("PRESENCE_RETAINED: a moved session's presence entry moves with it (none left behind at the old home)", async () => {
    const config = { PRESENCE_RETAINED: true };
    const before = new Cluster(2, [], config);
    const id = idMoving("dev", 2, 1, 4, 3);
    const c = connect(before.cores[1]!, id);
    before.cores[1]!.socketClosed(c.conn);
    await before.settle();
    const topic = `$events/presence/${id}`;
    expect(before.stores[1]!.retainedSize(topic)).not.toBeNull();
    const after = new Cluster(4, before.snapshot(), config);
    await after.grow(2);
    expect(after.holders(id)).toEqual([3]);
    // the old home no longer says anything of a session it does not hold (nothing there would ever clear it)
    expect(after.stores[1]!.retainedSize(topic)).toBeNull();
    // the new home holds the entry, as it would for a session made there
    const row = after.stores[3]!.retainedWithPrefix(topic).find((m) => m.topic === topic);
    expect(row && Buffer.from(row.payload).toString()).toBe("offline");
    // and the session's end (expiry) at its new home clears it
    after.now.ms += 3_700_000;
    after.cores[3]!.alarm();
    expect(after.holders(id)).toEqual([]);
    for (const s of after.stores) expect(s.retainedSize(topic)).toBeNull();
  });

  test("a delayed will falling due during the pause goes out once, after the end, from the new home", async () => {
    const before = new Cluster(2);
    const id = idMoving("dev", 2, 0, 4, 2);
    const watcher = idMoving("w", 2, 1, 4, 1);
    const w = connect(before.cores[1]!, watcher);
    w.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "will", qos: 1 }] } as mqtt.ISubscribePacket);
    await before.settle();
    before.cores[1]!.socketClosed(w.conn);
    connect(before.cores[0]!, id, { will: { topic: "will", payload: Buffer.from("gone"), qos: 1, retain: false, properties: { willDelayInterval: 5 } } } as never);
    const after = new Cluster(4, before.snapshot());
    // (the restart lost the socket: the will is delayed 5 s)
    await after.grow(2);
    after.now.ms += 10_000;
    for (const c of after.cores) c.alarm();
    await after.settle();
    const back = connect(after.cores[1]!, watcher);
    expect(publishes(back)).toEqual(["gone"]);
  });

  test("a new shard that starts before the growth begins serves nothing until it ends (it asks shard 0, which is growing)", async () => {
    const before = new Cluster(2);
    const id = idMoving("dev", 2, 0, 4, 2);
    const c = connect(before.cores[0]!, id);
    c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t", qos: 1 }] } as mqtt.ISubscribePacket);
    before.cores[0]!.socketClosed(c.conn);
    await before.settle();
    const after = new Cluster(4, before.snapshot());
    // not paused (no plan yet), but unconfirmed: namespace-do refuses its sockets and publishes (growingNotice)
    expect(after.cores[2]!.shards!.paused).toBe(false);
    expect(after.cores[2]!.shards!.layoutUnconfirmed).toBe(true);
    expect(after.cores[1]!.shards!.layoutUnconfirmed).toBe(true);
    await after.grow(2);
    expect(after.holders(id)).toEqual([2]);
    for (const core of after.cores) expect([core.shards!.paused, core.shards!.layoutUnconfirmed]).toEqual([false, false]);
  });
});

describe("SHARDS raised again before a growth ended", () => {
  test("2 → 4 stopped before its end, then 4 → 8 deployed: the growth goes on to 8, every session at its home under 8, its queue kept", async () => {
    const before = new Cluster(2);
    // moved to 2 by the first growth, then on to 6 by the second; moved to 3, stays; stays at 0, then to 4
    const ids = [idMoving("a", 2, 0, 4, 2), idMoving("b", 2, 1, 4, 3), idMoving("c", 2, 0, 4, 0)];
    const pick = (prefix: string, want: (id: string) => boolean) => {
      for (let i = 0; ; i++) if (want(`${prefix}${i}`)) return `${prefix}${i}`;
    };
    ids[0] = pick("a", (id) => home(id, 2) === 0 && home(id, 4) === 2 && home(id, 8) === 6);
    ids[1] = pick("b", (id) => home(id, 2) === 1 && home(id, 4) === 3 && home(id, 8) === 3);
    ids[2] = pick("c", (id) => home(id, 2) === 0 && home(id, 4) === 0 && home(id, 8) === 4);
    for (const id of ids) {
      const c = connect(before.cores[home(id, 2)]!, id);
      c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t", qos: 1 }] } as mqtt.ISubscribePacket);
      before.cores[home(id, 2)]!.socketClosed(c.conn);
    }
    await before.settle();
    const pub = connect(before.cores[0]!, "pub", { clean: true, properties: {} });
    pub.send({ cmd: "publish", topic: "t", payload: Buffer.from("queued"), qos: 1, messageId: 1 } as mqtt.IPublishPacket);
    await before.settle();

    // the growth to 4 runs up to its end, which never comes (SHARDS is raised again first)
    const mid = new Cluster(4, before.snapshot());
    const store = mid.stores[0]!;
    const plans = planStore(store);
    const calls: GrowthCalls = {
      begin: async (i, f, t) => beginGrowth(mid.cores[i]!, f, t),
      status: async (i) => growthStatus(mid.cores[i]!),
      exportPage: async (i, f, t) => exportPage(mid.cores[i]!, f, t),
      end: async () => {
        throw new Error("deployed again");
      },
    };
    for (let n = 0; n < 50 && plans.load()?.phase !== "end"; n++) {
      await advanceGrowth(plans, 2, 4, calls).catch(() => false);
      await mid.settle();
    }
    expect(plans.load()?.phase).toBe("end");
    expect(mid.holders(ids[0]!)).toEqual([2]);

    const after = new Cluster(8, mid.snapshot());
    await after.grow(2);
    for (const id of ids) expect(after.holders(id)).toEqual([home(id, 8)]);
    for (const id of ids) expect(publishes(connect(after.cores[home(id, 8)]!, id))).toEqual(["queued"]);
    for (const core of after.cores) expect(core.shards!.paused).toBe(false);
  });
});

describe("MoveEntry on the wire", () => {
  const str = fc.string({ unit: "binary", maxLength: 300 });
  const msg = fc.option(
    fc.record({
      kind: fc.constant("publish" as const),
      topic: str,
      payload: fc.uint8Array({ maxLength: 64 }),
      qos: fc.constantFrom(0 as const, 1 as const, 2 as const),
      retain: fc.boolean(),
      origin: fc.constant(null),
      share: fc.constant(null),
      version: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    }),
    { nil: null },
  );
  const move = fc.record({ kind: fc.constant("move" as const), op: fc.constantFrom(MoveOp.Session, MoveOp.Delivery, MoveOp.Retained), clientId: str, meta: str, msg });
  const plain = (v: unknown): unknown =>
    v instanceof Uint8Array ? [...v] : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, plain(x)])) : v;

  test("any move entry comes back equal, between other entries", () => {
    fc.assert(
      fc.property(fc.array(move, { maxLength: 5 }), (list) => {
        const entries: Entry[] = list.flatMap((m) => [m, { kind: "interest" as const, add: true, filter: "a/#" }]);
        expect(decodeAll(concatEntries(entries.map(encodeEntry))).map(plain)).toEqual(entries.map(plain));
      }),
      { numRuns: 300 },
    );
  });

  test("a move entry truncated or with a byte changed raises WireError or decodes, nothing else", () => {
    fc.assert(
      fc.property(move, fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }), (m, cut, at, b) => {
        const packed = encodeEntry(m);
        const only = (bytes: Uint8Array) => {
          try {
            decodeAll(bytes);
          } catch (err) {
            expect(err).toBeInstanceOf(WireError);
          }
        };
        only(packed.subarray(0, cut % packed.byteLength));
        const flipped = packed.slice();
        flipped[at % flipped.byteLength] = b;
        only(flipped);
      }),
      { numRuns: 2000 },
    );
  });

  test("a session entry far larger than the scratch buffer (a long will, many subscriptions) is packed whole", () => {
    const meta = "x".repeat(300_000);
    const e: Entry = { kind: "move", op: MoveOp.Session, clientId: "c", meta, msg: { kind: "publish", topic: "w".repeat(70_000), payload: new Uint8Array(10), qos: 1, retain: false, origin: null, share: null, version: 0, properties: { userProperties: { k: "v".repeat(100_000) } } } };
    const [back] = decodeAll(encodeEntry(e));
    expect(plain(back!)).toEqual(plain(e));
  });
});

describe("adopt", () => {
  test("a non-durable session's inbound QoS 2 ids stay in memory at its new home, as inbound.ts keeps them: a PUBREL there leaves no stored id for a wake to revive", async () => {
    const c = new Cluster(2);
    const s = new Session("nd", false);
    s.expiryInterval = 3600;
    s.inboundQos2.add(7);
    for (const e of sessionEntries(s, [])) c.cores[1]!.moveArrived(e);
    expect(c.cores[1]!.sessions.get("nd")!.inboundQos2.has(7)).toBe(true);
    const back = connect(c.cores[1]!, "nd");
    back.send({ cmd: "pubrel", messageId: 7 } as mqtt.IPubrelPacket);
    expect(back.received.map((p) => p.cmd)).toContain("pubcomp");
    // the object wakes from storage: the id was released, so a new QoS 2 PUBLISH reusing it is delivered
    expect(c.stores[1]!.loadInboundQos2().filter((r) => r.clientId === "nd")).toEqual([]);
  });
});

describe("in flight across the growth", () => {
  test("a QoS 1 delivery unacknowledged and a QoS 2 one released (PUBREC in) come back at the new home with their packet ids; inbound QoS 2 ids too", async () => {
    const before = new Cluster(2);
    const id = idMoving("dev", 2, 1, 4, 3);
    const sub = connect(before.cores[1]!, id);
    sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t", qos: 2, }], properties: { subscriptionIdentifier: 9 } } as mqtt.ISubscribePacket);
    await before.settle();
    sub.send({ cmd: "publish", topic: "in", payload: Buffer.from("x"), qos: 2, messageId: 77 } as mqtt.IPublishPacket); // no PUBREL yet
    const pub = connect(before.cores[0]!, "pub", { clean: true, properties: {} });
    pub.send({ cmd: "publish", topic: "t", payload: Buffer.from("one"), qos: 1, messageId: 1 } as mqtt.IPublishPacket);
    pub.send({ cmd: "publish", topic: "t", payload: Buffer.from("two"), qos: 2, messageId: 2 } as mqtt.IPublishPacket);
    pub.send({ cmd: "pubrel", messageId: 2 } as mqtt.IPubrelPacket);
    await before.settle();
    const got = sub.received.filter((p) => p.cmd === "publish") as mqtt.IPublishPacket[];
    expect(got.map(text)).toEqual(["one", "two"]);
    sub.send({ cmd: "pubrec", messageId: got[1]!.messageId } as mqtt.IPubrecPacket);
    await before.settle();

    const after = new Cluster(4, before.snapshot());
    await after.grow(2);
    const back = connect(after.cores[3]!, id);
    const resent = back.received.filter((p) => p.cmd === "publish" || p.cmd === "pubrel");
    expect(resent.map((p) => p.cmd)).toEqual(["publish", "pubrel"]);
    const p1 = resent[0] as mqtt.IPublishPacket;
    expect([text(p1), p1.dup, p1.messageId, p1.properties?.subscriptionIdentifier]).toEqual(["one", true, got[0]!.messageId, 9]);
    expect(resent[1]!.messageId).toBe(got[1]!.messageId);
    // the inbound QoS 2 id is still known: the retransmitted PUBLISH is not delivered again
    const watcher = connect(after.cores[0]!, "w", { clean: true, properties: {} });
    watcher.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "in", qos: 1 }] } as mqtt.ISubscribePacket);
    await after.settle();
    back.send({ cmd: "publish", topic: "in", payload: Buffer.from("x"), qos: 2, messageId: 77, dup: true } as mqtt.IPublishPacket);
    back.send({ cmd: "pubrel", messageId: 77 } as mqtt.IPubrelPacket);
    await after.settle();
    expect(publishes(watcher)).toEqual([]);
  });
});

describe("shared groups across the growth", () => {
  test("a group message in flight to a member whose home moves is delivered once, to one member, and the group works after", async () => {
    const before = new Cluster(2);
    const a = idMoving("a", 2, 1, 4, 3);
    const b = idMoving("b", 2, 0, 4, 0);
    const ca = connect(before.cores[1]!, a);
    ca.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/g/t", qos: 1 }] } as mqtt.ISubscribePacket);
    await before.settle();
    const pub = connect(before.cores[1]!, "pub", { clean: true, properties: {} });
    pub.send({ cmd: "publish", topic: "t", payload: Buffer.from("m1"), qos: 1, messageId: 1 } as mqtt.IPublishPacket);
    await before.settle();
    expect(publishes(ca)).toEqual(["m1"]); // in flight, never acknowledged
    const cb = connect(before.cores[0]!, b);
    cb.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/g/t", qos: 1 }] } as mqtt.ISubscribePacket);
    await before.settle();
    before.cores[0]!.socketClosed(cb.conn);
    await before.settle();

    const after = new Cluster(4, before.snapshot());
    await after.grow(2);
    expect(after.holders(a)).toEqual([3]);
    const ra = connect(after.cores[3]!, a);
    const rb = connect(after.cores[0]!, b);
    await after.settle();
    expect([...publishes(ra), ...publishes(rb)]).toEqual(["m1"]);
    // the group after: each new message goes to one member
    const p2 = connect(after.cores[2]!, "pub2", { clean: true, properties: {} });
    for (let i = 0; i < 4; i++) p2.send({ cmd: "publish", topic: "t", payload: Buffer.from(`n${i}`), qos: 1, messageId: i + 1 } as mqtt.IPublishPacket);
    await after.settle();
    const all = [...publishes(ra), ...publishes(rb)].filter((m) => m.startsWith("n")).sort();
    expect(all).toEqual(["n0", "n1", "n2", "n3"]);
  });
});

describe("SHARDS set back before anything moved", () => {
  test("2 → 4 rolled back to 2 during its drain: the namespace serves again with 2 shards (it stayed paused for good)", async () => {
    const before = new Cluster(2);
    const id = idMoving("dev", 2, 1, 4, 3);
    const c = connect(before.cores[1]!, id);
    c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t", qos: 1 }] } as mqtt.ISubscribePacket);
    before.cores[1]!.socketClosed(c.conn);
    await before.settle();

    const mid = new Cluster(4, before.snapshot());
    const store = mid.stores[0]!;
    const plans = planStore(store);
    const calls: GrowthCalls = {
      begin: async (i, f, t) => beginGrowth(mid.cores[i]!, f, t),
      status: async () => {
        throw new Error("deployed again");
      },
      exportPage: async (i, f, t) => exportPage(mid.cores[i]!, f, t),
      end: async (i, t) => endGrowth(mid.cores[i]!, t),
    };
    await expect(advanceGrowth(plans, 2, 4, calls)).rejects.toThrow();
    expect(plans.load()?.phase).toBe("drain");

    const back = new Cluster(2, mid.snapshot().slice(0, 2));
    expect(back.cores[0]!.shards!.growingFrom).toBe(2);
    await back.grow(2);
    for (const core of back.cores) expect(core.shards!.paused).toBe(false);
    expect(back.holders(id)).toEqual([1]);
    expect(back.stores[0]!.loadReshard("plan")).toBeNull();
    expect(back.stores[1]!.loadReshard("plan")).toBeNull();
    // serves: a publish reaches the session, which the client finds at its home
    const pub = connect(back.cores[0]!, "pub", { clean: true, properties: {} });
    pub.send({ cmd: "publish", topic: "t", payload: Buffer.from("m"), qos: 1, messageId: 1 } as mqtt.IPublishPacket);
    await back.settle();
    expect(publishes(connect(back.cores[1]!, id))).toEqual(["m"]);
  });

  test("once sessions moved, setting SHARDS back is refused with a message that says what to set", async () => {
    const plan: GrowthPlan = { from: 2, to: 4, phase: "settle" };
    const plans = { load: () => plan, save: () => {} };
    const never = async () => {
      throw new Error("not called");
    };
    await expect(advanceGrowth(plans, 2, 2, { begin: never, status: never, exportPage: never, end: never })).rejects.toThrow(/SHARDS=4/);
  });
});

describe("one event's work", () => {
  test("a call of advanceGrowth exports one page at most (shard 0's own pages run in its event: all of them at once could outrun one event's CPU and transaction)", async () => {
    let plan: GrowthPlan | null = { from: 1, to: 2, phase: "export" };
    const plans = { load: () => plan, save: (p: GrowthPlan | null) => void (plan = p) };
    let pages = 0;
    const calls: GrowthCalls = {
      begin: async () => {},
      status: async () => ({ pending: 0, sent: 0 }),
      exportPage: async () => ++pages >= 3,
      end: async () => {},
    };
    expect(await advanceGrowth(plans, 1, 2, calls)).toBe(false);
    expect(pages).toBe(1);
    let calls_ = 1;
    while (!(await advanceGrowth(plans, 1, 2, calls))) calls_++;
    expect(pages).toBe(3);
    expect(calls_).toBeGreaterThanOrEqual(3);
  });
});

describe("no growth", () => {
  test("a fresh namespace at K = 4 serves at once: nothing paused, nothing growing, the layout recorded", () => {
    const c = new Cluster(4);
    expect(c.cores[0]!.shards!.growingFrom).toBeNull();
    for (const core of c.cores) {
      expect(core.shards!.paused).toBe(false);
      expect(core.shards!.layoutUnconfirmed).toBe(false);
    }
    expect(c.stores.map((s) => s.loadShardLayout())).toEqual([4, 4, 4, 4]);
    expect(c.stores.map((s) => s.loadReshard("plan"))).toEqual([null, null, null, null]);
  });

  test("a namespace that grew serves at its new K after restarting: nothing paused, nothing growing", async () => {
    const before = new Cluster(2);
    connect(before.cores[0]!, idMoving("dev", 2, 0, 4, 2));
    const after = new Cluster(4, before.snapshot());
    await after.grow(2);
    const again = new Cluster(4, after.snapshot());
    expect(again.cores[0]!.shards!.growingFrom).toBeNull();
    for (const core of again.cores) expect([core.shards!.paused, core.shards!.layoutUnconfirmed, core.shards!.layoutProblem]).toEqual([false, false, null]);
  });
});

describe("routing after the growth", () => {
  test("a new shard routes to subscribers that stayed on the old shards (exact and wildcard filters), and an old shard to moved ones", async () => {
    const before = new Cluster(2);
    const stay = idMoving("s", 2, 1, 4, 1);
    const moved = idMoving("m", 2, 0, 4, 2);
    for (const id of [stay, moved]) {
      const c = connect(before.cores[home(id, 2)]!, id);
      c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "e", qos: 1 }, { topic: "w/#", qos: 1 }] } as mqtt.ISubscribePacket);
      before.cores[home(id, 2)]!.socketClosed(c.conn);
    }
    await before.settle();
    const after = new Cluster(4, before.snapshot());
    await after.grow(2);
    const pub = connect(after.cores[3]!, "p3", { clean: true, properties: {} });
    pub.send({ cmd: "publish", topic: "e", payload: Buffer.from("1"), qos: 1, messageId: 1 } as mqtt.IPublishPacket);
    pub.send({ cmd: "publish", topic: "w/x", payload: Buffer.from("2"), qos: 1, messageId: 2 } as mqtt.IPublishPacket);
    const pub1 = connect(after.cores[1]!, "p1", { clean: true, properties: {} });
    pub1.send({ cmd: "publish", topic: "w/y", payload: Buffer.from("3"), qos: 1, messageId: 1 } as mqtt.IPublishPacket);
    await after.settle();
    // (two publishers: no order between them)
    expect(publishes(connect(after.cores[1]!, stay)).sort()).toEqual(["1", "2", "3"]);
    expect(publishes(connect(after.cores[2]!, moved)).sort()).toEqual(["1", "2", "3"]);
  });
});

describe("page boundaries", () => {
  test("K 1 → 2 over several export pages (sessions and retained messages): each session once, its queue whole and in order; every retained message copied", async () => {
    const before = new Cluster(1);
    // 901 entries each (the session, 900 deliveries): 5 of them take 2 pages of EXPORT_PAGE_ENTRIES
    const movers = ["a", "b", "c", "d", "e"].map((p) => idMoving(p, 1, 0, 2, 1));
    expect(EXPORT_PAGE_ENTRIES).toBeLessThan(4 * 901);
    const stayer = idMoving("s", 1, 0, 2, 0);
    for (const id of [...movers, stayer]) {
      const c = connect(before.cores[0]!, id);
      c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t", qos: 1 }] } as mqtt.ISubscribePacket);
      before.cores[0]!.socketClosed(c.conn);
    }
    const pub = connect(before.cores[0]!, "pub", { clean: true, properties: {} });
    for (let i = 0; i < 900; i++) pub.send({ cmd: "publish", topic: "t", payload: Buffer.from(String(i)), qos: 1, messageId: (i % 60000) + 1 } as mqtt.IPublishPacket);
    for (let i = 0; i < 1234; i++) pub.send({ cmd: "publish", topic: `r/${String(i).padStart(4, "0")}`, payload: Buffer.from("v"), qos: 0, retain: true } as mqtt.IPublishPacket);
    before.cores[0]!.socketClosed(pub.conn);
    const after = new Cluster(2, before.snapshot());
    await after.grow(1);
    const want = Array.from({ length: 900 }, (_, i) => String(i));
    for (const id of movers) {
      expect(after.holders(id)).toEqual([1]);
      const c = connect(after.cores[1]!, id, { properties: { sessionExpiryInterval: 3600, receiveMaximum: 65535 } });
      // the in-flight window lets part out at once; acknowledging each lets the next out
      let acked = 0;
      for (let n = 0; n < 10 && publishes(c).length < 900; n++) {
        const got = c.received.filter((x) => x.cmd === "publish");
        for (const p of got.slice(acked)) c.send({ cmd: "puback", messageId: p.messageId } as mqtt.IPubackPacket);
        acked = got.length;
        await after.settle();
      }
      expect(publishes(c)).toEqual(want);
    }
    expect(after.holders(stayer)).toEqual([0]);
    expect(after.stores[1]!.countRetained()).toBe(1234);
  });
});

describe("crashes between steps", () => {
  /** shard 0's growth, every shard restarting from its storage after each step (and mid-way through the links) */
  async function growCrashing(start: Cluster, from: number, crashLinks: boolean): Promise<Cluster> {
    let c = start;
    for (let n = 0; n < 80; n++) {
      const store = c.stores[0]!;
      const plans = {
        load: () => {
          const json = store.loadReshard("plan");
          return json === null ? null : (JSON.parse(json) as GrowthPlan);
        },
        save: (plan: GrowthPlan | null) => store.saveReshard("plan", plan === null ? null : JSON.stringify(plan)),
      };
      const cores = c.cores;
      const calls: GrowthCalls = {
        begin: async (i, f, t) => beginGrowth(cores[i]!, f, t),
        status: async (i) => growthStatus(cores[i]!),
        exportPage: async (i, f, t) => exportPage(cores[i]!, f, t),
        end: async (i, t) => endGrowth(cores[i]!, t),
      };
      const done = await advanceGrowth(plans, from, c.k, calls);
      if (done) {
        await c.settle();
        c.expectConsistent();
        return c;
      }
      if (crashLinks) await c.step(); // one round of link calls: some answered, some not
      else await c.settle();
      c = new Cluster(c.k, c.snapshot());
      expect(c.cores.every((core) => core.shards!.paused)).toBe(true);
    }
    throw new Error("the growth did not end");
  }

  for (const crashLinks of [false, true]) {
    test(`every shard restarting after each step${crashLinks ? " and with link calls unanswered" : ""}: each session once, at its home, queue whole`, async () => {
      const before = new Cluster(2);
      const ids = ["a", "b", "c", "d", "e", "f", "g", "h"].map((p) => `${p}-dev`);
      for (const id of ids) {
        const c = connect(before.cores[home(id, 2)]!, id);
        c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t", qos: 1 }] } as mqtt.ISubscribePacket);
        before.cores[home(id, 2)]!.socketClosed(c.conn);
      }
      await before.settle();
      const pub = connect(before.cores[0]!, "pub", { clean: true, properties: {} });
      for (let i = 0; i < 5; i++) pub.send({ cmd: "publish", topic: "t", payload: Buffer.from(String(i)), qos: 1, messageId: i + 1 } as mqtt.IPublishPacket);
      pub.send({ cmd: "publish", topic: "r", payload: Buffer.from("kept"), qos: 1, retain: true, messageId: 9 } as mqtt.IPublishPacket);
      await before.settle();
      const after = await growCrashing(new Cluster(4, before.snapshot()), 2, crashLinks);
      await after.settle();
      for (const id of ids) {
        expect(after.holders(id)).toEqual([home(id, 4)]);
        expect(publishes(connect(after.cores[home(id, 4)]!, id))).toEqual(["0", "1", "2", "3", "4"]);
      }
      for (const s of after.stores) expect(s.retainedSize("r")).not.toBeNull();
      for (const core of after.cores) expect(core.shards!.paused).toBe(false);
    });
  }
});

describe("QoS 0 copies (volatile on the links)", () => {
  test("QUEUE_QOS0: a QoS 0 will published at begin reaches the queue of a subscriber whose home moves (the drain waits for volatile entries too)", async () => {
    const config = { QUEUE_QOS0: true };
    const before = new Cluster(2, [], config);
    const sub = idMoving("s", 2, 1, 4, 3);
    const c = connect(before.cores[1]!, sub);
    c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "will", qos: 0 }] } as mqtt.ISubscribePacket);
    before.cores[1]!.socketClosed(c.conn);
    await before.settle();
    const after = new Cluster(4, before.snapshot(), config);
    // a connection alive when the growth begins (beginGrowth ends it: its will goes then)
    connect(after.cores[0]!, idMoving("w", 2, 0, 4, 0), { clean: true, properties: {}, will: { topic: "will", payload: Buffer.from("gone"), qos: 0, retain: false } } as never);
    await after.grow(2);
    expect(publishes(connect(after.cores[3]!, sub))).toEqual(["gone"]);
  });
});

describe("tunnels alive at begin", () => {
  {
    test("a tunnelled client (socket on shard 1, session on shard 0) is closed at begin: its will goes once, its session stays at its home, offline", async () => {
      const before = new Cluster(2);
      const watcher = idMoving("w", 2, 1, 4, 1);
      const w = connect(before.cores[1]!, watcher);
      w.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "will", qos: 1 }] } as mqtt.ISubscribePacket);
      before.cores[1]!.socketClosed(w.conn);
      await before.settle();
      const after = new Cluster(4, before.snapshot());
      // (a socket reaches a home under the new K only: a session placed by the old K cannot be tunnelled to)
      const id = idMoving("t", 2, 0, 4, 0);
      const closed: number[] = [];
      const connectBytes = new Uint8Array(
        mqtt.generate({ cmd: "connect", clientId: id, protocolVersion: 5, protocolId: "MQTT", clean: false, keepalive: 0, properties: { sessionExpiryInterval: 3600 }, will: { topic: "will", payload: Buffer.from("gone"), qos: 1, retain: false } } as mqtt.IConnectPacket, { protocolVersion: 5 }),
      );
      after.cores[1]!.shards!.tunnelOpen(0, "1.t", { send: () => {}, close: (code) => void closed.push(code) }, connectBytes, {});
      await after.settle();
      expect(after.cores[0]!.sessions.get(id)?.conn).toBeTruthy();
      await after.grow(2);
      expect(closed).toEqual([1012]);
      expect(after.holders(id)).toEqual([home(id, 4)]);
      expect(after.cores[home(id, 4)]!.sessions.get(id)!.conn).toBeNull();
      await after.settle();
      expect(publishes(connect(after.cores[1]!, watcher))).toEqual(["gone"]);
    });
  }
});

describe("message expiry across the growth", () => {
  test("a queued message keeps its expiry: delivered with what remains of it, or dropped once it passed", async () => {
    const before = new Cluster(2);
    const ids = [idMoving("a", 2, 1, 4, 3), idMoving("b", 2, 1, 4, 3)];
    for (const id of ids) {
      const c = connect(before.cores[1]!, id);
      c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t", qos: 1 }] } as mqtt.ISubscribePacket);
      before.cores[1]!.socketClosed(c.conn);
    }
    await before.settle();
    const pub = connect(before.cores[0]!, "pub", { clean: true, properties: {} });
    pub.send({ cmd: "publish", topic: "t", payload: Buffer.from("short"), qos: 1, messageId: 1, properties: { messageExpiryInterval: 60 } } as mqtt.IPublishPacket);
    await before.settle();
    const after = new Cluster(4, before.snapshot());
    after.now.ms = before.now.ms;
    await after.grow(2);
    after.now.ms += 30_000;
    const a = connect(after.cores[3]!, ids[0]!);
    const got = a.received.find((p) => p.cmd === "publish") as mqtt.IPublishPacket;
    expect(text(got)).toBe("short");
    expect(got.properties?.messageExpiryInterval).toBeGreaterThanOrEqual(29);
    expect(got.properties?.messageExpiryInterval).toBeLessThanOrEqual(30);
    after.now.ms += 40_000;
    expect(publishes(connect(after.cores[3]!, ids[1]!))).toEqual([]);
  });
});

describe("retained backlog across the growth", () => {
  test("a subscriber part-way through its retained messages gets the rest at its new home, each once", async () => {
    const before = new Cluster(2);
    const id = idMoving("dev", 2, 1, 4, 3);
    const pub = connect(before.cores[0]!, "pub", { clean: true, properties: {} });
    for (let i = 0; i < 30; i++) pub.send({ cmd: "publish", topic: `r/${String(i).padStart(2, "0")}`, payload: Buffer.from(String(i)), qos: 1, retain: true, messageId: i + 1 } as mqtt.IPublishPacket);
    await before.settle();
    const c = connect(before.cores[1]!, id, { properties: { sessionExpiryInterval: 3600, receiveMaximum: 5 } });
    c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "r/#", qos: 1 }] } as mqtt.ISubscribePacket);
    await before.settle();
    const first = publishes(c);
    expect(first.length).toBeGreaterThan(0);
    expect(first.length).toBeLessThan(30);
    before.cores[1]!.socketClosed(c.conn);
    await before.settle();
    const after = new Cluster(4, before.snapshot());
    await after.grow(2);
    const back = connect(after.cores[3]!, id, { properties: { sessionExpiryInterval: 3600, receiveMaximum: 5 } });
    let acked = 0;
    for (let n = 0; n < 40 && new Set(publishes(back)).size < 30; n++) {
      const got = back.received.filter((x) => x.cmd === "publish");
      for (const p of got.slice(acked)) back.send({ cmd: "puback", messageId: p.messageId } as mqtt.IPubackPacket);
      acked = got.length;
      await after.settle();
    }
    const all = publishes(back);
    expect([...new Set(all)].sort((x, y) => Number(x) - Number(y))).toEqual(Array.from({ length: 30 }, (_, i) => String(i)));
    // the ones in flight when it left come again (DUP), the rest once
    expect(all.length).toBe(30);
  });
});
