// Review findings (2026-11-27) on the day's changes: each test fails on the code it was written
// against unless marked "passes: risky path kept as coverage".
import { describe, expect, test } from "vitest";
import { SimBroker } from "../sim/broker";
import { SimClient } from "../sim/client";
import { inspect } from "../../src/broker/inspect";

const payloads = (c: SimClient) => c.received.map((r) => r.payload);
const problems = (b: SimBroker) => inspect(b.core).problems;

describe("review: resend pacing", () => {
  test("a held-back re-send dropped in resendMore does not leave the queue stuck", () => {
    const b = new SimBroker();
    const s = new SimClient(b, "S");
    s.ackMode = "hold";
    s.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum: 2 });
    s.subscribe("t", 1);
    const pub = new SimClient(b, "P");
    pub.connect({ version: 5 });
    pub.publish("t", "small1", 1);
    pub.publish("t", "x".repeat(1000), 1);
    pub.publish("t", "small3", 1); // queued behind the window
    expect(payloads(s)).toEqual(["small1", "x".repeat(1000)]);
    s.drop();
    s.received = [];
    // window 1: small1 re-sent now, the big one held back (and too large for the new maximum)
    s.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum: 1, maximumPacketSize: 500 });
    expect(payloads(s)).toEqual(["small1"]);
    s.ackMode = "auto";
    s.releaseAcks(); // PUBACK small1 -> resendMore drops the big one; the window is empty
    expect(payloads(s)).toEqual(["small1", "small3"]);
    pub.publish("t", "small4", 1);
    expect(payloads(s)).toEqual(["small1", "small3", "small4"]);
    expect(problems(b)).toEqual([]);
  });
});

describe("review: stored message bodies", () => {
  test("a clean shared member's message re-routed to a durable member is stored with a body", () => {
    const b = new SimBroker();
    const d = new SimClient(b, "D"); // durable ordinary subscriber: stores the body, then acknowledges
    d.connect({ version: 5, clean: false, expiry: 3600 });
    d.subscribe("t", 1);
    const n = new SimClient(b, "N"); // clean member, holds its message
    n.ackMode = "hold";
    n.connect({ version: 5 });
    n.subscribe("$share/g/t", 1);
    const m = new SimClient(b, "M"); // durable member
    m.ackMode = "hold";
    m.connect({ version: 5, clean: false, expiry: 3600 });
    m.subscribe("$share/g/t", 1);
    const pub = new SimClient(b, "P");
    pub.connect({ version: 5 });
    pub.publish("t", "m1", 1);
    expect(payloads(n)).toEqual(["m1"]);
    expect(payloads(d)).toEqual(["m1"]);
    b.flushLaters(); // D's acknowledged delivery (and with it the body) is removed
    n.drop(); // m1 goes to M
    expect(payloads(m)).toEqual(["m1"]);
    expect(problems(b)).toEqual([]);
    b.restart();
    m.received = [];
    m.ackMode = "auto";
    m.connect({ version: 5, clean: false, expiry: 3600 });
    expect(m.received.map((r) => [r.payload, r.dup])).toEqual([["m1", true]]);
  });
});

describe("review: MAX_INFLIGHT_BYTES", () => {
  test("a clean session's queue drained in one batch stays within MAX_INFLIGHT_BYTES", () => {
    const b = new SimBroker({ config: { MAX_INFLIGHT_BYTES: 3000 } });
    const s = new SimClient(b, "S");
    s.ackMode = "hold";
    s.connect({ version: 5 }); // clean: the memory queue
    s.subscribe("t", 1);
    const pub = new SimClient(b, "P");
    pub.connect();
    pub.publish("t", "x".repeat(5000), 1); // alone over the bound: sent
    for (const m of ["a", "b", "c", "d"]) pub.publish("t", m.repeat(1000), 1); // all wait
    expect(s.received.length).toBe(1);
    s.releaseAcks(); // x acknowledged: the queue drains
    expect(b.core.sessions.get("S")!.inflightBytes).toBeLessThanOrEqual(3000);
    expect(s.received.map((r) => r.payload[0])).toEqual(["x", "a", "b"]);
  });

  test("a retained backlog paced by the byte bound loses nothing to a small queue", () => {
    const b = new SimBroker({ config: { MAX_INFLIGHT_BYTES: 3000, MAX_QUEUED_MESSAGES: 5 } });
    const pub = new SimClient(b, "P");
    pub.connect();
    for (let i = 0; i < 20; i++) pub.publish(`r/${String(i).padStart(2, "0")}`, "x".repeat(1000), 1, true);
    const s = new SimClient(b, "S");
    s.connect({ version: 5, clean: false, expiry: 3600 });
    s.subscribe("r/#", 1);
    b.flushLaters();
    expect(s.received.length).toBe(20);
    expect(b.core.sessions.get("S")!.dropped).toBe(0);
  });
});

