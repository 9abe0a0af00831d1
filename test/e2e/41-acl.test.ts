// Topic ACLs end to end: denied publishes and subscriptions per protocol version, filters
// broader than the read ACL (live, retained, wills), `$` topics, %c/%u patterns, and a session
// that changes hands.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { startBroker, connect, collect, end, type Broker } from "./harness";
import { inspectBroker, record, sleep } from "./inspect";
import { hashPassword } from "../../src/auth/password";

let broker: Broker;
const users = {
  alice: { publish: ["a/%u/#", "shared/#"], subscribe: ["a/#", "shared/#", "$SYS/#"] },
  bob: { publish: ["b/#", "shared/#"], subscribe: ["b/#", "shared/#"] },
  dev: { publish: ["devices/%c/#"], subscribe: ["devices/%c/#"] },
  root: {}, // lists from ACL_DEFAULT
};

beforeAll(async () => {
  const entries: Record<string, unknown> = {};
  for (const [name, acl] of Object.entries(users)) entries[name] = { password: await hashPassword(name, 1000), ...acl };
  broker = await startBroker({
    AUTH_MODE: "password",
    AUTH_USERS: JSON.stringify(entries),
    ACL_DEFAULT: JSON.stringify({ publish: ["#"], subscribe: ["#", "$SYS/#"] }),
  });
});
afterAll(() => broker.close());

const as = (user: keyof typeof users, opts: IClientOptions = {}) => connect(broker.url(), { username: user, password: user, ...opts });

/** The error code of a rejected publish, or "ok". */
async function publishResult(c: MqttClient, topic: string, qos: 0 | 1 | 2, retain = false): Promise<number | "ok"> {
  try {
    await c.publishAsync(topic, "x", { qos, retain });
    return "ok";
  } catch (e) {
    return (e as { code: number }).code;
  }
}

describe("publish rights", () => {
  test("MQTT 5: PUBACK/PUBREC 0x87, QoS 0 dropped; nobody receives it", async () => {
    const bob = await as("bob");
    await bob.subscribeAsync("b/#");
    const leaked = record(bob);
    const alice = await as("alice", { protocolVersion: 5 });
    expect(await publishResult(alice, "b/1", 1)).toBe(0x87);
    expect(await publishResult(alice, "b/2", 2)).toBe(0x87);
    expect(await publishResult(alice, "b/3", 0)).toBe("ok");
    expect(await publishResult(alice, "a/bob/x", 1)).toBe(0x87); // %u is alice
    expect(await publishResult(alice, "a/alice/x", 1)).toBe("ok");
    await sleep(300);
    expect(leaked).toEqual([]);
    await end(alice, bob);
  });

  test("MQTT 3.1.1: acknowledged and dropped, the connection stays", async () => {
    const bob = await as("bob");
    await bob.subscribeAsync("b/#");
    const leaked = record(bob);
    const alice = await as("alice", { protocolVersion: 4 });
    for (const qos of [0, 1, 2] as const) expect(await publishResult(alice, `b/${qos}`, qos)).toBe("ok");
    await sleep(300);
    expect(leaked).toEqual([]);
    expect(alice.connected).toBe(true);
    const got = collect(bob, 1);
    await publishResult(alice, "shared/ok", 1);
    await bob.subscribeAsync("shared/#");
    await alice.publishAsync("shared/ok", "allowed", { qos: 1 });
    expect((await got)[0]!.payload).toBe("allowed");
    await end(alice, bob);
  });

  test.each([4, 5] as const)("`$` topics are the broker's, whatever the ACL (protocol %i)", async (protocolVersion) => {
    const root = await as("root", { protocolVersion });
    const listener = await as("root", { protocolVersion: 5 });
    await listener.subscribeAsync("$SYS/#");
    const leaked = record(listener);
    expect(await publishResult(root, "$SYS/spoofed", 1)).toBe(protocolVersion === 5 ? 0x87 : "ok");
    expect(await publishResult(root, "$foo", 1, true)).toBe(protocolVersion === 5 ? 0x87 : "ok");
    await sleep(200);
    expect(leaked.filter((m) => !m.startsWith("$SYS/broker/"))).toEqual([]); // the broker's own $SYS updates aside
    expect((await inspectBroker(broker)).retained.count).toBe(0);
    await end(root, listener);
  });

  test("%c: each device its own subtree; a client id with wildcards gets nothing", async () => {
    const d1 = await as("dev", { clientId: "d1", protocolVersion: 5 });
    expect(await publishResult(d1, "devices/d1/temp", 1)).toBe("ok");
    expect(await publishResult(d1, "devices/d2/temp", 1)).toBe(0x87);
    const wild = await as("dev", { clientId: "+", protocolVersion: 5 });
    expect(await publishResult(wild, "devices/d1/temp", 1)).toBe(0x87);
    expect(await publishResult(wild, "devices/+/temp".replace("+", "x"), 1)).toBe(0x87);
    await end(d1, wild);
  });
});

