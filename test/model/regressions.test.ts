// Reliability defects found by review and by the model (issue: no message lost or duplicated),
// each reproduced on BrokerCore in plain Node (test/sim) with what a client would see.
import { describe, expect, test } from "vitest";
import { SimBroker } from "../sim/broker";
import { SimClient } from "../sim/client";
import { inspect } from "../../src/broker/inspect";

const payloads = (c: SimClient) => c.received.map((r) => r.payload);
const consistent = (b: SimBroker) => expect(inspect(b.core).problems).toEqual([]);

describe("shared subscription reroute [MQTT-4.8.2]", () => {
  function setup(bWindow?: number) {
    const b = new SimBroker();
    const a = new SimClient(b, "A");
    const m = new SimClient(b, "B");
    a.connect({ version: 5, clean: false, expiry: 3600 });
    a.subscribe("$share/g/t", 1);
    m.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum: bWindow });
    m.subscribe("$share/g/t", 1);
    a.ackMode = "hold";
    const pub = new SimClient(b, "P");
    pub.connect({ version: 5 });
    pub.publish("t", "m1", 1);
    expect(payloads(a)).toEqual(["m1"]); // round robin starts with A
    return { b, a, m, pub };
  }

  test("a message A held unacknowledged goes to B at once when A drops", () => {
    const { b, a, m } = setup();
    a.drop();
    expect(payloads(m)).toEqual(["m1"]);
    consistent(b);
  });

  test("B's window full: the message waits in B's queue and goes once B acknowledges", () => {
    const { b, a, m, pub } = setup(1);
    m.ackMode = "hold";
    pub.publish("t", "m2", 1); // round robin: B
    expect(payloads(m)).toEqual(["m2"]);
    a.drop();
    expect(payloads(m)).toEqual(["m2"]);
    consistent(b);
    m.releaseAcks();
    expect(payloads(m)).toEqual(["m2", "m1"]);
    consistent(b);
  });

  test("re-sent to B after a restart when B had not acknowledged it", () => {
    const { b, a, m } = setup();
    m.ackMode = "hold";
    a.drop();
    expect(payloads(m)).toEqual(["m1"]);
    b.restart();
    consistent(b);
    m.ackMode = "auto";
    m.connect({ version: 5, clean: false, expiry: 3600 });
    expect(m.received.map((r) => [r.payload, r.dup])).toEqual([
      ["m1", false],
      ["m1", true],
    ]);
    consistent(b);
  });
});

describe("read ACLs of offline sessions", () => {
  const authVars = { ACL_DEFAULT: JSON.stringify({ subscribe: ["ok/#"] }) };

  function run(restart: boolean) {
    const b = new SimBroker({ config: { MAX_QUEUED_MESSAGES: 3 }, authVars });
    const s = new SimClient(b, "S");
    s.connect({ clean: false });
    expect(s.subscribe("#", 1)).toEqual([1]); // broader than the ACL: checked per message
    s.drop();
    if (restart) b.restart();
    const pub = new SimClient(b, "P");
    pub.connect();
    for (let i = 0; i < 3; i++) pub.publish(`secret/${i}`, "no", 1);
    pub.publish("ok/1", "yes", 1);
    s.connect({ clean: false });
    consistent(b);
    return payloads(s);
  }

  test("the same messages arrive with or without a restart", () => {
    expect(run(false)).toEqual(["yes"]);
    expect(run(true)).toEqual(["yes"]);
  });
});