describe("review: shared members that end", () => {
  test("a durable member taken up with expiry 0: its stored queue of group messages is not lost when it ends", () => {
    const b = new SimBroker();
    const a = new SimClient(b, "A");
    a.connect({ clean: false }); // MQTT 3.1.1 persistent: durable
    a.subscribe("$share/g/t", 1);
    a.ackMode = "hold";
    a.connect({ version: 5, clean: false, expiry: 0, receiveMaximum: 1 }); // now ends with its connection
    const m = new SimClient(b, "B");
    m.connect({ version: 5 });
    m.subscribe("$share/g/t", 1);
    const pub = new SimClient(b, "P");
    pub.connect();
    for (const x of ["m1", "m2", "m3", "m4"]) pub.publish("t", x, 1);
    expect(payloads(a)).toEqual(["m1"]); // m3 waits in A's stored queue
    expect(payloads(m)).toEqual(["m2", "m4"]);
    a.drop(); // A's session ends: m1 (in flight) and m3 (queued) go to B
    expect(payloads(m).sort()).toEqual(["m1", "m2", "m3", "m4"]);
    expect(problems(b)).toEqual([]);
  });
});

describe("review: clean sessions across hibernation", () => {
  // Known and documented (README, "What is not promised"): a clean session's in-flight bookkeeping
  // is forgotten when the object hibernates, packet ids included. `fails` keeps the proof: it
  // turns red the day this is fixed, so the limit is not left documented by mistake.
  test.fails("after a wake a clean session does not reuse a packet id the client still holds (QoS 2 lost)", () => {
    const b = new SimBroker();
    const s = new SimClient(b, "S");
    s.ackMode = "hold"; // m1 received, PUBREC not sent yet: the client holds packet id 1
    s.connect({ version: 5 });
    s.subscribe("t", 2);
    const pub = new SimClient(b, "P");
    pub.connect();
    pub.publish("t", "m1", 2);
    expect(s.received.map((r) => [r.payload, r.packetId])).toEqual([["m1", 1]]);
    b.hibernate(); // the clean session's in-flight bookkeeping is forgotten (documented) ...
    pub.publish("t", "m2", 2); // ... but a new message must not reuse id 1 [MQTT-2.2.1-3]
    expect(s.received.map((r) => [r.payload, r.fresh])).toEqual([
      ["m1", true],
      ["m2", true],
    ]);
  });
});

describe("review: subscription replaced during its retained backlog", () => {
  test("re-subscribing with Retain Handling 1 does not cancel the retained messages still owed", () => {
    const b = new SimBroker();
    const pub = new SimClient(b, "P");
    pub.connect();
    for (const t of ["r/1", "r/2", "r/3"]) pub.publish(t, t, 1, true);
    const s = new SimClient(b, "S");
    s.ackMode = "hold";
    s.connect({ version: 5, receiveMaximum: 1 });
    s.subscribe("r/#", 1);
    expect(payloads(s)).toEqual(["r/1"]);
    s.subscribe("r/#", 1, { rh: 1 }); // replaces it; "if it does not exist": nothing new is sent
    s.ackMode = "auto";
    s.releaseAcks();
    // messages must not be lost by replacing the subscription [MQTT-3.8.4-3]
    expect(payloads(s)).toEqual(["r/1", "r/2", "r/3"]);
  });
});

describe("review: MAX_SESSIONS", () => {
  test("a clean session taken over with Clean Session 0 does not bypass MAX_SESSIONS", () => {
    const b = new SimBroker({ config: { MAX_SESSIONS: 2 } });
    for (const id of ["a", "b"]) {
      const c = new SimClient(b, id);
      c.connect({ clean: false });
      c.disconnect();
    }
    const first = new SimClient(b, "c");
    expect(first.connect({ clean: true })?.returnCode).toBe(0); // clean: bounded by MAX_CONNECTIONS
    const second = new SimClient(b, "c");
    expect(second.connect({ clean: false })?.returnCode).toBe(3); // a third persistent session
    expect(b.core.sessions.persistentCount()).toBeLessThanOrEqual(2);
  });
});

