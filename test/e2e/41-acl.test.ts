// Topic ACLs end to end: denied publishes and subscriptions per protocol version, filters
// broader than the read ACL (live, retained, wills), `$` topics, %c/%u patterns, sessions that
// belong to the user who made them, and a session resumed with other rights.
// "Nothing arrived" is proven with a marker sent the same way afterwards (see marker.ts).
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { startBroker, connect, collect, end, hinted, type Broker } from "./harness";
import { inspectBroker, record } from "./inspect";
import { marker, until } from "./marker";
import { hashPassword } from "../../src/auth/password";
import { makeKeys, sign, type TestKeys } from "../jwt-helpers";

let broker: Broker;
let keys: TestKeys;
const users = {
  alice: { publish: ["a/%u/#", "shared/#"], subscribe: ["a/#", "shared/#", "$SYS/#"] },
  bob: { publish: ["b/#", "shared/#"], subscribe: ["b/#", "shared/#"] },
  dev: { publish: ["devices/%c/#"], subscribe: ["devices/%c/#"] },
  root: {}, // lists from ACL_DEFAULT
};

beforeAll(async () => {
  keys = await makeKeys();
  const entries: Record<string, unknown> = {};
  for (const [name, acl] of Object.entries(users)) entries[name] = { password: await hashPassword(name, 1000), ...acl };
  broker = await startBroker({
    AUTH_MODE: "password,jwt",
    AUTH_USERS: JSON.stringify(entries),
    JWT_SECRET: keys.secret,
    ACL_DEFAULT: JSON.stringify({ publish: ["#"], subscribe: ["#", "$SYS/#"] }),
  });
});
afterAll(() => broker.close());

const as = (user: keyof typeof users, opts: IClientOptions = {}) => connect(broker.url(), { username: user, password: user, ...opts });
/** A client with a token (HS256) carrying `claims`. */
const withToken = async (claims: Record<string, unknown>, opts: IClientOptions = {}) =>
  connect(broker.url(), { username: "whoever", password: await sign(keys, "HS256", { ns: "default", exp: Math.floor(Date.now() / 1000) + 300, ...claims }), ...opts });

/** Connects, recording messages from before CONNACK on (a resumed queue follows right behind it). */
function open(opts: IClientOptions): Promise<{ client: MqttClient; sessionPresent: boolean; got: string[] }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(hinted(broker.url(), opts.clientId), { reconnectPeriod: 0, ...opts });
    const got = record(client);
    client.once("connect", (ack) => resolve({ client, sessionPresent: ack.sessionPresent, got }));
    client.once("error", reject);
  });
}

