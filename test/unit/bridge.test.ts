// Bridges (src/bridge/): BRIDGES parsing, topic mapping and the loop guard, backoff, and the
// client state machine against a scripted server (packets made and read with mqtt-packet).
import { describe, expect, test } from "vitest";
import * as mqtt from "mqtt-packet";
import { parseBridges, passwordOf, type TopicRule } from "../../src/bridge/config";
import { mapTopic, producedByOut, ruleFor } from "../../src/bridge/topics";
import { backoffDelay } from "../../src/bridge/backoff";
import { MqttClient, type Message } from "../../src/bridge/client";

const rule = (filter: string, prefix = "", qos: 0 | 1 | 2 = 1): TopicRule => ({ filter, prefix, qos, retain: true });
const one = (b: Record<string, unknown>) => JSON.stringify([{ name: "b", url: "mqtt://remote.example:1883", out: [{ filter: "a/#" }], ...b }]);

describe("BRIDGES parsing", () => {
  test("unset or empty: no bridges, no errors", () => {
    expect(parseBridges(undefined)).toEqual({ bridges: [], errors: [] });
    expect(parseBridges("")).toEqual({ bridges: [], errors: [] });
  });

  test("a complete entry, and the defaults", () => {
    const { bridges, errors } = parseBridges(
      JSON.stringify([
        {
          name: "cloud",
          namespace: "site-1",
          url: "mqtts://broker.example.com",
          clientId: "edge-1",
          username: "u",
          passwordSecret: "REMOTE_PW",
          keepalive: 30,
          version: 5,
          clean: true,
          out: [{ filter: "sensors/#", prefix: "site-1/", qos: 1 }],
          in: [{ filter: "commands/#", prefix: "from-cloud/", qos: 2, retain: false }],
        },
        { name: "ws", url: "wss://h.example/mqtt?x=1", in: [{ filter: "x" }] },
      ]),
    );
    expect(errors).toEqual([]);
    expect(bridges[0]).toMatchObject({
      name: "cloud", namespace: "site-1", transport: "tls", host: "broker.example.com", port: 8883, clientId: "edge-1",
      username: "u", passwordSecret: "REMOTE_PW", keepalive: 30, version: 5, clean: true,
      out: [{ filter: "sensors/#", prefix: "site-1/", qos: 1, retain: true }],
      in: [{ filter: "commands/#", prefix: "from-cloud/", qos: 2, retain: false }],
    });
    expect(bridges[1]).toMatchObject({
      namespace: "default", transport: "wss", port: 443, path: "/mqtt?x=1", url: "wss://h.example/mqtt?x=1", clientId: "bridge-ws",
      keepalive: 60, version: 4, clean: false, tryPrivate: true, reconnectMin: 1, reconnectMax: 60, maxInflight: 100, out: [],
    });
    expect(bridges[1]!.in[0]).toEqual({ filter: "x", prefix: "", qos: 1, retain: true });
  });

  test.each([
    ["not JSON", "[{", /BRIDGES is not valid JSON/],
    ["not an array", '{"name":"b"}', /must be a JSON array/],
    ["no name", one({ name: undefined }), /name: 1-64 characters/],
    ["bad name", one({ name: "a b" }), /name: 1-64 characters/],
    ["no url", one({ url: undefined }), /url: the remote address is required/],
    ["not a URL", one({ url: "nope" }), /url: not a URL/],
    ["unknown scheme", one({ url: "http://x" }), /url: use mqtt:\/\/, mqtts:\/\/, ws:\/\/ or wss:\/\/ \(not http:\)/],
    ["credentials in the URL", one({ url: "mqtt://u:p@x" }), /not in the URL/],
    ["bad version", one({ version: 3 }), /version: 4 \(MQTT 3.1.1\) or 5/],
    ["no rules", one({ out: [] }), /no topic rules/],
    ["bad filter", one({ out: [{ filter: "a/#/b" }] }), /out\[0\]\.filter: a valid topic filter/],
    ["shared filter", one({ in: [{ filter: "$share/g/a" }] }), /shared subscription/],
    ["wildcard prefix", one({ out: [{ filter: "a", prefix: "x/+/" }] }), /out\[0\]\.prefix/],
    ["bad qos", one({ out: [{ filter: "a", qos: 3 }] }), /out\[0\]\.qos: 0, 1 or 2/],
    ["unknown rule field", one({ out: [{ filter: "a", topic: "b" }] }), /unknown field "topic"/],
    ["unknown field", one({ passwd: "x" }), /unknown field "passwd"/],
    ["password and secret", one({ password: "a", passwordSecret: "B" }), /not both/],
    ["bad secret name", one({ passwordSecret: "a-b" }), /passwordSecret: the name of a Worker secret/],
    ["bad keepalive", one({ keepalive: -1 }), /keepalive: a number from 0 to 65535/],
    ["backoff bounds", one({ reconnectMin: 10, reconnectMax: 5 }), /reconnectMax must not be below reconnectMin/],
  ])("%s → a clear error, no bridge", (_, text, error) => {
    const { bridges, errors } = parseBridges(text);
    expect(bridges).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(error);
  });

  test("a bad entry is reported by index and name; the good ones still run; names are unique", () => {
    const { bridges, errors } = parseBridges(
      JSON.stringify([
        { name: "ok", url: "mqtt://a", out: [{ filter: "a" }] },
        { name: "bad", url: "ftp://a", out: [{ filter: "a" }] },
        { name: "ok", url: "mqtt://b", out: [{ filter: "b" }] },
      ]),
    );
    expect(bridges.map((b) => b.name)).toEqual(["ok"]);
    expect(errors).toEqual([expect.stringMatching(/^BRIDGES\[1\] \("bad"\): url:/), expect.stringMatching(/^BRIDGES\[2\] \("ok"\): the name "ok" is used twice/)]);
  });

  test("passwordSecret names a Worker secret; an unset one is a clear error", () => {
    const b = parseBridges(one({ passwordSecret: "REMOTE_PW" })).bridges[0]!;
    expect(passwordOf(b, { REMOTE_PW: "s3cret" })).toBe("s3cret");
    expect(() => passwordOf(b, {})).toThrow(/the secret REMOTE_PW \(passwordSecret\) is not set/);
    expect(passwordOf(parseBridges(one({ password: "plain" })).bridges[0]!, {})).toBe("plain");
  });
});