describe("review: hot-path cost", () => {
  test("changing one inbound topic alias past the attachment's size writes one row, not all of them", () => {
    const b = new SimBroker();
    const p = new SimClient(b, "P");
    p.connect({ version: 5 });
    const topics = Array.from({ length: 30 }, (_, i) => `${String(i).padStart(2, "0")}/${"x".repeat(1000)}`);
    topics.forEach((t, i) => p.publish(t, "set", 0, false, { topicAlias: i + 1 })); // 30 KB: in storage
    const before = b.store.rowsWritten;
    for (let i = 0; i < 10; i++) p.publish(i % 2 ? topics[0]! : `y/${"y".repeat(1000)}`, "flip", 0, false, { topicAlias: 1 });
    expect(p.connected).toBe(true);
    expect(b.store.rowsWritten - before).toBeLessThanOrEqual(10 * 2); // today: 10 × 31 rows
  });
});

describe("review: shared reroute after a wake", () => {
  test("a message a member holds unacknowledged still goes to another member when it drops after a hibernation", () => {
    const b = new SimBroker();
    const a = new SimClient(b, "A");
    const m = new SimClient(b, "B");
    a.connect({ version: 5, clean: false, expiry: 3600 });
    a.subscribe("$share/g/t", 1);
    m.connect({ version: 5, clean: false, expiry: 3600 });
    m.subscribe("$share/g/t", 1);
    a.ackMode = "hold";
    const pub = new SimClient(b, "P");
    pub.connect({ version: 5 });
    pub.publish("t", "m1", 1);
    expect(payloads(a)).toEqual(["m1"]);
    b.hibernate(); // ≈10 s idle: the in-flight map is rebuilt from storage, without its group
    a.drop();
    expect(payloads(m)).toEqual(["m1"]); // README: goes to another connected member
    expect(problems(b)).toEqual([]);
  });
});

describe("review: stored retained backlog out of step", () => {
  // The memory backlog drops the cursor of a replaced subscription; the stored one keeps it and
  // binds it to the new subscription at the next wake: what the client gets depends on a wake.
  function run(wake: boolean): string[] {
    const b = new SimBroker();
    const pub = new SimClient(b, "P");
    pub.connect();
    for (const t of ["r/1", "r/2", "r/3"]) pub.publish(t, t, 1, true);
    const s = new SimClient(b, "S");
    s.ackMode = "hold";
    s.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum: 1 });
    s.subscribe("r/#", 1);
    expect(payloads(s)).toEqual(["r/1"]);
    s.subscribe("r/#", 1, { rh: 2 }); // replaced: "do not send retained messages"
    if (wake) b.hibernate();
    s.ackMode = "auto";
    s.releaseAcks();
    return payloads(s);
  }

  test("a subscription replaced with Retain Handling 2 gets the same retained messages with or without a wake", () => {
    expect(run(true)).toEqual(run(false));
  });
});

describe("review: shared reroute into a full queue", () => {
  test("a re-routed message the other member's full queue refuses is not lost", () => {
    const b = new SimBroker({ config: { MAX_QUEUED_MESSAGES: 1 } });
    const a = new SimClient(b, "A");
    const m = new SimClient(b, "B");
    a.connect({ version: 5, clean: false, expiry: 3600 });
    a.subscribe("$share/g/t", 1);
    m.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum: 1 });
    m.subscribe("$share/g/t", 1);
    a.ackMode = "hold";
    m.ackMode = "hold";
    const pub = new SimClient(b, "P");
    pub.connect({ version: 5 });
    for (const x of ["m1", "m2", "m3", "m4"]) pub.publish("t", x, 1); // A: m1, m3; B: m2 (in flight), m4 (queued: full)
    expect(payloads(a)).toEqual(["m1", "m3"]);
    expect(payloads(m)).toEqual(["m2"]);
    a.drop(); // m1 and m3 re-routed to B, whose queue is full: dropped (A no longer holds them either)
    a.received = [];
    m.received = [];
    m.ackMode = "auto";
    m.releaseAcks();
    a.ackMode = "auto";
    a.connect({ version: 5, clean: false, expiry: 3600 });
    const got = new Set([...payloads(a), ...payloads(m)]);
    expect(got.has("m1") && got.has("m3")).toBe(true); // nowhere today
    expect(b.core.sessions.get("B")!.dropped).toBe(0);
  });
});

