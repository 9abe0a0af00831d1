// The SQLite store inside workerd, through a real Durable Object's storage.
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { expect, test } from "vitest";
import { Buffer } from "node:buffer";
import { SqliteStore } from "../../src/storage/sqlite-store";
import { DeliveryState, type SubscriptionRow } from "../../src/storage/store";
import { MIGRATIONS } from "../../src/storage/schema";
import type { MessageRow as Message } from "../../src/storage/store";


function withStore(name: string, fn: (store: SqliteStore, sql: SqlStorage) => void): Promise<void> {
  const stub = env.BROKER.get(env.BROKER.idFromName(name));
  return runInDurableObject(stub, (_instance, state) => fn(new SqliteStore(state.storage.sql), state.storage.sql));
}

const subscription = (filter: string): SubscriptionRow => ({ clientId: "", filter, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 });
const message = (topic: string, payload: string): Message => ({ topic, payload: Buffer.from(payload), qos: 1, retain: false });

test("migrations are idempotent and recorded", async () => {
  await withStore("store-migrate", (_store, sql) => {
    new SqliteStore(sql); // a second open applies nothing twice
    expect(sql.exec("SELECT value FROM meta WHERE key = 'schema_version'").one().value).toBe(String(MIGRATIONS.length));
  });
});

test("a message body is stored once however many sessions queue it, and freed with its last delivery", async () => {
  await withStore("store-once", (store, sql) => {
    const msg = message("a/b", "shared body");
    const seqs = ["s1", "s2", "s3"].map((c) => store.addDelivery(c, msg, 1, false, DeliveryState.Queued, null));
    expect(sql.exec("SELECT COUNT(*) AS n FROM messages").one().n).toBe(1);
    expect(sql.exec("SELECT COUNT(*) AS n FROM deliveries").one().n).toBe(3);
    expect(store.queueStats().map((q) => q.count)).toEqual([1, 1, 1]);
    store.deleteDelivery(seqs[0]!);
    store.deleteDelivery(seqs[1]!);
    expect(sql.exec("SELECT COUNT(*) AS n FROM messages").one().n).toBe(1);
    store.deleteDelivery(seqs[2]!);
    expect(sql.exec("SELECT COUNT(*) AS n FROM messages").one().n).toBe(0);
  });
});

test("deleteDeliveries removes many rows at once (over the chunk size) and frees unreferenced bodies", async () => {
  await withStore("store-bulk", (store, sql) => {
    const shared = message("a", "shared");
    const seqs = Array.from({ length: 250 }, (_, i) => store.addDelivery(`c${i}`, i < 200 ? shared : message("b", `own${i}`), 1, false, DeliveryState.Sent, 1));
    const keep = seqs.pop()!;
    store.deleteDeliveries(seqs);
    expect(sql.exec("SELECT COUNT(*) AS n FROM deliveries").one().n).toBe(1);
    expect(sql.exec("SELECT COUNT(*) AS n FROM messages").one().n).toBe(1); // the last row's own body
    store.deleteDeliveries([keep]);
    expect(sql.exec("SELECT COUNT(*) AS n FROM messages").one().n).toBe(0);
  });
});

test("queued rows come back in publish order with their message; in-flight rows keep state and packet id", async () => {
  await withStore("store-order", (store) => {
    const seqs = [1, 2, 3].map((i) => store.addDelivery("c", message("t", `m${i}`), 1, false, DeliveryState.Queued, null));
    store.markSent(seqs[0]!, 42);
    const queued = store.nextQueued("c", 10);
    expect(queued.map((r) => Buffer.from(r.msg.payload).toString())).toEqual(["m2", "m3"]);
    const inflight = store.loadInflight();
    expect(inflight).toHaveLength(1);
    expect(inflight[0]).toMatchObject({ clientId: "c", packetId: 42, state: DeliveryState.Sent });
    store.markReleased(seqs[0]!);
    expect(store.loadInflight()[0]!.state).toBe(DeliveryState.Released);
  });
});

test("dropOldestQos0 frees the oldest QoS 0 row only", async () => {
  await withStore("store-drop", (store) => {
    store.addDelivery("c", message("t", "one"), 1, false, DeliveryState.Queued, null);
    store.addDelivery("c", { ...message("t", "zero"), qos: 0 }, 0, false, DeliveryState.Queued, null);
    expect(store.dropOldestQos0("c")).toBe("t".length + "zero".length);
    expect(store.dropOldestQos0("c")).toBeNull();
    expect(store.nextQueued("c", 10)).toHaveLength(1);
  });
});

