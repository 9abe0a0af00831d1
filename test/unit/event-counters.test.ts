// The billed-event counters (broker/counters.ts) on the pure core: totals add up across the
// object's lives through the store, the save schedule, and what a QoS 0 message writes (nothing).
import { describe, expect, test } from "vitest";
import * as mqtt from "mqtt-packet";
import { BrokerCore, type Runtime } from "../../src/broker/core";
import { Connection } from "../../src/broker/connection";
import { Counters, eventsFromJson, noEvents, savedAtOf } from "../../src/broker/counters";
import { namespaceStats } from "../../src/broker/stats";
import { DEFAULTS } from "../../src/config";
import { Authenticator } from "../../src/auth/authenticator";
import { MemoryStore } from "../../src/storage/memory-store";

function life(store: MemoryStore, at: number, saveInterval = DEFAULTS.EVENTS_SAVE_INTERVAL) {
  let now = at;
  const runtime: Runtime = { now: () => now, wakeAt: () => {}, rearm: () => {}, later: (fn) => fn(), log: () => {} };
  const core = new BrokerCore(store, { ...DEFAULTS, EVENTS_SAVE_INTERVAL: saveInterval }, runtime, Authenticator.open());
  return {
    core,
    set now(ms: number) {
      now = ms;
    },
  };
}

describe("event totals", () => {
  test("a life adds its own counts and awake time (construction to the last event's start) to what earlier lives saved", () => {
    const c = new Counters(10_000);
    c.base = { since: 1, websocketMessages: 5, rpc: 2, http: 1, alarms: 3, wakeups: 4, awakeMs: 700, rowsWritten: 9 };
    c.websocketMessages = 7;
    c.rpc = 1;
    c.http = 2;
    c.alarms = 1;
    c.wakeups = 1;
    c.lastEventAt = 12_500;
    expect(c.events(6)).toEqual({ since: 1, websocketMessages: 12, rpc: 3, http: 3, alarms: 4, wakeups: 5, awakeMs: 3200, rowsWritten: 15 });
  });

  test("a life with no event yet was awake 0 ms", () => {
    expect(new Counters(5000).events(0)).toEqual(noEvents(5000));
  });

  test("saved totals are the next life's base; the save's own row is in them", () => {
    const store = new MemoryStore();
    const first = life(store, 1000);
    const c1 = first.core.counters;
    c1.websocketMessages = 3;
    c1.rpc = 2;
    c1.lastEventAt = 1400;
    first.core.saveEvents(1400);
    const { savedAt, ...saved } = JSON.parse(store.loadEvents()!);
    expect(savedAt).toBe(1400);
    expect(saved).toEqual({ since: 1000, websocketMessages: 3, rpc: 2, http: 0, alarms: 0, wakeups: 0, awakeMs: 400, rowsWritten: store.rowsWritten });

    const second = life(MemoryStore.fromSnapshot(store.snapshot()), 60_000); // a new life: a new store on the same rows
    const c2 = second.core.counters;
    c2.wakeups = 1;
    c2.websocketMessages = 1;
    c2.lastEventAt = 60_050;
    const stats = namespaceStats(second.core);
    expect(stats.events).toEqual({ since: 1000, websocketMessages: 4, rpc: 2, http: 0, alarms: 0, wakeups: 1, awakeMs: 450, rowsWritten: saved.rowsWritten });
  });

  test("unreadable saved totals count from now again", () => {
    expect(eventsFromJson(null, 7)).toEqual(noEvents(7));
    expect(eventsFromJson("{", 7)).toEqual(noEvents(7));
    expect(eventsFromJson(JSON.stringify({ ...noEvents(1), rpc: -1 }), 7)).toEqual(noEvents(7));
    expect(eventsFromJson(JSON.stringify({ ...noEvents(1), rpc: 4 }), 7)).toEqual({ ...noEvents(1), rpc: 4 });
  });
});

describe("save schedule", () => {
  test("saved in the first event that finds the last save older than EVENTS_SAVE_INTERVAL, never in between", () => {
    const store = new MemoryStore();
    const { core } = life(store, 1000, 60);
    const saves = () => store.rowsWritten;
    core.eventSeen(1000); // never saved: saved now
    expect(saves()).toBe(1);
    expect(savedAtOf(store.loadEvents())).toBe(1000);
    for (let t = 2000; t < 61_000; t += 1000) core.eventSeen(t);
    expect(saves()).toBe(1);
    core.eventSeen(61_000);
    expect(saves()).toBe(2);
    expect(JSON.parse(store.loadEvents()!).awakeMs).toBe(60_000);
  });

  test("EVENTS_SAVE_INTERVAL 0 saves in every event", () => {
    const store = new MemoryStore();
    const { core } = life(store, 1000, 0);
    core.eventSeen(1000);
    core.eventSeen(1000);
    core.eventSeen(1001);
    expect(store.rowsWritten).toBe(3);
  });
});

test("QoS 0 traffic and pings write no row", () => {
  const store = new MemoryStore();
  const { core } = life(store, 1000);
  const frames = (clientId: string) => {
    const parser = mqtt.parser({ protocolVersion: 4 });
    const transport = { send: (b: Uint8Array) => void parser.parse(Buffer.from(b)), close: () => {}, saveAttachment: () => {} };
    const conn = new Connection(transport, core.config, { seen: 1000, at: 1000 }, core.counters);
    core.open(conn);
    const send = (p: mqtt.Packet) => core.receive(conn, new Uint8Array(mqtt.generate(p, { protocolVersion: 4 })).buffer);
    send({ cmd: "connect", clientId, protocolVersion: 4, protocolId: "MQTT", clean: true, keepalive: 60 });
    return send;
  };
  const a = frames("a");
  const b = frames("b");
  b({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t", qos: 0 }] });
  const before = store.rowsWritten;
  for (let i = 0; i < 10; i++) a({ cmd: "publish", topic: "t", payload: Buffer.from("x"), qos: 0, retain: false, dup: false });
  a({ cmd: "pingreq" });
  expect(core.counters.messagesSent).toBe(10);
  expect(store.rowsWritten).toBe(before);
});
