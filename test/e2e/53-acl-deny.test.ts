// Deny rules end to end. First exactly the Eclipse Paho interop suite's setting (AUTH_MODE none,
// ACL_DEFAULT = {"deny": {"subscribe": ["test/nosubscribe"]}}), then deny lists of users and
// tokens: publish refusals, a broader subscription that does not carry a denied topic (live and
// retained), and a will on a denied topic refused at CONNECT.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { IClientOptions, MqttClient } from "mqtt";
import { startBroker, connect, end, apiPublish, TEST_API_TOKEN, type Broker } from "./harness";
import { record } from "./inspect";
import { marker } from "./marker";
import { hashPassword } from "../../src/auth/password";
import { makeKeys, sign, type TestKeys } from "../jwt-helpers";

/** The SUBACK codes of a subscription (MQTT.js rejects when one of them is a refusal). */
const subscribeCodes = (c: MqttClient, subs: Record<string, { qos: 0 | 1 | 2 }>) =>
  c.subscribeAsync(subs).then(
    (g) => g.map((x) => x.qos as number),
    (e: { packet: { granted: number[] } }) => e.packet.granted,
  );

async function publishResult(c: MqttClient, topic: string, qos: 0 | 1 | 2): Promise<number | "ok"> {
  try {
    await c.publishAsync(topic, "x", { qos });
    return "ok";
  } catch (e) {
    return (e as { code: number }).code;
  }
}

describe("the Paho interop setting: AUTH_MODE none, ACL_DEFAULT deny subscribe test/nosubscribe", () => {
  let broker: Broker;
  beforeAll(async () => {
    broker = await startBroker({ ACL_DEFAULT: '{"deny": {"subscribe": ["test/nosubscribe"]}}', API_TOKEN: TEST_API_TOKEN });
  });
  afterAll(() => broker.close());

  test.each([
    [5, 0x87],
    [4, 0x80],
    [3, 0x80], // MQTT 3.1 (MQIsdp)
  ] as const)("protocol %i: SUBACK %i for the denied filter, other filters granted", async (protocolVersion, refused) => {
    const c = await connect(broker.url(), { protocolVersion, clientId: `paho-${protocolVersion}`, ...(protocolVersion === 3 ? { protocolId: "MQIsdp" as const } : {}) });
    expect(await subscribeCodes(c, { "test/nosubscribe": { qos: 1 } })).toEqual([refused]);
    expect(await subscribeCodes(c, { "test/nosubscribe": { qos: 2 }, "test/other": { qos: 2 }, "test/#": { qos: 1 } })).toEqual([refused, 2, 1]);
    // publishing to the topic is not denied, and the other topics work both ways
    expect(await publishResult(c, "test/nosubscribe", 1)).toBe("ok");
    const got = record(c);
    await c.publishAsync("test/other", "hello", { qos: 1 });
    await marker(c, c, "test/marker");
    expect(got.filter((m) => m.startsWith("test/other"))).toEqual(["test/other=hello"]);
    await end(c);
  });

  test("a broader subscription does not carry the denied topic: live, retained, via the HTTP API", async () => {
    const pub = await connect(broker.url(), { protocolVersion: 5 });
    await pub.publishAsync("test/nosubscribe", "retained-secret", { qos: 1, retain: true });
    await apiPublish(broker, "default", { topic: "test/visible", payload: "retained-ok", qos: 1, retain: true });
    const sub = await connect(broker.url(), { protocolVersion: 5 });
    const got = record(sub);
    expect(await subscribeCodes(sub, { "test/#": { qos: 1 } })).toEqual([1]);
    await pub.publishAsync("test/nosubscribe", "live-secret", { qos: 1 });
    await apiPublish(broker, "default", { topic: "test/nosubscribe", payload: "api-secret", qos: 1 });
    await pub.publishAsync("test/visible", "live-ok", { qos: 0 });
    const m = await marker(pub, sub, "test/marker");
    expect(got).toEqual(["test/visible=retained-ok", "test/visible=live-ok", m]);
    await pub.publishAsync("test/nosubscribe", "", { qos: 1, retain: true });
    await pub.publishAsync("test/visible", "", { qos: 1, retain: true });
    await end(pub, sub);
  });

  test("a shared subscription to the denied topic is refused too", async () => {
    const c = await connect(broker.url(), { protocolVersion: 5 });
    expect(await subscribeCodes(c, { "$share/g/test/nosubscribe": { qos: 1 } })).toEqual([0x87]);
    await end(c);
  });
});

