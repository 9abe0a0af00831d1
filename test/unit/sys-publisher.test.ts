// The $SYS publisher and traffic counters on the pure broker core (plain Node, a fake clock and
// an in-memory store): nobody subscribed to $SYS means no alarm at all.
import { describe, expect, test } from "vitest";
import * as mqtt from "mqtt-packet";
import { BrokerCore, type Runtime } from "../../src/broker/core";
import { Connection } from "../../src/broker/connection";
import { DEFAULTS } from "../../src/config";
import { isSysFilter, isSysTopic } from "../../src/broker/stats";
import { Authenticator } from "../../src/auth/authenticator";
import { MemoryStore } from "../../src/storage/memory-store";

function setup(sysInterval = 10) {
  let now = 1_000_000;
  const wakes: number[] = [];
  const runtime: Runtime = { now: () => now, wakeAt: (ms) => void wakes.push(ms), rearm: () => {}, later: (fn) => fn(), log: () => {} };
  const core = new BrokerCore(new MemoryStore(), { ...DEFAULTS, SYS_INTERVAL: sysInterval }, runtime, Authenticator.open());

  function client(clientId: string, opts: { clean?: boolean } = {}) {
    const received: mqtt.Packet[] = [];
    const parser = mqtt.parser({ protocolVersion: 4 });
    parser.on("packet", (p) => received.push(p));
    const transport = { send: (b: Uint8Array) => void parser.parse(Buffer.from(b)), close: () => {}, saveAttachment: () => {} };
    const conn = new Connection(transport, core.config, { seen: now, at: now }, core.counters);
    core.open(conn);
    const send = (p: mqtt.Packet) => core.receive(conn, new Uint8Array(mqtt.generate(p, { protocolVersion: 4 })).buffer);
    send({ cmd: "connect", clientId, protocolVersion: 4, protocolId: "MQTT", clean: opts.clean ?? true, keepalive: 0 });
    const publishes = () => received.filter((p): p is mqtt.IPublishPacket => p.cmd === "publish").map((p) => p.topic);
    return { conn, send, received, publishes };
  }
  return {
    core,
    wakes,
    client,
    advance(ms: number) {
      now += ms;
      return now;
    },
    get now() {
      return now;
    },
  };
}

const subscribe = (topic: string, messageId = 1): mqtt.ISubscribePacket => ({ cmd: "subscribe", messageId, subscriptions: [{ topic, qos: 0 }] });