describe("topic mapping", () => {
  const out = [rule("sensors/#", "site-1/"), rule("alarms/+", "site-1/urgent/", 2)];
  test.each([
    ["sensors/t1", "site-1/sensors/t1"],
    ["sensors", "site-1/sensors"],
    ["alarms/fire", "site-1/urgent/alarms/fire"],
  ])("%s → %s", (topic, mapped) => {
    const r = ruleFor(out, topic);
    expect(r).not.toBeNull();
    expect(mapTopic(r!, topic)).toBe(mapped);
  });

  test("first matching rule wins; no rule, no forwarding; `$` topics are not matched by wildcards", () => {
    expect(ruleFor([rule("a/#", "1/"), rule("a/b", "2/")], "a/b")!.prefix).toBe("1/");
    expect(ruleFor(out, "alarms/fire/x")).toBeNull();
    expect(ruleFor([rule("#")], "$SYS/x")).toBeNull();
  });

  test("loop guard for 3.1.1 remotes: what an out rule could have produced", () => {
    expect(producedByOut(out, "site-1/sensors/t1")).toBe(true);
    expect(producedByOut(out, "site-1/urgent/alarms/x")).toBe(true);
    expect(producedByOut(out, "site-1/other/t1")).toBe(false);
    expect(producedByOut(out, "commands/x")).toBe(false);
    expect(producedByOut([rule("#")], "anything/at/all")).toBe(true);
  });
});

describe("backoff", () => {
  test("no wait before the first attempt; doubles from min; capped at max; jitter keeps at least half", () => {
    expect(backoffDelay(0, 1, 60)).toBe(0);
    const top = (n: number) => backoffDelay(n, 1, 60, () => 1);
    const bottom = (n: number) => backoffDelay(n, 1, 60, () => 0);
    expect([1, 2, 3, 4, 5, 6, 7, 8, 40].map(top)).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
    expect([1, 2, 7].map(bottom)).toEqual([500, 1000, 30000]);
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(3, 0.5, 10);
      expect(d).toBeGreaterThanOrEqual(1000);
      expect(d).toBeLessThanOrEqual(2000);
    }
  });
});

/** A scripted server: what the client sent, decoded; what we answer, encoded. */
function harness(version: 4 | 5 = 5) {
  const sent: mqtt.Packet[] = [];
  const parser = mqtt.parser({ protocolVersion: version });
  parser.on("packet", (p) => sent.push(p));
  const messages: [Message, () => void][] = [];
  const closed: string[] = [];
  let now = 1_000_000;
  let channelClosed = false;
  const client = new MqttClient(
    { send: (b) => void parser.parse(Buffer.from(b)), close: () => (channelClosed = true) },
    version,
    { message: (m, ack) => messages.push([m, ack]), closed: (r) => closed.push(r) },
    () => now,
  );
  const answer = (p: mqtt.Packet) => client.receive(mqtt.generate(p, { protocolVersion: version }));
  return { client, sent, messages, closed, answer, advance: (ms: number) => (now += ms), get now() { return now; }, get channelClosed() { return channelClosed; } };
}