describe("review: risky paths kept as coverage (pass today)", () => {
  function retainedSetup(n: number) {
    const b = new SimBroker({ config: { RETAINED_BYTES_PER_TURN: 100 } });
    const pub = new SimClient(b, "P");
    pub.connect();
    for (let i = 0; i < n; i++) pub.publish(`r/${String(i).padStart(2, "0")}`, "x".repeat(40), 1, true);
    return b;
  }

  test("passes: a session ended by Clean Start while a `later` turn of its backlog is scheduled", () => {
    const b = retainedSetup(20);
    const s = new SimClient(b, "S");
    s.ackMode = "hold"; // (acknowledgements would continue the backlog at once)
    s.connect({ version: 5, clean: false, expiry: 3600 });
    s.subscribe("r/#", 1);
    const before = s.received.length;
    expect(before).toBeLessThan(20); // the rest in a later turn
    s.connect({ version: 5, clean: true }); // ends the session before the turn runs
    b.flushLaters();
    expect(s.received.length).toBe(before);
    expect(b.core.sessions.get("S")!.retainedBacklog).toBeNull();
    expect(problems(b)).toEqual([]);
  });

  test("passes: takeover and a restart mid-backlog: every retained message arrives", () => {
    const b = retainedSetup(20);
    const s = new SimClient(b, "S");
    s.ackMode = "hold";
    s.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum: 3 });
    s.subscribe("r/#", 1);
    s.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum: 3 }); // takeover mid-backlog
    b.restart();
    s.ackMode = "auto";
    s.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum: 3 });
    s.releaseAcks();
    b.flushLaters();
    b.flushLaters();
    const topics = new Set(s.received.map((r) => r.topic));
    expect(topics.size).toBe(20);
    expect(problems(b)).toEqual([]);
  });
});

describe("review: hot-path cost (retained pages)", () => {
  test("a sparse filter with a window of 1 reads retained rows a page at a time, not one query per row", () => {
    let reads = 0;
    const b = new SimBroker({
      wrapStore: (store) =>
        new Proxy(store, {
          get(target, prop, receiver) {
            const value = Reflect.get(target, prop, receiver);
            if (typeof value !== "function") return value;
            if (prop === "retainedAfter") return (...args: unknown[]) => (reads++, (value as (...a: unknown[]) => unknown).apply(target, args));
            return value.bind(target);
          },
        }),
    });
    const pub = new SimClient(b, "P");
    pub.connect();
    for (let i = 0; i < 300; i++) pub.publish(`a${String(i).padStart(3, "0")}/y`, "no", 1, true); // none match +/x
    pub.publish("zz/x", "yes", 1, true);
    const s = new SimClient(b, "S");
    s.ackMode = "hold";
    s.connect({ version: 5, receiveMaximum: 1 });
    reads = 0;
    s.subscribe("+/x", 1);
    expect(payloads(s)).toEqual(["yes"]);
    expect(reads).toBeLessThanOrEqual(10); // today: one query per row (limit = window - in flight = 1)
  });
});

describe("review: packet ids and deferred deletes", () => {
  test("a packet id freed by a deferred delete is not reused before the row is gone (crash before the batch)", () => {
    const b = new SimBroker();
    const s = new SimClient(b, "S");
    s.ackMode = "hold";
    s.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum: 1 });
    s.subscribe("t", 1);
    const pub = new SimClient(b, "P");
    pub.connect();
    pub.publish("t", "x".repeat(1000), 1); // in flight, packet id 1
    pub.publish("t", "small", 1); // queued
    s.drop();
    b.restart(); // packet ids count from 1 again
    // the big one is dropped on resend (too large now): its row's removal is deferred, and
    // "small" goes out in the same event with the freed packet id 1
    s.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum: 1, maximumPacketSize: 500 });
    expect(s.received.at(-1)?.payload).toBe("small");
    b.crash(); // before the deferred batch ran
    expect(problems(b)).toEqual([]);
    const st = b.core.sessions.get("S")!;
    expect(st.inflightBytes).toBe([...st.inflight.values()].reduce((n, f) => n + f.msg.payload.byteLength + f.msg.topic.length, 0));
  });
});