/** The SUBACK codes of a subscription (MQTT.js rejects when one of them is a refusal). */
const subscribeCodes = (c: MqttClient, subs: Record<string, { qos: 0 | 1 | 2 }>) =>
  c.subscribeAsync(subs).then(
    (g) => g.map((x) => x.qos as number),
    (e: { packet: { granted: number[] } }) => e.packet.granted,
  );

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
    const bob = await as("root"); // reads everything
    await bob.subscribeAsync("#");
    const got = record(bob);
    const alice = await as("alice", { protocolVersion: 5 });
    expect(await publishResult(alice, "b/1", 1)).toBe(0x87);
    expect(await publishResult(alice, "b/2", 2)).toBe(0x87);
    expect(await publishResult(alice, "b/3", 0)).toBe("ok");
    expect(await publishResult(alice, "a/bob/x", 1)).toBe(0x87); // %u is alice
    expect(await publishResult(alice, "a/alice/x", 1)).toBe("ok");
    // the marker follows the refused messages from alice to the reader: only it and a/alice/x arrive
    const m = await marker(alice, bob, "shared/marker");
    expect(got).toEqual(["a/alice/x=x", m]);
    await end(alice, bob);
  });

  test("MQTT 3.1.1: acknowledged and dropped, the connection stays", async () => {
    const bob = await as("bob");
    await bob.subscribeAsync(["b/#", "shared/#"]);
    const got = record(bob);
    const alice = await as("alice", { protocolVersion: 4 });
    for (const qos of [0, 1, 2] as const) expect(await publishResult(alice, `b/${qos}`, qos)).toBe("ok");
    expect(alice.connected).toBe(true);
    // the same connection goes on publishing what it may
    await alice.publishAsync("shared/ok", "allowed", { qos: 1 });
    const m = await marker(alice, bob, "shared/marker");
    expect(got).toEqual(["shared/ok=allowed", m]);
    expect(alice.connected).toBe(true);
    await end(alice, bob);
  });

  test.each([4, 5] as const)("`$` topics are the broker's, whatever the ACL (protocol %i)", async (protocolVersion) => {
    const root = await as("root", { protocolVersion });
    const listener = await as("root", { protocolVersion: 5 });
    await listener.subscribeAsync(["$SYS/#", "m/#"]);
    const got = record(listener);
    expect(await publishResult(root, "$SYS/spoofed", 1)).toBe(protocolVersion === 5 ? 0x87 : "ok");
    expect(await publishResult(root, "$foo", 1, true)).toBe(protocolVersion === 5 ? 0x87 : "ok");
    const m = await marker(root, listener, `m/${protocolVersion}`);
    expect(got.filter((x) => !x.startsWith("$SYS/broker/"))).toEqual([m]); // the broker's own $SYS updates aside
    expect((await inspectBroker(broker)).retained.count).toBe(0);
    await end(root, listener);
  });

  test("%c: each device its own subtree; a client id with wildcards gets nothing", async () => {
    const d1 = await as("dev", { clientId: "d1", protocolVersion: 5 });
    expect(await publishResult(d1, "devices/d1/temp", 1)).toBe("ok");
    expect(await publishResult(d1, "devices/d2/temp", 1)).toBe(0x87);
    expect(await subscribeCodes(d1, { "devices/d1/#": { qos: 1 }, "devices/d2/#": { qos: 1 } })).toEqual([1, 0x87]);
    // "+" as a client id would make devices/%c/# read and write every device's subtree
    const wild = await as("dev", { clientId: "+", protocolVersion: 5 });
    expect(await publishResult(wild, "devices/d1/temp", 1)).toBe(0x87);
    expect(await subscribeCodes(wild, { "devices/d1/#": { qos: 1 }, "devices/+/temp": { qos: 1 } })).toEqual([0x87, 0x87]);
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
    // bob's publishes were acknowledged before alice's marker left: anything of them is ahead of it
    const m = await marker(bob, wide, "shared/marker");
    expect(live).toEqual(["shared/news=for everyone", "a/alice/more=more", m]);
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
    const dying = await as("root", { protocolVersion: 5, clientId: "dying-1", will: will("a/root/will") });
    const dying2 = await as("root", { protocolVersion: 5, clientId: "dying-2", will: will("shared/will") });
    const got = collect(reader, 1);
    dying.stream.destroy();
    dying2.stream.destroy();
    expect((await got)[0]!.topic).toBe("shared/will");
    // both wills went out once both sessions ended; then a marker follows them to bob's "#",
    // which sees the shared will, never the one under a/
    await until(async () => !(await inspectBroker(broker)).sessions.some((s) => s.clientId.startsWith("dying-")));
    const m = await marker(reader, wide, "shared/marker");
    expect(seen).toEqual(["shared/will=gone", m]);
    await end(wide, reader, dying, dying2);
  });
});