describe("client state machine", () => {
  test("CONNECT → CONNACK: the v5 server's keep-alive and Receive Maximum are taken", async () => {
    const h = harness(5);
    const connected = h.client.connect({ clientId: "c", clean: false, keepalive: 60, username: "u", password: "p", properties: { sessionExpiryInterval: 100 } });
    expect(h.sent[0]).toMatchObject({ cmd: "connect", clientId: "c", clean: false, keepalive: 60, username: "u", protocolVersion: 5 });
    h.answer({ cmd: "connack", sessionPresent: true, reasonCode: 0, properties: { serverKeepAlive: 20, receiveMaximum: 7 } });
    expect(await connected).toEqual({ sessionPresent: true, keepalive: 20, receiveMaximum: 7 });
  });

  test("3.1.1 bridge bit: the protocol version goes out as 0x84", () => {
    const h = harness(4);
    void h.client.connect({ clientId: "c", clean: false, keepalive: 0, bridgeMode: true }).catch(() => undefined);
    expect(h.sent[0]).toMatchObject({ cmd: "connect", protocolVersion: 4, bridgeMode: true });
  });

  test("a refused CONNECT rejects with the reason and closes", async () => {
    const h = harness(4);
    const connected = h.client.connect({ clientId: "c", clean: true, keepalive: 0 });
    h.answer({ cmd: "connack", sessionPresent: false, returnCode: 4 });
    await expect(connected).rejects.toThrow(/refused the connection: bad user name or password \(0x04\)/);
    expect(h.closed).toHaveLength(1);
    expect(h.channelClosed).toBe(true);
  });

  async function connected(version: 4 | 5 = 5) {
    const h = harness(version);
    const c = h.client.connect({ clientId: "c", clean: false, keepalive: 10 });
    h.answer({ cmd: "connack", sessionPresent: false, reasonCode: 0, returnCode: 0 } as mqtt.Packet);
    await c;
    h.sent.length = 0;
    return h;
  }

  test("QoS 1 out: resolves at PUBACK; QoS 2 out: resolves at PUBREC, then PUBREL/PUBCOMP", async () => {
    const h = await connected();
    const q1 = h.client.publish({ topic: "t", payload: new Uint8Array([1]), qos: 1, retain: true });
    const q2 = h.client.publish({ topic: "t", payload: new Uint8Array([2]), qos: 2, retain: false });
    const [p1, p2] = h.sent as mqtt.IPublishPacket[];
    expect(p1).toMatchObject({ cmd: "publish", qos: 1, retain: true });
    expect(p2!.messageId).not.toBe(p1!.messageId);
    expect(h.client.inflight).toBe(2);
    h.answer({ cmd: "puback", messageId: p1!.messageId });
    expect(await q1).toBe(0);
    h.answer({ cmd: "pubrec", messageId: p2!.messageId });
    expect(await q2).toBe(0);
    expect(h.sent.at(-1)).toMatchObject({ cmd: "pubrel", messageId: p2!.messageId });
    expect(h.client.inflight).toBe(1);
    h.answer({ cmd: "pubcomp", messageId: p2!.messageId });
    expect(h.client.inflight).toBe(0);
  });

  test("a refusing PUBACK resolves with its reason code (the caller decides)", async () => {
    const h = await connected();
    const q1 = h.client.publish({ topic: "t", payload: new Uint8Array(), qos: 1, retain: false });
    h.answer({ cmd: "puback", messageId: (h.sent[0] as mqtt.IPublishPacket).messageId, reasonCode: 0x87 });
    expect(await q1).toBe(0x87);
  });

  test("inbound QoS 1 and 2 are acknowledged only when ack() is called; duplicates are not handed over twice", async () => {
    const h = await connected();
    h.answer({ cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 1, messageId: 5, retain: false, dup: false });
    h.answer({ cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 1, messageId: 5, retain: false, dup: true });
    expect(h.messages).toHaveLength(1);
    expect(h.sent).toEqual([]);
    h.messages[0]![1]();
    expect(h.sent).toMatchObject([{ cmd: "puback", messageId: 5 }]);
    h.messages[0]![1](); // twice: nothing more
    expect(h.sent).toHaveLength(1);

    h.answer({ cmd: "publish", topic: "b", payload: Buffer.from("y"), qos: 2, messageId: 6, retain: true, dup: false });
    expect(h.messages[1]![0]).toMatchObject({ topic: "b", qos: 2, retain: true });
    h.messages[1]![1]();
    expect(h.sent.at(-1)).toMatchObject({ cmd: "pubrec", messageId: 6 });
    // the server missed our PUBREC and resends: PUBREC again, not a second message
    h.answer({ cmd: "publish", topic: "b", payload: Buffer.from("y"), qos: 2, messageId: 6, retain: true, dup: true });
    expect(h.messages).toHaveLength(2);
    expect(h.sent.at(-1)).toMatchObject({ cmd: "pubrec", messageId: 6 });
    h.answer({ cmd: "pubrel", messageId: 6 });
    expect(h.sent.at(-1)).toMatchObject({ cmd: "pubcomp", messageId: 6 });
  });

  test("SUBSCRIBE carries the MQTT 5 options; SUBACK resolves with the granted codes", async () => {
    const h = await connected();
    const granted = h.client.subscribe([{ topic: "a/#", qos: 2, nl: true, rap: true, rh: 1 }]);
    expect(h.sent[0]).toMatchObject({ cmd: "subscribe", subscriptions: [{ topic: "a/#", qos: 2, nl: true, rap: true, rh: 1 }] });
    h.answer({ cmd: "suback", messageId: (h.sent[0] as mqtt.ISubscribePacket).messageId, granted: [0x87] });
    expect(await granted).toEqual([0x87]);
  });

  test("keep-alive: PINGREQ after three quarters of a quiet period, closed after 1.5 periods without an answer", async () => {
    const h = await connected();
    h.advance(7_000);
    h.client.tick(h.now);
    expect(h.sent).toEqual([]);
    h.advance(500); // three quarters of the 10 s period
    h.client.tick(h.now);
    expect(h.sent).toMatchObject([{ cmd: "pingreq" }]);
    h.client.tick(h.now + 1000);
    expect(h.sent).toHaveLength(1); // one outstanding at a time
    h.answer({ cmd: "pingresp" });
    h.advance(7_500);
    h.client.tick(h.now);
    expect(h.sent).toHaveLength(2);
    h.advance(7_500); // no answer: 15 s = 1.5 periods since the last packet from the server
    h.client.tick(h.now);
    expect(h.closed).toEqual([]);
    h.advance(1);
    h.client.tick(h.now);
    expect(h.closed[0]).toMatch(/keep-alive timeout/);
  });

  test("a close rejects what is pending; a malformed stream closes", async () => {
    const h = await connected();
    const q1 = h.client.publish({ topic: "t", payload: new Uint8Array(), qos: 1, retain: false });
    h.client.receive(new Uint8Array([0x00, 0x00])); // packet type 0 is reserved
    await expect(q1).rejects.toThrow();
    expect(h.client.state).toBe("closed");
    expect(h.closed).toHaveLength(1);
    expect(h.closed[0]).toMatch(/malformed packet from the server/);
  });
});