describe("expired messages never displace live ones [MQTT-3.3.2-5]", () => {
  test("an offline queue of expired messages takes a fresh one", () => {
    const b = new SimBroker({ config: { MAX_QUEUED_MESSAGES: 2 } });
    const s = new SimClient(b, "S");
    s.connect({ version: 5, clean: false, expiry: 3600 });
    s.subscribe("t", 1);
    s.drop();
    const pub = new SimClient(b, "P");
    pub.connect({ version: 5 });
    pub.publish("t", "old1", 1, false, { messageExpiryInterval: 1 });
    pub.publish("t", "old2", 1, false, { messageExpiryInterval: 1 });
    b.advance(2000);
    pub.publish("t", "fresh", 1);
    s.connect({ version: 5, clean: false, expiry: 3600 });
    expect(payloads(s)).toEqual(["fresh"]);
    consistent(b);
  });

  test("a clean session's memory queue of expired messages takes a fresh one", () => {
    const b = new SimBroker({ config: { MAX_QUEUED_MESSAGES: 2 } });
    const s = new SimClient(b, "S");
    s.ackMode = "hold";
    s.connect({ version: 5, receiveMaximum: 1 });
    s.subscribe("t", 1);
    const pub = new SimClient(b, "P");
    pub.connect({ version: 5 });
    pub.publish("t", "first", 1); // in flight: the window is full
    pub.publish("t", "old1", 1, false, { messageExpiryInterval: 1 });
    pub.publish("t", "old2", 1, false, { messageExpiryInterval: 1 });
    b.advance(2000);
    pub.publish("t", "fresh", 1);
    s.ackMode = "auto";
    s.releaseAcks();
    expect(payloads(s)).toEqual(["first", "fresh"]);
  });

  test("expired retained messages do not count against the retained quota", () => {
    const b = new SimBroker({ config: { MAX_RETAINED_MESSAGES: 2 } });
    const pub = new SimClient(b, "P");
    pub.connect({ version: 5 });
    pub.publish("r/1", "a", 1, true, { messageExpiryInterval: 1 });
    pub.publish("r/2", "b", 1, true, { messageExpiryInterval: 1 });
    b.advance(2000);
    const id = pub.publish("r/3", "c", 1, true)!;
    expect((pub.ackOf(id) as { reasonCode?: number }).reasonCode).toBe(0x10); // accepted (nobody subscribes yet), not 0x97
    const s = new SimClient(b, "S");
    s.connect({ version: 5 });
    s.subscribe("r/#", 1);
    expect(payloads(s)).toEqual(["c"]);
  });
});

describe("shared groups and read ACLs", () => {
  const authVars = { ACL_DEFAULT: JSON.stringify({ subscribe: ["data/%c/#"] }) };

  test("a member that may read the topic gets it; none may: dropped and counted", () => {
    const b = new SimBroker({ authVars });
    const a = new SimClient(b, "A");
    const m = new SimClient(b, "B");
    a.connect({ version: 5 });
    a.subscribe("$share/g/data/#", 1);
    m.connect({ version: 5 });
    m.subscribe("$share/g/data/#", 1);
    const pub = new SimClient(b, "P");
    pub.connect({ version: 5 });
    for (let i = 0; i < 3; i++) pub.publish("data/B/x", `b${i}`, 1);
    expect(payloads(m)).toEqual(["b0", "b1", "b2"]);
    expect(payloads(a)).toEqual([]);
    const id = pub.publish("data/C/x", "nobody", 1)!;
    expect((pub.ackOf(id) as { reasonCode?: number }).reasonCode).toBe(0x10); // no matching subscribers
    expect(b.core.counters.messagesDropped).toBe(1);
  });
});

describe("retained backlog [MQTT-3.3.1-6]", () => {
  test("every one of 2,500 matching retained QoS 1 messages reaches a new subscriber", () => {
    const b = new SimBroker();
    const pub = new SimClient(b, "P");
    pub.connect();
    for (let i = 0; i < 2500; i++) pub.publish(`ret/${String(i).padStart(4, "0")}`, `${i}`, 1, true);
    const s = new SimClient(b, "S");
    s.connect({ version: 5 });
    s.subscribe("ret/#", 1);
    expect(s.received.length).toBe(2500);
    expect(new Set(payloads(s)).size).toBe(2500);
    expect(s.received.every((r) => r.retain)).toBe(true);
    // paced: never more than the window outstanding, never queued beyond the queue bound
    expect(b.core.sessions.get("S")!.queuedCount).toBe(0);
  });

  test("paced by the client's window: a client that stops acknowledging holds only its window", () => {
    const b = new SimBroker();
    const pub = new SimClient(b, "P");
    pub.connect();
    for (let i = 0; i < 50; i++) pub.publish(`ret/${i}`, `${i}`, 1, true);
    const s = new SimClient(b, "S");
    s.ackMode = "hold";
    s.connect({ version: 5, receiveMaximum: 10 });
    s.subscribe("ret/#", 1);
    expect(s.received.length).toBe(10);
    s.ackMode = "auto";
    s.releaseAcks();
    expect(s.received.length).toBe(50);
  });
});