test("deleting a session removes its subscriptions, deliveries, inbound ids and orphaned bodies, and only its own", async () => {
  await withStore("store-delete", (store, sql) => {
    const count = (table: string) => Number(sql.exec(`SELECT COUNT(*) AS n FROM ${table}`).one().n);
    for (const id of ["c", "other"]) {
      store.saveSession({ clientId: id, version: 4, expiry: 60, connected: false, expiresAt: null, will: null, willAt: null, owner: null, grant: null, durable: true, retainedBacklog: null });
      for (const filter of [`${id}/a`, `${id}/b/#`]) store.saveSubscription({ ...subscription(filter), clientId: id });
      store.addDelivery(id, message("t", `for ${id}`), 1, false, DeliveryState.Queued, null);
      store.addInboundQos2(id, 9);
    }
    const tables = ["sessions", "subscriptions", "deliveries", "messages", "inbound_qos2"];
    expect(tables.map(count)).toEqual([2, 4, 2, 2, 2]); // every table really holds rows of "c"
    store.deleteSession("c");
    expect(tables.map(count)).toEqual([1, 2, 1, 1, 1]);
    expect(store.loadSubscriptions().map((s) => `${s.clientId} ${s.filter}`)).toEqual(["other other/a", "other other/b/#"]);
    expect(store.nextQueued("other", 10).map((r) => Buffer.from(r.msg.payload).toString())).toEqual(["for other"]);
  });
});

test("retained messages: replace, prefix lookup, delete", async () => {
  await withStore("store-retained", (store) => {
    store.setRetained({ ...message("home/a", "1"), retain: true });
    store.setRetained({ ...message("home/a", "2"), retain: true });
    store.setRetained({ ...message("other", "3"), retain: true });
    expect(store.retainedWithPrefix("home/").map((m) => Buffer.from(m.payload).toString())).toEqual(["2"]);
    expect(store.countRetained()).toBe(2);
    store.deleteRetained("home/a");
    expect(store.countRetained()).toBe(1);
  });
});

test("a delivery keeps its MQTT 5 subscription identifiers, queued and in flight", async () => {
  await withStore("store-sub-ids", (store) => {
    store.addDelivery("c", message("t", "two ids"), 1, false, DeliveryState.Queued, null, [7, 268435455]);
    store.addDelivery("c", message("t", "none"), 1, false, DeliveryState.Queued, null);
    store.addDelivery("c", message("t", "sent"), 1, false, DeliveryState.Sent, 3, [1]);
    expect(store.nextQueued("c", 10).map((r) => r.subIds)).toEqual([[7, 268435455], null]);
    expect(store.loadInflight().map((r) => r.subIds)).toEqual([[1]]);
  });
});

test("rowsWritten sums the rows each writing statement wrote (index rows included, as billed), RETURNING ones included; reads count nothing", async () => {
  await withStore("store-rows-written", (store, sql) => {
    // what SQLite itself reports for the same statements, on scratch rows
    const rows = (q: string, ...a: SqlStorageValue[]) => sql.exec(q, ...a).rowsWritten;
    const deltas: number[] = [];
    let last = store.rowsWritten;
    const step = () => {
      deltas.push(store.rowsWritten - last);
      last = store.rowsWritten;
    };
    store.saveSubscription(subscription("a/#"));
    step();
    const seq = store.addDelivery("c", message("a/b", "x"), 1, false, DeliveryState.Queued, null); // body + delivery
    step();
    store.nextQueued("c", 10);
    store.countRetained();
    step();
    store.deleteDelivery(seq); // delivery + its body
    step();
    store.saveEvents("{}");
    step();
    store.saveEvents("{}");
    step();
    const sub = rows("INSERT OR REPLACE INTO subscriptions (client_id, filter, qos, no_local, retain_as_published, retain_handling, sub_id) VALUES ('z', 'a/#', 1, 0, 0, 0, NULL)");
    expect(sub).toBeGreaterThan(0);
    expect(deltas[0]).toBe(sub);
    expect(deltas[1]).toBeGreaterThanOrEqual(2);
    expect(deltas[2]).toBe(0);
    expect(deltas[3]).toBeGreaterThanOrEqual(2);
    expect(deltas[4]).toBeGreaterThan(0);
    expect(deltas[5]).toBeGreaterThan(0);
    expect(deltas[5]).toBeLessThanOrEqual(deltas[4]!); // then an update in place
    expect(store.loadEvents()).toBe("{}");
    console.log(`rows written: subscription ${deltas[0]}, delivery+body ${deltas[1]}, delete both ${deltas[3]}, events row ${deltas[4]} then ${deltas[5]}`);
  });
});
