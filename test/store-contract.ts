// One contract for every Store: the in-memory store (plain Node, test/unit/memory-store.test.ts)
// and the SQLite store (inside workerd, test/workers/store-contract.test.ts) pass the same cases,
// through the interface alone, so the simulated broker behaves like the real one.
import { describe, expect, test } from "vitest";
import { Buffer } from "node:buffer";
import { DeliveryState, type SessionRow, type Store, type SubscriptionRow } from "../src/storage/store";
import type { Message } from "../src/session/message";

/** Runs `fn` against a fresh, empty store named `key`. */
export type OpenStore = (key: string, fn: (store: Store) => void) => Promise<void> | void;

const sub = (clientId: string, filter: string, more: Partial<SubscriptionRow> = {}): SubscriptionRow => ({ clientId, filter, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, ...more });
const msg = (topic: string, payload: string, more: Partial<Message> = {}): Message => ({ topic, payload: Buffer.from(payload), qos: 1, retain: false, ...more });
const text = (m: Message) => Buffer.from(m.payload).toString();
const session = (clientId: string, more: Partial<SessionRow> = {}): SessionRow => ({
  clientId,
  version: 5,
  expiry: 60,
  connected: true,
  expiresAt: null,
  will: null,
  willAt: null,
  owner: null,
  grant: null,
  durable: true,
  retainedBacklog: null,
  ...more,
});

