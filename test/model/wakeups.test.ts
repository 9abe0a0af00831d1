// Alarms are billed requests and wake a hibernated object: none may be armed earlier than the
// earliest real deadline (issue: cost). On the real core in Node (test/sim).
import { describe, expect, test } from "vitest";
import { SimBroker } from "../sim/broker";
import { SimClient } from "../sim/client";

function countAlarms(b: SimBroker): { n: number } {
  const count = { n: 0 };
  const alarm = b.core.alarm.bind(b.core);
  b.core.alarm = () => {
    count.n++;
    alarm();
  };
  return count;
}

describe("the CONNECT timeout leaves no alarm behind", () => {
  test("once the CONNECT is accepted, the alarm moves to the keep-alive deadline (1.5 × 60 s), not the CONNECT timeout (10 s)", () => {
    const b = new SimBroker();
    const c = new SimClient(b, "lone");
    const t0 = b.now;
    c.connect({ keepalive: 60 });
    expect(c.connected).toBe(true);
    expect(b.alarmAt).toBe(t0 + 90_000);
  });

  test("keep-alive 0 and a clean session: no alarm at all, the object may sleep until the next packet", () => {
    const b = new SimBroker();
    const c = new SimClient(b, "no-ka");
    c.connect({ keepalive: 0 });
    expect(b.alarmAt).toBeNull();
  });

  test("another socket still owes its CONNECT: its timeout stays armed and closes it", () => {
    const b = new SimBroker();
    const slow = new SimClient(b, "slow");
    slow.open(4); // socket open, no CONNECT
    const t0 = b.now;
    const c = new SimClient(b, "quick");
    c.connect({ keepalive: 60 });
    expect(b.alarmAt).toBe(t0 + b.config.CONNECT_TIMEOUT * 1000);
    b.advance(b.config.CONNECT_TIMEOUT * 1000);
    expect(slow.closed).not.toBeNull();
    expect(c.connected).toBe(true);
    expect(b.alarmAt).toBe(t0 + 90_000); // then the keep-alive deadline
  });

  test("a delayed will keeps its alarm when another client connects", () => {
    const b = new SimBroker();
    const w = new SimClient(b, "will");
    w.connect({ version: 5, clean: false, expiry: 3600, keepalive: 0, will: { topic: "w", payload: "gone", delay: 30 } });
    const t0 = b.now;
    w.drop();
    expect(b.alarmAt).toBe(t0 + 30_000);
    new SimClient(b, "other").connect({ keepalive: 0 });
    expect(b.alarmAt).toBe(t0 + 30_000);
  });

  test("a lone idle client pinging every keep-alive: at most one alarm per keep-alive interval, and it is closed 1.5 × keep-alive after its last ping", () => {
    const b = new SimBroker();
    const alarms = countAlarms(b);
    const c = new SimClient(b, "pinger");
    c.connect({ keepalive: 60 });
    for (let i = 0; i < 10; i++) {
      b.advance(60_000);
      c.sendRaw([0xc0, 0]);
    }
    // Moving the alarm at every PINGREQ would cost a storage operation per ping; one alarm per
    // interval at most is the price of enforcing 1.5 × keep-alive without it.
    expect(alarms.n).toBeLessThanOrEqual(10);
    const lastPing = b.now;
    b.advance(89_000);
    expect(c.connected).toBe(true);
    b.advance(2_000);
    expect(c.connected).toBe(false);
    expect(b.now - lastPing).toBeLessThanOrEqual(91_000);
  });
});

describe("no row written per PINGREQ or per QoS 0 message (rows are billed)", () => {
  test("100 PINGREQs and 100 QoS 0 messages to a subscriber, clean and persistent sessions: no row", () => {
    const b = new SimBroker({ config: { EVENTS_SAVE_INTERVAL: 3600 } });
    const sub = new SimClient(b, "sub");
    sub.connect({ version: 5, clean: false, expiry: 3600, keepalive: 60 });
    sub.subscribe("t/#", 0);
    const pub = new SimClient(b, "pub");
    pub.connect({ keepalive: 60 });
    const before = b.store.rowsWritten;
    for (let i = 0; i < 100; i++) {
      pub.sendRaw([0xc0, 0]);
      sub.sendRaw([0xc0, 0]);
      pub.publish(`t/${i % 5}`, `m${i}`, 0);
    }
    b.flushLaters();
    expect(sub.received).toHaveLength(100);
    expect(b.store.rowsWritten).toBe(before);
  });
});