describe("a session belongs to the user who made it", () => {
  const phone = { clientId: "alice-phone", clean: false, properties: { sessionExpiryInterval: 300 } };

  test("another user cannot resume it, clean-start it or take it over: 0x87 / 5, and alice keeps it", async () => {
    const first = await as("alice", { protocolVersion: 5, ...phone });
    await first.subscribeAsync("a/alice/dm", { qos: 1 });
    await end(first);
    const sender = await as("root");
    await sender.publishAsync("a/alice/dm", "queued for alice", { qos: 1 });

    // bob, with his own good password, asks for alice's client id: refused whatever he asks for
    for (const clean of [false, true]) {
      await expect(as("bob", { protocolVersion: 5, ...phone, clean })).rejects.toMatchObject({ code: 0x87 });
      await expect(as("bob", { protocolVersion: 4, clientId: phone.clientId, clean })).rejects.toMatchObject({ code: 5 });
    }
    // a token naming another subject is someone else too, and so is a token without a subject
    await expect(withToken({ sub: "bob" }, { protocolVersion: 5, ...phone })).rejects.toMatchObject({ code: 0x87 });
    await expect(withToken({}, { protocolVersion: 5, ...phone })).rejects.toMatchObject({ code: 0x87 });

    // alice's session is intact: present, with her queued message
    const { client: alice, sessionPresent, got } = await open({ username: "alice", password: "alice", protocolVersion: 5, ...phone });
    expect(sessionPresent).toBe(true);
    await until(() => got.length > 0);
    expect(got).toEqual(["a/alice/dm=queued for alice"]);

    // while she is connected, bob cannot take her connection away either
    const events: string[] = [];
    alice.on("disconnect", () => events.push("disconnect"));
    alice.on("close", () => events.push("close"));
    await expect(as("bob", { protocolVersion: 5, ...phone })).rejects.toMatchObject({ code: 0x87 });
    await expect(as("bob", { protocolVersion: 4, clientId: phone.clientId })).rejects.toMatchObject({ code: 5 });
    const m = await marker(sender, alice, "a/alice/dm");
    expect(got).toEqual(["a/alice/dm=queued for alice", m]);
    expect(events).toEqual([]);
    expect(alice.connected).toBe(true);

    const state = await inspectBroker(broker);
    expect(state.problems).toEqual([]);
    expect(state.sessions.find((s) => s.clientId === phone.clientId)).toMatchObject({ connected: true, owner: "user:alice" });

    // alice herself may take it over (from another device with the same id), and by token as well
    const again = await withToken({ sub: "alice" }, { protocolVersion: 5, ...phone });
    await until(() => events.includes("close"));
    await end(again, alice, sender);
  });

  test("the owner is stored with the session: still refused after a restart", async () => {
    const opts = { protocolVersion: 5 as const, clientId: "alice-tablet", clean: false, properties: { sessionExpiryInterval: 300 } };
    const first = await as("alice", opts);
    await first.subscribeAsync("a/alice/tablet", { qos: 1 });
    await end(first);
    await broker.restart();
    await expect(as("bob", opts)).rejects.toMatchObject({ code: 0x87 });
    const alice = await open({ username: "alice", password: "alice", ...opts });
    expect(alice.sessionPresent).toBe(true);
    expect((await inspectBroker(broker)).sessions.find((s) => s.clientId === "alice-tablet")).toMatchObject({ owner: "user:alice" });
    await end(alice.client);
    const clean = await as("alice", { ...opts, clean: true, properties: {} });
    await end(clean);
  });

  test("the owner resuming with other rights: old subscriptions and queued messages are judged again", async () => {
    const opts = { protocolVersion: 5 as const, clientId: "handover", clean: false, properties: { sessionExpiryInterval: 300 } };
    const first = await as("alice", opts); // read: a/#, shared/#, $SYS/#
    await first.subscribeAsync("#", { qos: 1 });
    await first.subscribeAsync("a/#", { qos: 1 }); // fully readable with alice's password, not with the token below
    await end(first);
    const alice = await as("alice");
    await alice.publishAsync("a/alice/queued", "not for the narrow token", { qos: 1 });
    const bob = await as("bob");
    await bob.publishAsync("shared/queued", "for anyone", { qos: 1 });
    // alice comes back with a token that may only read shared/#
    const token = await sign(keys, "HS256", { ns: "default", sub: "alice", subscribe: ["shared/#"], exp: Math.floor(Date.now() / 1000) + 300 });
    const { client: second, sessionPresent, got } = await open({ username: "alice", password: token, ...opts });
    expect(sessionPresent).toBe(true);
    await alice.publishAsync("a/alice/live", "not for the token either", { qos: 1 });
    await bob.publishAsync("shared/live", "for anyone", { qos: 1 });
    const m = await marker(bob, second, "shared/marker");
    expect(got).toEqual(["shared/queued=for anyone", "shared/live=for anyone", m]);
    expect((await inspectBroker(broker)).problems).toEqual([]);
    await second.unsubscribeAsync(["#", "a/#"]);
    await end(second, alice, bob);
  });
});

describe("a client id cannot forge a pattern", () => {
  // AUTH_MODE=none: client ids and user names are the client's to choose, ACL_DEFAULT confines them
  let open: Broker;
  beforeAll(async () => {
    open = await startBroker({ ACL_DEFAULT: JSON.stringify({ publish: ["clients/%c/#"], subscribe: ["clients/%c/#"] }) });
  });
  afterAll(() => open.close());

  test("client id %u with user name +: not clients/+/#", async () => {
    const victim = await connect(open.url(), { protocolVersion: 5, clientId: "victim-1" });
    await victim.subscribeAsync("clients/victim-1/#", { qos: 1 });
    await victim.publishAsync("clients/victim-1/secret", "retained secret", { qos: 1, retain: true });
    const got = record(victim);
    const attacker = await connect(open.url(), { protocolVersion: 5, clientId: "%u", username: "+" });
    const seen = record(attacker);
    expect(await subscribeCodes(attacker, { "clients/victim-1/#": { qos: 1 }, "clients/+/secret": { qos: 1 } })).toEqual([0x87, 0x87]);
    expect(await publishResult(attacker, "clients/victim-1/cmd", 1)).toBe(0x87);
    expect(await publishResult(attacker, "clients/%u/cmd", 1)).toBe(0x87); // its own "%u" subtree is no grant either
    // the attacker's refused publishes were handled before the marker: the victim got only the marker
    const m = await marker(victim, victim, "clients/victim-1/marker");
    expect(got).toEqual([m]);
    expect(seen).toEqual([]); // nothing retained, nothing live (its subscriptions were refused)
    await victim.publishAsync("clients/victim-1/secret", "", { qos: 1, retain: true });
    await end(victim, attacker);
  });
});