export function storeContract(open: OpenStore): void {
  describe("sessions", () => {
    test("a session row comes back as saved: will, grant, durability, retained backlog", async () => {
      await open("contract-session", (store) => {
        const will = { topic: "w/t", payload: Buffer.from([0, 1, 255]), qos: 1 as const, retain: true, delay: 5, properties: { contentType: "x" } };
        store.saveSession(session("a", { will, willAt: 123, owner: "user:u", grant: { username: "u", subscribe: ["a/#"] }, durable: false, retainedBacklog: [{ filter: "r/#", after: "r/5" }] }));
        const [row] = store.loadSessions();
        expect({ ...row!, will: { ...row!.will!, payload: [...row!.will!.payload] } }).toEqual({
          ...session("a", { willAt: 123, owner: "user:u", grant: { username: "u", subscribe: ["a/#"] }, durable: false, retainedBacklog: [{ filter: "r/#", after: "r/5" }] }),
          will: { ...will, payload: [0, 1, 255] },
        });
      });
    });

    test("clearWill and saveRetainedBacklog change only their fields", async () => {
      await open("contract-session-fields", (store) => {
        store.saveSession(session("a", { will: { topic: "w", payload: Buffer.from("x"), qos: 0, retain: false, delay: 0 }, willAt: 9 }));
        store.clearWill("a");
        store.saveRetainedBacklog("a", [{ filter: "x/#", after: null }]);
        expect(store.loadSessions()).toEqual([session("a", { retainedBacklog: [{ filter: "x/#", after: null }] })]);
        store.saveRetainedBacklog("a", null);
        expect(store.loadSessions()[0]!.retainedBacklog).toBeNull();
      });
    });

    test("deleting a session removes everything it holds and nothing of another's", async () => {
      await open("contract-delete", (store) => {
        for (const id of ["a", "b"]) {
          store.saveSession(session(id));
          store.saveSubscription(sub(id, `${id}/#`));
          store.addDelivery(id, msg("t", `q-${id}`), 1, false, DeliveryState.Queued, null);
          store.addDelivery(id, msg("t", `f-${id}`), 1, false, DeliveryState.Sent, 7);
          store.addInboundQos2(id, 3);
          store.saveTopicAliases(id, [[1, `${id}/topic`]]);
        }
        // one body, queued for both: it stays for b when a goes
        const shared = msg("t", "shared");
        store.addDelivery("a", shared, 1, false, DeliveryState.Queued, null);
        store.addDelivery("b", shared, 1, false, DeliveryState.Queued, null);
        store.deleteSession("a");
        expect(store.nextQueued("b", 10).map((r) => text(r.msg))).toEqual(["q-b", "shared"]);
        expect(store.loadSessions().map((r) => r.clientId)).toEqual(["b"]);
        expect(store.loadSubscriptions().map((r) => r.clientId)).toEqual(["b"]);
        expect(store.queueStats().map((q) => q.clientId)).toEqual(["b"]);
        expect(store.loadInflight().map((r) => text(r.msg))).toEqual(["f-b"]);
        expect(store.loadInboundQos2()).toEqual([{ clientId: "b", packetId: 3 }]);
        expect([store.loadTopicAliases("a"), store.loadTopicAliases("b")]).toEqual([[], [[1, "b/topic"]]]);
      });
    });
  });

  test("subscriptions: saved with their options, replaced by filter, deleted", async () => {
    await open("contract-subs", (store) => {
      store.saveSubscription(sub("a", "x/+", { qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2, subscriptionId: 7 }));
      store.saveSubscription(sub("a", "y/#"));
      store.saveSubscription(sub("a", "y/#", { qos: 0 }));
      const rows = store.loadSubscriptions().sort((p, q) => (p.filter < q.filter ? -1 : 1));
      expect(rows).toEqual([
        { clientId: "a", filter: "x/+", qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2, subscriptionId: 7 },
        { clientId: "a", filter: "y/#", qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0 },
      ]);
      store.deleteSubscription("a", "x/+");
      expect(store.loadSubscriptions().map((r) => r.filter)).toEqual(["y/#"]);
    });
  });

  describe("retained messages", () => {
    test("replace, delete, sizes, and lookups by prefix in topic order", async () => {
      await open("contract-retained", (store) => {
        store.setRetained(msg("a/2", "two", { retain: true, properties: { contentType: "c" } }));
        store.setRetained(msg("a/1", "one", { retain: true }));
        store.setRetained(msg("a/1", "uno!", { retain: true }));
        store.setRetained(msg("b/1", "b", { retain: true }));
        expect(store.countRetained()).toBe(3);
        expect(store.retainedUsage()).toEqual({ count: 3, bytes: 4 + 3 + 1 });
        // leaving out a prefix (the presence entries, outside the retained quota): "a/" but not "a0" nor "b/1"
        store.setRetained(msg("a0", "zero", { retain: true }));
        expect(store.retainedUsage("a/")).toEqual({ count: 2, bytes: 4 + 1 });
        store.deleteRetained("a0");
        expect(store.retainedSize("a/1")).toBe(4);
        expect(store.retainedSize("zz")).toBeNull();
        const a = store.retainedWithPrefix("a/").sort((p, q) => (p.topic < q.topic ? -1 : 1));
        expect(a.map((m) => [m.topic, text(m), m.retain])).toEqual([
          ["a/1", "uno!", true],
          ["a/2", "two", true],
        ]);
        expect(a[1]!.properties).toEqual({ contentType: "c" });
        store.deleteRetained("a/1");
        expect(store.retainedWithPrefix("").map((m) => m.topic).sort()).toEqual(["a/2", "b/1"]);
      });
    });

    test("retainedAfter pages through a prefix in topic order behind a cursor", async () => {
      await open("contract-retained-page", (store) => {
        for (const t of ["p/3", "p/1", "q/1", "p/2", "p", "o/9"]) store.setRetained(msg(t, t, { retain: true }));
        expect(store.retainedAfter("p/", null, 2).map((m) => m.topic)).toEqual(["p/1", "p/2"]);
        expect(store.retainedAfter("p/", "p/2", 2).map((m) => m.topic)).toEqual(["p/3"]);
        expect(store.retainedAfter("p/", "p/3", 2)).toEqual([]);
        expect(store.retainedAfter("", "p/2", 10).map((m) => m.topic)).toEqual(["p/3", "q/1"]);
        expect(store.retainedAfter("", null, 10).map((m) => m.topic)).toEqual(["o/9", "p", "p/1", "p/2", "p/3", "q/1"]);
        // a prefix without a separator: "p" also covers "p", "p/..." and "pq"
        store.setRetained(msg("pq", "pq", { retain: true }));
        expect(store.retainedAfter("p", null, 3).map((m) => m.topic)).toEqual(["p", "p/1", "p/2"]);
        expect(store.retainedAfter("p", "p/3", 3).map((m) => m.topic)).toEqual(["pq"]);
      });
    });

    test("deleteExpiredRetained removes only messages expired before now", async () => {
      await open("contract-retained-expiry", (store) => {
        store.setRetained(msg("e/1", "x", { retain: true, expiresAt: 100 }));
        store.setRetained(msg("e/2", "x", { retain: true, expiresAt: 200 }));
        store.setRetained(msg("e/3", "x", { retain: true }));
        store.deleteExpiredRetained(200);
        expect(store.retainedWithPrefix("e/").map((m) => [m.topic, m.expiresAt]).sort()).toEqual([
          ["e/2", 200],
          ["e/3", undefined],
        ]);
      });
    });
  });

  describe("deliveries", () => {
    test("a body is stored once per message; queued rows come back oldest first, with their subscription ids", async () => {
      await open("contract-queue", (store) => {
        const shared = msg("t", "shared");
        store.addDelivery("a", shared, 1, false, DeliveryState.Queued, null, [4, 5]);
        const first = shared.storedId;
        expect(first).toBeDefined();
        store.addDelivery("b", shared, 2, true, DeliveryState.Queued, null);
        expect(shared.storedId).toBe(first);
        store.addDelivery("a", msg("t", "second", { properties: { userProperties: { k: "v" } }, expiresAt: 999 }), 0, false, DeliveryState.Queued, null);
        const rows = store.nextQueued("a", 10);
        expect(rows.map((r) => [text(r.msg), r.qos, r.retain, r.subIds, r.packetId, r.state])).toEqual([
          ["shared", 1, false, [4, 5], null, DeliveryState.Queued],
          ["second", 0, false, null, null, DeliveryState.Queued],
        ]);
        expect(rows[1]!.msg.properties).toEqual({ userProperties: { k: "v" } });
        expect(rows[1]!.msg.expiresAt).toBe(999);
        expect(store.nextQueued("a", 1).map((r) => text(r.msg))).toEqual(["shared"]);
        expect(store.nextQueued("b", 10).map((r) => [r.qos, r.retain])).toEqual([[2, true]]);
        expect(store.queueStats().sort((p, q) => (p.clientId < q.clientId ? -1 : 1))).toEqual([
          { clientId: "a", count: 2, bytes: 7 + 7 },
          { clientId: "b", count: 1, bytes: 7 },
        ]);
      });
    });

    test("sent and released rows are the in-flight ones; deletes remove them", async () => {
      await open("contract-inflight", (store) => {
        const q = store.addDelivery("a", msg("t", "q"), 1, false, DeliveryState.Queued, null);
        const s = store.addDelivery("a", msg("t", "s"), 2, false, DeliveryState.Sent, 11);
        store.markSent(q, 12);
        store.markReleased(s);
        expect(store.loadInflight().map((r) => [text(r.msg), r.state, r.packetId])).toEqual([
          ["q", DeliveryState.Sent, 12],
          ["s", DeliveryState.Released, 11],
        ]);
        expect(store.nextQueued("a", 10)).toEqual([]);
        store.deleteDelivery(q);
        expect(store.loadInflight().map((r) => text(r.msg))).toEqual(["s"]);
        const many = Array.from({ length: 250 }, (_, i) => store.addDelivery("b", msg("t", `m${i}`), 1, false, DeliveryState.Queued, null));
        store.deleteDeliveries(many.slice(0, 240));
        expect(store.nextQueued("b", 100).map((r) => text(r.msg))).toEqual(["m240", "m241", "m242", "m243", "m244", "m245", "m246", "m247", "m248", "m249"]);
      });
    });

    test("dropOldestQos0 and dropExpiredQueued free queued rows of one session only", async () => {
      await open("contract-drop", (store) => {
        store.addDelivery("a", msg("t", "q1"), 1, false, DeliveryState.Queued, null);
        store.addDelivery("a", msg("t", "zero1"), 0, false, DeliveryState.Queued, null);
        store.addDelivery("a", msg("t", "zero2"), 0, false, DeliveryState.Queued, null);
        store.addDelivery("b", msg("t", "zero-b"), 0, false, DeliveryState.Queued, null);
        expect(store.dropOldestQos0("a")).toBe(1 + 5);
        expect(store.nextQueued("a", 10).map((r) => text(r.msg))).toEqual(["q1", "zero2"]);
        expect(store.dropOldestQos0("c")).toBeNull();

        store.addDelivery("a", msg("t", "old", { expiresAt: 100 }), 1, false, DeliveryState.Queued, null);
        store.addDelivery("a", msg("t", "flying", { expiresAt: 100 }), 1, false, DeliveryState.Sent, 3);
        store.addDelivery("b", msg("t", "old-b", { expiresAt: 100 }), 1, false, DeliveryState.Queued, null);
        store.addDelivery("a", msg("t", "live", { expiresAt: 500 }), 1, false, DeliveryState.Queued, null);
        expect(store.dropExpiredQueued("a", 200)).toEqual({ count: 1, bytes: 1 + 3 });
        expect(store.nextQueued("a", 10).map((r) => text(r.msg))).toEqual(["q1", "zero2", "live"]);
        expect(store.loadInflight().map((r) => text(r.msg))).toEqual(["flying"]); // in flight: not the queue's to drop
        expect(store.nextQueued("b", 10).map((r) => text(r.msg))).toEqual(["zero-b", "old-b"]);
        expect(store.dropExpiredQueued("a", 200)).toEqual({ count: 0, bytes: 0 });
      });
    });
  });

  test("topic aliases: the whole set of a client replaced at once, read back in alias order", async () => {
    await open("contract-aliases", (store) => {
      store.saveTopicAliases("a", [[2, "two"], [1, "one"]]);
      store.saveTopicAliases("a", [[3, "three"], [1, "uno"]]);
      expect(store.loadTopicAliases("a")).toEqual([[1, "uno"], [3, "three"]]);
      store.saveTopicAlias("a", 3, "drei");
      store.saveTopicAlias("a", 2, "zwei");
      expect(store.loadTopicAliases("a")).toEqual([[1, "uno"], [2, "zwei"], [3, "drei"]]);
      expect(store.loadTopicAliases("b")).toEqual([]);
    });
  });

  test("inbound QoS 2 ids: added once, removed, per session", async () => {
    await open("contract-qos2", (store) => {
      store.addInboundQos2("a", 1);
      store.addInboundQos2("a", 1);
      store.addInboundQos2("a", 2);
      store.addInboundQos2("b", 1);
      store.deleteInboundQos2("a", 1);
      const ids = store.loadInboundQos2().map((r) => `${r.clientId}:${r.packetId}`).sort();
      expect(ids).toEqual(["a:2", "b:1"]);
    });
  });

  describe("rule sends", () => {
    test("a pending send keeps its message, publisher and times; due ones come back earliest first", async () => {
      await open("contract-rule-sends", (store) => {
        expect(store.nextRuleSendAt()).toBeNull();
        expect(store.countRuleSends()).toBe(0);
        const corr = Buffer.from([0, 255]);
        const a = store.addRuleSend("hook", msg("s/a", "one", { qos: 1, retain: true, properties: { contentType: "text/plain", correlationData: corr, userProperties: { k: "v" } }, expiresAt: 5000 }), "pub-1", 100, 300);
        const b = store.addRuleSend("queue", msg("s/b", "two", { qos: 2 }), null, 110, 200);
        const c = store.addRuleSend("hook", msg("s/c", "three"), "pub-2", 120, 900);
        expect(new Set([a, b, c]).size).toBe(3);
        expect(store.countRuleSends()).toBe(3);
        expect(store.nextRuleSendAt()).toBe(200);
        const due = store.dueRuleSends(300, 10);
        expect(due.map((r) => [r.id, r.rule, r.msg.topic, text(r.msg), r.msg.qos, r.msg.retain, r.clientId, r.createdAt, r.attempts, r.nextAt])).toEqual([
          [b, "queue", "s/b", "two", 2, false, null, 110, 0, 200],
          [a, "hook", "s/a", "one", 1, true, "pub-1", 100, 0, 300],
        ]);
        const props = due[1]!.msg.properties!;
        expect(props.contentType).toBe("text/plain");
        expect([...(props.correlationData as Uint8Array)]).toEqual([0, 255]);
        expect(props.userProperties).toEqual({ k: "v" });
        expect(due[1]!.msg.expiresAt).toBe(5000);
        expect(due[0]!.msg.expiresAt).toBeUndefined();
        expect(store.dueRuleSends(300, 1).map((r) => r.id)).toEqual([b]);
        expect(store.dueRuleSends(199, 10)).toEqual([]);
        // a byte budget: rows while their payloads fit ("two" + "one" = 6 bytes), the first always
        expect(store.dueRuleSends(1000, 10, 6).map((r) => r.id)).toEqual([b, a]);
        expect(store.dueRuleSends(1000, 10, 5).map((r) => r.id)).toEqual([b]);
        expect(store.dueRuleSends(1000, 10, 1).map((r) => r.id)).toEqual([b]);
      });
    });

    test("a failed send is rescheduled with its attempts; sent ones are deleted", async () => {
      await open("contract-rule-sends-update", (store) => {
        const a = store.addRuleSend("r", msg("t", "a"), "c", 1, 10);
        const b = store.addRuleSend("r", msg("t", "b"), "c", 1, 10);
        store.updateRuleSend(a, 3, 50);
        expect(store.nextRuleSendAt()).toBe(10);
        store.deleteRuleSends([b]);
        expect(store.countRuleSends()).toBe(1);
        expect(store.nextRuleSendAt()).toBe(50);
        expect(store.dueRuleSends(49, 10)).toEqual([]);
        expect(store.dueRuleSends(50, 10).map((r) => [r.id, r.attempts, text(r.msg)])).toEqual([[a, 3, "a"]]);
        store.deleteRuleSends([a, 12345]);
        expect(store.countRuleSends()).toBe(0);
        expect(store.nextRuleSendAt()).toBeNull();
      });
    });
  });

  describe("scale-out links (migration 7)", () => {
    const bytes = (...b: number[]) => new Uint8Array(b);
    test("chunks: stored per target in seq order, retried, deleted up to an acknowledged seq; each row written counts", async () => {
      await open("contract-chunks", (store) => {
        expect(store.loadChunks()).toEqual([]);
        const before = store.rowsWritten;
        store.addChunk(2, 1, bytes(1, 2), 100);
        store.addChunk(1, 5, bytes(), 101);
        store.addChunk(2, 2, bytes(3), 102);
        store.addChunk(2, 3, bytes(4, 255), 103);
        expect(store.rowsWritten - before).toBe(4);
        expect(store.loadChunks().map((c) => [c.target, c.seq, [...c.entries], c.attempts, c.nextAt])).toEqual([
          [1, 5, [], 0, 101],
          [2, 1, [1, 2], 0, 100],
          [2, 2, [3], 0, 102],
          [2, 3, [4, 255], 0, 103],
        ]);
        store.updateChunkRetry(2, 1, 3, 900);
        expect(store.rowsWritten - before).toBe(5);
        expect(store.loadChunks().find((c) => c.target === 2 && c.seq === 1)).toMatchObject({ attempts: 3, nextAt: 900 });
        store.deleteChunksUpTo(2, 2);
        expect(store.rowsWritten - before).toBe(7);
        store.deleteChunksUpTo(2, 2); // nothing left to delete: nothing written
        store.deleteChunksUpTo(7, 100);
        expect(store.rowsWritten - before).toBe(7);
        expect(store.loadChunks().map((c) => [c.target, c.seq])).toEqual([
          [1, 5],
          [2, 3],
        ]);
        expect(() => store.addChunk(2, 3, bytes(9), 104)).toThrow(); // a seq is never stored twice
      });
    });

    test("link watermarks: acked and applied are upserted independently", async () => {
      await open("contract-links", (store) => {
        expect(store.loadLinks()).toEqual([]);
        const before = store.rowsWritten;
        store.saveAcked(3, 10);
        store.saveApplied(1, 4);
        store.saveApplied(3, 7);
        store.saveAcked(3, 12);
        expect(store.rowsWritten - before).toBe(4);
        expect(store.loadLinks()).toEqual([
          { peer: 1, ackedSeq: 0, appliedSeq: 4 },
          { peer: 3, ackedSeq: 12, appliedSeq: 7 },
        ]);
      });
    });

    test("interest: a peer's filters, added once, removed", async () => {
      await open("contract-interest", (store) => {
        const before = store.rowsWritten;
        store.addInterest(2, "a/#");
        store.addInterest(2, "a/#");
        store.addInterest(1, "b/+");
        store.addInterest(2, "+/x");
        expect(store.rowsWritten - before).toBe(3);
        store.removeInterest(2, "a/#");
        store.removeInterest(2, "nope");
        expect(store.rowsWritten - before).toBe(4);
        expect(store.loadInterest()).toEqual([
          { peer: 1, filter: "b/+" },
          { peer: 2, filter: "+/x" },
        ]);
      });
    });

    test("interest fingerprints: a peer's, added once, removed, listed by peer then value, the full 32 bits", async () => {
      await open("contract-interest-fp", (store) => {
        const list = () => {
          const out: [number, number][] = [];
          store.loadInterestFps((peer, fp) => out.push([peer, fp]));
          return out;
        };
        expect(list()).toEqual([]);
        const before = store.rowsWritten;
        store.addInterestFp(2, 0xffffffff);
        store.addInterestFp(2, 0xffffffff);
        store.addInterestFp(1, 7);
        store.addInterestFp(2, 0);
        store.addInterestFp(2, 0x80000000);
        expect(store.rowsWritten - before).toBe(4);
        store.removeInterestFp(2, 0x80000000);
        store.removeInterestFp(2, 12345);
        store.removeInterestFp(3, 7);
        expect(store.rowsWritten - before).toBe(5);
        expect(list()).toEqual([
          [1, 7],
          [2, 0],
          [2, 0xffffffff],
        ]);
        // apart from the filter strings
        store.addInterest(2, "a/#");
        expect(store.loadInterest()).toEqual([{ peer: 2, filter: "a/#" }]);
        expect(list()).toHaveLength(3);
      });
    });

    test("retained versions: kept with the row, none without one, gone with the row", async () => {
      await open("contract-retained-version", (store) => {
        store.setRetained(msg("v/1", "a", { retain: true }));
        expect(store.retainedVersion("v/1")).toBeNull();
        const big = 1_800_000_000_000 * 256 + 5;
        store.setRetained(msg("v/1", "b", { retain: true }), big);
        expect(store.retainedVersion("v/1")).toBe(big);
        expect(store.retainedWithPrefix("v/").map((m) => text(m))).toEqual(["b"]);
        store.setRetained(msg("v/1", "c", { retain: true }));
        expect(store.retainedVersion("v/1")).toBeNull();
        store.setRetained(msg("v/2", "d", { retain: true }), 7);
        store.deleteRetained("v/2");
        expect(store.retainedVersion("v/2")).toBeNull();
        expect(store.retainedVersion("none")).toBeNull();
      });
    });

    test("a removal with a version is remembered (migration 8) until a newer write replaces it", async () => {
      await open("contract-retained-removed", (store) => {
        const v = 1_800_000_000_000 * 256 + 3;
        store.setRetained(msg("r/1", "a", { retain: true }), v - 256);
        store.deleteRetained("r/1", v);
        expect(store.retainedWithPrefix("r/")).toEqual([]);
        expect(store.countRetained()).toBe(0);
        expect(store.retainedVersion("r/1")).toBe(v);
        store.deleteRetained("r/2", v); // no row: the removal is kept all the same
        expect(store.retainedVersion("r/2")).toBe(v);
        store.setRetained(msg("r/1", "b", { retain: true }), v + 256);
        expect(store.retainedVersion("r/1")).toBe(v + 256);
        store.deleteRetained("r/1"); // without a version (one shard): nothing kept
        expect(store.retainedVersion("r/1")).toBeNull();
      });
    });
  });
}