describe("reconnect re-sends [MQTT-4.4.0-1, 3.3.4-9]", () => {
  function offlineWithInflight(receiveMaximum: number, big = false) {
    const b = new SimBroker();
    const s = new SimClient(b, "S");
    s.ackMode = "hold";
    s.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum });
    s.subscribe("t", 1);
    const pub = new SimClient(b, "P");
    pub.connect({ version: 5 });
    return { b, s, pub, big };
  }

  test("a message dropped on resend (too large now) does not make queued ones go out twice", () => {
    const { b, s, pub } = offlineWithInflight(2);
    pub.publish("t", "x".repeat(1000), 1);
    pub.publish("t", "small1", 1);
    pub.publish("t", "small2", 1); // waits for the window
    s.drop();
    s.received = [];
    s.ackMode = "auto";
    s.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum: 2, maximumPacketSize: 500 });
    expect(s.received.map((r) => [r.payload, r.dup])).toEqual([
      ["small1", true],
      ["small2", false],
    ]);
    consistent(b);
  });

  test("no more than the new Receive Maximum outstanding; the rest follow the acknowledgements", () => {
    const { b, s, pub } = offlineWithInflight(10);
    for (let i = 0; i < 10; i++) pub.publish("t", `m${i}`, 1);
    expect(s.received.length).toBe(10);
    s.drop();
    s.received = [];
    s.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum: 2 });
    expect(payloads(s)).toEqual(["m0", "m1"]);
    expect(s.received.every((r) => r.dup)).toBe(true);
    s.ackMode = "auto";
    s.releaseAcks();
    expect(payloads(s)).toEqual(["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"]);
    expect(s.received.every((r) => r.dup)).toBe(true);
    consistent(b);
  });
});

describe("MAX_SESSIONS", () => {
  test("a new persistent session over the limit is refused with 0x97 / 3; existing ones come back", () => {
    const b = new SimBroker({ config: { MAX_SESSIONS: 2 } });
    for (const id of ["a", "b"]) {
      const c = new SimClient(b, id);
      c.connect({ clean: false });
      c.disconnect();
    }
    expect(new SimClient(b, "c").connect({ clean: false })?.returnCode).toBe(3);
    expect(new SimClient(b, "c5").connect({ version: 5, clean: false, expiry: 60 })?.reasonCode).toBe(0x97);
    expect(new SimClient(b, "a").connect({ clean: false })?.returnCode).toBe(0);
    expect(new SimClient(b, "clean").connect({ clean: true })?.returnCode).toBe(0); // bounded by MAX_CONNECTIONS
    expect(b.core.sessions.has("c")).toBe(false);
  });
});

describe("found by the model", () => {
  test("a durable session taken up with Session Expiry 0 keeps its stored queue across a wake", () => {
    const b = new SimBroker();
    const s = new SimClient(b, "S");
    s.connect({ clean: false }); // MQTT 3.1.1 persistent: created durable
    s.subscribe("t", 1);
    s.connect({ version: 5, clean: false, expiry: 0, receiveMaximum: 1 }); // takes it over, now ends with the connection
    s.ackMode = "hold";
    const pub = new SimClient(b, "P");
    pub.connect();
    for (const m of ["a", "b", "c"]) pub.publish("t", m, 1); // "b" and "c" wait in the stored queue
    b.hibernate();
    s.ackMode = "auto";
    s.releaseAcks();
    expect(payloads(s)).toEqual(["a", "b", "c"]);
    consistent(b);
  });

  test("re-sends held back by a smaller Receive Maximum still go out after a wake", () => {
    const b = new SimBroker();
    const s = new SimClient(b, "S");
    s.ackMode = "hold";
    s.connect({ clean: false });
    s.subscribe("t", 1);
    const pub = new SimClient(b, "P");
    pub.connect();
    for (const m of ["a", "b", "c"]) pub.publish("t", m, 1);
    s.received = [];
    s.connect({ version: 5, clean: false, expiry: 3600, receiveMaximum: 2 }); // re-sends a, b; c waits
    expect(payloads(s)).toEqual(["a", "b"]);
    b.hibernate();
    s.ackMode = "auto";
    s.releaseAcks();
    expect(payloads(s)).toEqual(["a", "b", "c"]);
    consistent(b);
  });
});