describe("$SYS publisher", () => {
  test("traffic without $SYS subscribers arms no alarm and publishes nothing", () => {
    const t = setup();
    const a = t.client("a");
    const b = t.client("b");
    b.send(subscribe("#"));
    t.wakes.length = 0; // the connect timeouts of the two sockets
    for (let i = 0; i < 50; i++) a.send({ cmd: "publish", topic: `t/${i}`, payload: Buffer.from("x"), qos: 0, retain: false, dup: false });
    t.advance(60_000);
    t.core.alarm();
    expect(t.wakes).toEqual([]);
    expect(t.core.sys.running).toBe(false);
    expect(b.publishes()).toHaveLength(50);
  });

  test("a $SYS subscription starts it at once; it re-arms each interval while someone listens, and stops after", () => {
    const t = setup(10);
    const a = t.client("a");
    t.wakes.length = 0;
    a.send(subscribe("$SYS/broker/+/count"));
    expect(t.wakes).toEqual([t.now]); // due now, delivered on the alarm (after the SUBACK)
    expect(a.publishes()).toEqual([]);

    t.core.alarm();
    expect(a.publishes()).toEqual(["$SYS/broker/subscriptions/count", "$SYS/broker/retained messages/count"]);
    expect(t.wakes.at(-1)).toBe(t.now + 10_000);

    t.advance(4_000);
    t.core.alarm(); // woken early for something else: not due yet
    expect(a.publishes()).toHaveLength(2);
    t.advance(6_000);
    t.core.alarm();
    expect(a.publishes()).toHaveLength(4);

    a.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["$SYS/broker/+/count"] });
    t.wakes.length = 0;
    t.advance(10_000);
    t.core.alarm();
    expect(a.publishes()).toHaveLength(4);
    expect(t.wakes).toEqual([]);
    expect(t.core.sys.running).toBe(false);
  });

  test("an offline session keeping a $SYS subscription stops it; reconnecting starts it again", () => {
    const t = setup(10);
    const a = t.client("keeper", { clean: false });
    a.send(subscribe("$SYS/#"));
    t.core.alarm();
    expect(a.publishes()).toHaveLength(9);
    a.send({ cmd: "disconnect" });
    t.advance(10_000);
    t.wakes.length = 0;
    t.core.alarm();
    expect(t.core.sys.running).toBe(false);
    expect(t.wakes.filter((ms) => ms <= t.now + 10_000)).toEqual([]); // only session expiry remains

    const back = t.client("keeper", { clean: false });
    expect(t.core.sys.running).toBe(true);
    t.core.alarm();
    expect(back.publishes()).toHaveLength(9);
  });

  test("SYS_INTERVAL 0 turns $SYS off", () => {
    const t = setup(0);
    const a = t.client("a");
    t.wakes.length = 0;
    a.send(subscribe("$SYS/#"));
    t.core.alarm();
    expect(t.wakes).toEqual([]);
    expect(a.publishes()).toEqual([]);
  });

  test("values are those of the namespace", () => {
    const t = setup();
    const a = t.client("a");
    t.client("b");
    a.send({ cmd: "publish", topic: "r/1", payload: Buffer.from("keep"), qos: 0, retain: true, dup: false });
    a.send(subscribe("$SYS/#"));
    t.advance(5_000);
    t.core.alarm();
    const values = Object.fromEntries(
      a.received.filter((p): p is mqtt.IPublishPacket => p.cmd === "publish").map((p) => [p.topic, p.payload.toString()]),
    );
    expect(values).toMatchObject({
      "$SYS/broker/uptime": "5 seconds",
      "$SYS/broker/clients/connected": "2",
      "$SYS/broker/clients/total": "2",
      "$SYS/broker/subscriptions/count": "1",
      "$SYS/broker/retained messages/count": "1",
      "$SYS/broker/messages/received": "1",
      "$SYS/broker/messages/sent": "0",
    });
  });
});

describe("counters", () => {
  test("count messages and bytes both ways; a client's $SYS publish is dropped", () => {
    const t = setup();
    const a = t.client("a");
    const b = t.client("b");
    b.send(subscribe("#"));
    const c = t.core.counters;
    const before = { ...c };
    a.send({ cmd: "publish", topic: "x", payload: Buffer.from("hello"), qos: 0, retain: false, dup: false });
    expect(c.messagesReceived - before.messagesReceived).toBe(1);
    expect(c.messagesSent - before.messagesSent).toBe(1);
    expect(c.bytesReceived - before.bytesReceived).toBe(10); // 2 header + 3 topic + 5 payload
    expect(c.bytesSent - before.bytesSent).toBe(10);
    a.send({ cmd: "publish", topic: "$SYS/broker/uptime", payload: Buffer.from("0 seconds"), qos: 0, retain: true, dup: false });
    expect(c.messagesSent - before.messagesSent).toBe(1);
    expect(t.core.store.countRetained()).toBe(0);
  });
});

test("$SYS topic and filter rules", () => {
  expect(isSysTopic("$SYS/broker/uptime")).toBe(true);
  expect(isSysTopic("$SYS")).toBe(true);
  expect(isSysTopic("$SYSTEM/x")).toBe(false);
  expect(isSysTopic("a/$SYS")).toBe(false);
  expect(isSysFilter("$SYS/#")).toBe(true);
  expect(isSysFilter("$share/g/$SYS/#")).toBe(true);
  expect(isSysFilter("#")).toBe(false); // [MQTT-4.7.2-1]
  expect(isSysFilter("+/broker/uptime")).toBe(false);
});