describe("subscribe rights", () => {
  test.each([
    [4, 0x80],
    [5, 0x87],
  ] as const)("a filter outside the read ACL: protocol %i SUBACK %i", async (protocolVersion, code) => {
    const alice = await as("alice", { protocolVersion });
    const granted = await alice.subscribeAsync({ "b/#": { qos: 1 }, "a/#": { qos: 1 }, "$SYS/#": { qos: 0 } }).then(
      (g) => g.map((x) => x.qos as number),
      (e: { packet: { granted: number[] } }) => e.packet.granted,
    );
    expect(granted).toEqual([code, 1, 0]);
    await end(alice);
  });

  test("a filter broader than the read ACL only ever delivers readable topics (live and retained)", async () => {
    const bob = await as("bob", { protocolVersion: 5 });
    const alice = await as("alice", { protocolVersion: 5 });
    await bob.publishAsync("b/secret", "bob's", { qos: 1, retain: true });
    await alice.publishAsync("a/alice/public", "alice's", { qos: 1, retain: true });
    const wide = await as("alice", { protocolVersion: 5 });
    const retained = collect(wide, 1);
    const granted = await wide.subscribeAsync("#", { qos: 1 });
    expect(granted[0]!.qos).toBe(1);
    expect((await retained).map((m) => m.topic)).toEqual(["a/alice/public"]);
    const live = record(wide);
    await bob.publishAsync("b/secret", "live secret", { qos: 1 });
    await bob.publishAsync("shared/news", "for everyone", { qos: 1 });
    await alice.publishAsync("a/alice/more", "more", { qos: 1 });
    await sleep(300);
    expect(live).toEqual(["shared/news=for everyone", "a/alice/more=more"]);
    await bob.publishAsync("b/secret", "", { qos: 1, retain: true });
    await alice.publishAsync("a/alice/public", "", { qos: 1, retain: true });
    await end(alice, bob, wide);
  });

  test("wills follow the same rules: refused at CONNECT when not publishable, filtered on delivery", async () => {
    const will = (topic: string) => ({ topic, payload: Buffer.from("gone"), qos: 1 as const, retain: false });
    for (const [protocolVersion, code] of [
      [4, 5],
      [5, 0x87],
    ] as const) {
      await expect(as("alice", { protocolVersion, will: will("b/will") })).rejects.toMatchObject({ code });
      await expect(as("root", { protocolVersion, will: will("$SYS/fake") })).rejects.toMatchObject({ code });
    }
    const wide = await as("bob", { protocolVersion: 5 });
    await wide.subscribeAsync("#");
    const seen = record(wide);
    const reader = await as("root");
    await reader.subscribeAsync("shared/#");
    const dying = await as("root", { protocolVersion: 5, will: will("a/root/will") });
    const dying2 = await as("root", { protocolVersion: 5, will: will("shared/will") });
    const got = collect(reader, 1);
    dying.stream.destroy();
    dying2.stream.destroy();
    expect((await got)[0]!.topic).toBe("shared/will");
    // bob's "#" sees the shared will, never the one under a/
    await sleep(300);
    expect(seen).toEqual(["shared/will=gone"]);
    await end(wide, reader, dying, dying2);
  });
});

test("a session taken by a user with other rights: old subscriptions and queued messages are re-judged", async () => {
  const opts = { protocolVersion: 5 as const, clientId: "handover", clean: false, properties: { sessionExpiryInterval: 300 } };
  const first = await as("alice", opts);
  await first.subscribeAsync("#", { qos: 1 });
  await first.subscribeAsync("a/#", { qos: 1 }); // fully readable for alice, not for bob
  await end(first);
  const alice = await as("alice");
  await alice.publishAsync("a/alice/queued", "for alice's session", { qos: 1 });
  const bob = await as("bob");
  await bob.publishAsync("shared/queued", "for anyone", { qos: 1 });
  // bob resumes the session with alice's "#": he must not get a/... (queued or live)
  // listen before CONNACK: the queue is delivered right behind it
  const second = mqtt.connect(broker.url(), { username: "bob", password: "bob", reconnectPeriod: 0, ...opts });
  const got = record(second);
  await new Promise((r) => second.once("connect", r));
  await sleep(300);
  expect(got).toEqual(["shared/queued=for anyone"]);
  await alice.publishAsync("a/alice/live", "not for bob", { qos: 1 });
  await bob.publishAsync("b/live", "for bob", { qos: 1 });
  await sleep(300);
  expect(got).toEqual(["shared/queued=for anyone", "b/live=for bob"]);
  expect((await inspectBroker(broker)).problems).toEqual([]);
  await second.unsubscribeAsync(["#", "a/#"]);
  await end(second, alice, bob);
});