describe("deny lists of users and tokens", () => {
  let broker: Broker;
  let keys: TestKeys;
  beforeAll(async () => {
    keys = await makeKeys();
    const users = {
      // allow a/#, but not a/secret/# (both ways), and not publishing to a/ro/#
      alice: { password: await hashPassword("alice", 1000), publish: ["a/#"], subscribe: ["a/#"], deny: { publish: ["a/ro/#", "a/secret/#"], subscribe: ["a/secret/#"] } },
      admin: { password: await hashPassword("admin", 1000) },
    };
    broker = await startBroker({
      AUTH_MODE: "password,jwt",
      AUTH_USERS: JSON.stringify(users),
      JWT_SECRET: keys.secret,
      // everyone else: anything but the per-client admin topic
      ACL_DEFAULT: JSON.stringify({ deny: { publish: ["clients/%c/admin"], subscribe: ["clients/+/admin"] } }),
    });
  });
  afterAll(() => broker.close());
  const as = (user: string, opts: IClientOptions = {}) => connect(broker.url(), { username: user, password: user, ...opts });

  test("MQTT 5: PUBACK/PUBREC 0x87 on a denied topic; MQTT 3.1.1: dropped, connection stays", async () => {
    const admin = await as("admin", { protocolVersion: 5 });
    await admin.subscribeAsync("a/#");
    const got = record(admin);
    const v5 = await as("alice", { protocolVersion: 5 });
    expect(await publishResult(v5, "a/ro/x", 1)).toBe(0x87);
    expect(await publishResult(v5, "a/secret/x", 2)).toBe(0x87);
    expect(await publishResult(v5, "a/ro/x", 0)).toBe("ok"); // QoS 0: dropped silently
    expect(await publishResult(v5, "a/rw", 1)).toBe("ok");
    const v4 = await as("alice", { protocolVersion: 4, clientId: "alice-v4" });
    expect(await publishResult(v4, "a/ro/y", 1)).toBe("ok"); // 3.1.1 cannot say no: acknowledged, dropped
    expect(await publishResult(v4, "a/rw4", 1)).toBe("ok");
    const m = await marker(v4, admin, "a/marker");
    expect(got).toEqual(["a/rw=x", "a/rw4=x", m]);
    expect(v4.connected).toBe(true);
    await end(admin, v5, v4);
  });

  test("subscribe: denied filter refused, a broader one granted without the denied topics", async () => {
    const alice = await as("alice", { protocolVersion: 5 });
    expect(await subscribeCodes(alice, { "a/secret/#": { qos: 1 }, "a/secret/x": { qos: 1 }, "a/#": { qos: 1 } })).toEqual([0x87, 0x87, 1]);
    const got = record(alice);
    const admin = await as("admin", { protocolVersion: 5 });
    await admin.publishAsync("a/secret/x", "no", { qos: 1 });
    await admin.publishAsync("a/open", "yes", { qos: 1 });
    const m = await marker(admin, alice, "a/marker");
    expect(got).toEqual(["a/open=yes", m]);
    await end(alice, admin);
  });

  test("ACL_DEFAULT deny with %c; a will on a denied topic is refused at CONNECT", async () => {
    const c = await connect(broker.url(), { protocolVersion: 5, clientId: "dev1", username: "t", password: await sign(keys, "HS256", { ns: "default", exp: Math.floor(Date.now() / 1000) + 300 }) });
    expect(await publishResult(c, "clients/dev1/admin", 1)).toBe(0x87);
    expect(await publishResult(c, "clients/dev2/admin", 1)).toBe("ok");
    expect(await subscribeCodes(c, { "clients/dev2/admin": { qos: 0 }, "clients/#": { qos: 0 } })).toEqual([0x87, 0]);
    await end(c);
    const token = await sign(keys, "HS256", { ns: "default", exp: Math.floor(Date.now() / 1000) + 300 });
    const refused = await connect(broker.url(), { protocolVersion: 5, clientId: "dev1", username: "t", password: token, will: { topic: "clients/dev1/admin", payload: Buffer.from("x"), qos: 0, retain: false } }).then(
      () => 0,
      (e: { code?: number }) => e.code,
    );
    expect(refused).toBe(0x87);
  });

  test("a token's deny claim", async () => {
    const password = await sign(keys, "HS256", { ns: "default", sub: "tok", exp: Math.floor(Date.now() / 1000) + 300, deny: { subscribe: ["x/#"], publish: ["y"] } });
    const c = await connect(broker.url(), { protocolVersion: 5, username: "t", password });
    expect(await subscribeCodes(c, { "x/1": { qos: 0 }, "z": { qos: 0 } })).toEqual([0x87, 0]);
    expect(await publishResult(c, "y", 1)).toBe(0x87);
    // the token's deny replaces ACL_DEFAULT's: its own admin topic is not denied
    expect(await subscribeCodes(c, { "clients/other/admin": { qos: 0 } })).toEqual([0]);
    await end(c);
    const bad = await sign(keys, "HS256", { ns: "default", exp: Math.floor(Date.now() / 1000) + 300, deny: { subscribe: ["x/#/y"] } });
    const code = await connect(broker.url(), { protocolVersion: 5, username: "t", password: bad }).then(
      () => 0,
      (e: { code?: number }) => e.code,
    );
    expect(code).toBe(0x86);
  });
});