describe("client: UNSUBSCRIBE", () => {
  test("resolves at UNSUBACK", async () => {
    const h = harness(4);
    const c = h.client.connect({ clientId: "c", clean: false, keepalive: 0 });
    h.answer({ cmd: "connack", sessionPresent: true, returnCode: 0 });
    await c;
    const done = h.client.unsubscribe(["old/#"]);
    const sent = h.sent.at(-1) as mqtt.IUnsubscribePacket;
    expect(sent).toMatchObject({ cmd: "unsubscribe", unsubscriptions: ["old/#"] });
    h.answer({ cmd: "unsuback", messageId: sent.messageId } as mqtt.Packet);
    await expect(done).resolves.toBeUndefined();
  });
});

describe("client: the server's Maximum Packet Size", () => {
  test("a message over it is not sent (it would cost the connection) and resolves 0x95", async () => {
    const h = harness(5);
    const c = h.client.connect({ clientId: "c", clean: false, keepalive: 0 });
    h.answer({ cmd: "connack", sessionPresent: false, reasonCode: 0, properties: { maximumPacketSize: 64 } });
    await c;
    h.sent.length = 0;
    expect(await h.client.publish({ topic: "t", payload: new Uint8Array(100), qos: 1, retain: false })).toBe(0x95);
    expect(await h.client.publish({ topic: "t", payload: new Uint8Array(100), qos: 0, retain: false })).toBe(0x95);
    expect(h.sent).toEqual([]);
    expect(h.client.inflight).toBe(0);
    const small = h.client.publish({ topic: "t", payload: new Uint8Array(10), qos: 1, retain: false });
    expect(h.sent).toHaveLength(1);
    h.answer({ cmd: "puback", messageId: (h.sent[0] as mqtt.IPublishPacket).messageId });
    expect(await small).toBe(0);
  });
});