describe("smaller findings", () => {
  test("MAX_INFLIGHT_BYTES bounds the bytes in flight (reloaded at every wake); one large message always goes", () => {
    for (const durable of [true, false]) {
      const b = new SimBroker({ config: { MAX_INFLIGHT_BYTES: 3000 } });
      const s = new SimClient(b, "S");
      s.ackMode = "hold";
      s.connect({ version: 5, clean: !durable, expiry: durable ? 3600 : 0 });
      s.subscribe("t", 1);
      const pub = new SimClient(b, "P");
      pub.connect();
      pub.publish("t", "x".repeat(5000), 1); // over the bound alone: sent
      pub.publish("t", "a".repeat(1000), 1);
      expect(s.received.length).toBe(1);
      s.releaseAcks();
      for (const m of ["b", "c", "d"]) pub.publish("t", m.repeat(1000), 1);
      expect(s.received.map((r) => r.payload[0])).toEqual(["x", "a", "b"]); // 2 × 1,001 bytes fit, a third does not
      expect(b.core.sessions.get("S")!.inflightBytes).toBe(2002);
      s.ackMode = "auto";
      s.releaseAcks();
      expect(s.received.map((r) => r.payload[0])).toEqual(["x", "a", "b", "c", "d"]);
      expect(b.core.sessions.get("S")!.inflightBytes).toBe(0);
    }
  });
  test("inbound topic aliases that outgrow the socket attachment survive hibernation", () => {
    const b = new SimBroker();
    const s = new SimClient(b, "S");
    s.connect({ version: 5 });
    s.subscribe("#", 0);
    const p = new SimClient(b, "P");
    p.connect({ version: 5 });
    const topics = Array.from({ length: 30 }, (_, i) => `${String(i).padStart(2, "0")}/${"x".repeat(1000)}`);
    topics.forEach((t, i) => p.publish(t, "set", 0, false, { topicAlias: i + 1 })); // 30 KB of aliases
    b.hibernate();
    topics.forEach((_, i) => p.publish("", "by-alias", 0, false, { topicAlias: i + 1 }));
    expect(p.connected).toBe(true);
    expect(s.received.filter((r) => r.payload === "by-alias").map((r) => r.topic)).toEqual(topics);
  });

  test("a PUBREC with an error code does not complete a QoS 1 delivery", () => {
    const b = new SimBroker();
    const s = new SimClient(b, "S");
    s.ackMode = "hold";
    s.connect({ version: 5, clean: false, expiry: 60 });
    s.subscribe("t", 1);
    const pub = new SimClient(b, "P");
    pub.connect();
    pub.publish("t", "q1", 1);
    const id = s.received[0]!.packetId!;
    s.send({ cmd: "pubrec", messageId: id, reasonCode: 0x80 });
    expect(b.core.sessions.get("S")!.inflight.has(id)).toBe(true);
  });

  test("a Message Expiry Interval of 0 still reaches online subscribers", () => {
    const b = new SimBroker();
    const s = new SimClient(b, "S");
    s.connect({ version: 5 });
    s.subscribe("t", 1);
    const pub = new SimClient(b, "P");
    pub.connect({ version: 5 });
    pub.publish("t", "now", 1, false, { messageExpiryInterval: 0 });
    expect(payloads(s)).toEqual(["now"]);
  });

  test("a socket the broker closed does not come back at a wake and take the session", () => {
    const b = new SimBroker();
    const old = new SimClient(b, "X");
    old.connect({ clean: false });
    const fresh = new SimClient(b, "X");
    fresh.connect({ clean: false }); // takes the session over: the old socket is closed
    expect(old.closed).not.toBeNull();
    b.hibernate({ lingering: true }); // the runtime still lists the socket it is closing
    expect(fresh.closed).toBeNull();
    expect(b.core.sessions.get("X")!.conn?.state).toBe("connected");
    consistent(b);
  });
});
