// Authentication end to end: password users and JWTs, refusals with the right CONNACK code for
// each protocol version, and a refused client leaving nothing behind.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { IClientOptions } from "mqtt";
import { startBroker, connect, collect, end, SHARDED, type Broker } from "./harness";
import { RawClient } from "./raw";
import { inspectBroker, closedWithin, record } from "./inspect";
import { marker, until } from "./marker";
import { hashPassword } from "../../src/auth/password";
import { makeKeys, sign, type TestKeys } from "../jwt-helpers";
import { encode } from "../packets";

let broker: Broker;
let keys: TestKeys;
const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  keys = await makeKeys();
  const users = {
    alice: { password: await hashPassword("wonderland") }, // the real 100,000 iterations
    bob: { password: await hashPassword("builder", 1000), namespaces: ["team-b"] },
  };
  broker = await startBroker({
    AUTH_MODE: "password,jwt",
    AUTH_USERS: JSON.stringify(users),
    JWT_SECRET: keys.secret,
    JWT_PUBLIC_KEY: JSON.stringify({ keys: [keys.ecPublic, keys.rsaPublic] }),
    JWT_ISSUER: "https://issuer.test",
    // every client here comes from 127.0.0.1 and many fail on purpose: the throttles have their own tests (46-dos)
    AUTH_FAILURE_BURST: "1000",
  });
});
afterAll(() => broker.close());

/** The CONNACK refusal code MQTT.js reports, or 0 when the connection was accepted. */
async function refusal(opts: IClientOptions, ns?: string): Promise<number> {
  try {
    const c = await connect(broker.url(ns), opts);
    await end(c);
    return 0;
  } catch (e) {
    return (e as { code?: number }).code ?? -1;
  }
}

const token = (claims: Record<string, unknown>, alg: "HS256" | "RS256" | "ES256" = "ES256") =>
  sign(keys, alg, { iss: "https://issuer.test", exp: now() + 300, ns: "default", ...claims }, {});

describe.each([
  [4, { bad: 4, denied: 5 }],
  [5, { bad: 0x86, denied: 0x87 }],
] as const)("protocol %i", (protocolVersion, codes) => {
  test("user name and password", async () => {
    expect(await refusal({ protocolVersion, username: "alice", password: "wonderland" })).toBe(0);
    expect(await refusal({ protocolVersion, username: "alice", password: "Wonderland" })).toBe(codes.bad);
    expect(await refusal({ protocolVersion, username: "mallory", password: "wonderland" })).toBe(codes.bad);
    expect(await refusal({ protocolVersion, username: "alice" })).toBe(codes.bad);
    expect(await refusal({ protocolVersion })).toBe(codes.bad);
  });

  test("a user limited to another namespace", async () => {
    expect(await refusal({ protocolVersion, username: "bob", password: "builder" })).toBe(codes.denied);
    expect(await refusal({ protocolVersion, username: "bob", password: "builder" }, "team-b")).toBe(0);
  });

  test.each(["HS256", "RS256", "ES256"] as const)("JWT %s in the password field", async (alg) => {
    expect(await refusal({ protocolVersion, username: "any", password: await token({}, alg) })).toBe(0);
  });

  test("bad tokens", async () => {
    const opts = async (claims: Record<string, unknown>) => ({ protocolVersion, username: "any", password: await token(claims) });
    expect(await refusal(await opts({ exp: now() - 5 }))).toBe(codes.bad);
    expect(await refusal(await opts({ nbf: now() + 300 }))).toBe(codes.bad);
    expect(await refusal(await opts({ iss: "https://evil.test" }))).toBe(codes.bad);
    const forged = (await token({})).slice(0, -4) + "AAAA";
    expect(await refusal({ protocolVersion, username: "any", password: forged })).toBe(codes.bad);
  });

  test("a JWT for one namespace is refused in another", async () => {
    const t = await token({ ns: "team-a" });
    expect(await refusal({ protocolVersion, username: "any", password: t }, "team-a")).toBe(0);
    expect(await refusal({ protocolVersion, username: "any", password: t }, "team-b")).toBe(codes.denied);
    expect(await refusal({ protocolVersion, username: "any", password: t })).toBe(codes.denied);
  });

  test("a JWT pins the client id", async () => {
    const t = await token({ client_id: `pinned-${protocolVersion}` });
    expect(await refusal({ protocolVersion, clientId: `pinned-${protocolVersion}`, username: "any", password: t })).toBe(0);
    expect(await refusal({ protocolVersion, clientId: "someone-else", username: "any", password: t })).toBe(codes.denied);
  });
});

test("MQTT 5 enhanced authentication: 0x8C", async () => {
  expect(await refusal({ protocolVersion: 5, properties: { authenticationMethod: "SCRAM-SHA-256" } })).toBe(0x8c);
});

test("a refused client cannot take over a session, leaves no will and no session", async () => {
  const owner = await connect(broker.url(), { protocolVersion: 5, clientId: "victim", clean: false, properties: { sessionExpiryInterval: 300 }, username: "alice", password: "wonderland" });
  await owner.subscribeAsync("victim/inbox", { qos: 1 });
  const watcher = await connect(broker.url(), { protocolVersion: 5, username: "alice", password: "wonderland" });
  await watcher.subscribeAsync("wills/#");
  const leaked = record(watcher);

  for (const protocolVersion of [4, 5] as const) {
    // same client id, a will, a wrong password
    const will = { topic: "wills/intruder", payload: Buffer.from("boom"), qos: 1 as const, retain: true };
    expect(await refusal({ protocolVersion, clientId: "victim", clean: true, will, username: "alice", password: "guess" })).toBe(protocolVersion === 5 ? 0x86 : 4);
    expect(await refusal({ protocolVersion, clientId: "intruder", will, username: "alice", password: "guess" })).toBe(protocolVersion === 5 ? 0x86 : 4);
  }
  // the refused sockets are gone (a will would have gone out as they ended); a marker then
  // follows any will to the watcher: only the marker arrives
  await until(async () => (await inspectBroker(broker)).connections.every((c) => c.state === "connected"));
  const m = await marker(owner, watcher, "wills/marker");
  expect(leaked).toEqual([m]);
  // the owner still holds its session and gets its messages
  expect(owner.connected).toBe(true);
  const got = collect(owner, 1);
  await watcher.publishAsync("victim/inbox", "still yours", { qos: 1 });
  expect((await got)[0]!.payload).toBe("still yours");

  const state = await inspectBroker(broker);
  expect(state.problems).toEqual([]);
  expect(state.sessions.map((s) => s.clientId)).not.toContain("intruder");
  expect(state.sessions.find((s) => s.clientId === "victim")).toMatchObject({ connected: true, will: null, subscriptions: ["victim/inbox"] });
  await end(owner, watcher);
});

test.each([4, 5] as const)("packets sent behind CONNECT wait for the verdict and keep their order (protocol %i)", async (v) => {
  const c = await RawClient.open(broker.url(), v);
  c.sendBytes(
    Uint8Array.from([
      ...encode({ cmd: "connect", protocolId: "MQTT", protocolVersion: v, clientId: `eager-${v}`, clean: true, keepalive: 0, username: "alice", password: Buffer.from("wonderland") }, v),
      ...encode({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: `eager/${v}`, qos: 1 }] }, v),
      ...encode({ cmd: "publish", topic: `eager/${v}`, payload: Buffer.from("mine"), qos: 1, messageId: 2, retain: false, dup: false }, v),
      ...encode({ cmd: "pingreq" }, v),
    ]),
  );
  const seen: string[] = [];
  for (let i = 0; i < 5; i++) seen.push((await c.next()).cmd);
  // the publish is routed after the subscription existed: our own message comes back. At K > 1
  // the SUBACK waits until the other shards route the filter here; the rest goes on meanwhile.
  if (SHARDED) {
    expect(seen.filter((p) => p !== "suback")).toEqual(["connack", "publish", "puback", "pingresp"]);
    expect(seen).toContain("suback");
  } else expect(seen).toEqual(["connack", "suback", "publish", "puback", "pingresp"]);
  c.destroy();
});

test.each([4, 5] as const)("packets behind a refused CONNECT are never processed (protocol %i)", async (v) => {
  const watcher = await connect(broker.url(), { username: "alice", password: "wonderland" });
  await watcher.subscribeAsync("behind/#");
  const leaked = record(watcher);
  const c = await RawClient.open(broker.url(), v);
  c.sendBytes(
    Uint8Array.from([
      ...encode({ cmd: "connect", protocolId: "MQTT", protocolVersion: v, clientId: `refused-${v}`, clean: true, keepalive: 0, username: "alice", password: Buffer.from("nope") }, v),
      ...encode({ cmd: "publish", topic: "behind/x", payload: Buffer.from("sneaky"), qos: 0, retain: true, dup: false }, v),
    ]),
  );
  const ack = (await c.next()) as { cmd: string; returnCode?: number; reasonCode?: number };
  expect(ack.cmd).toBe("connack");
  expect(v === 5 ? ack.reasonCode : ack.returnCode).toBe(v === 5 ? 0x86 : 4);
  expect(await closedWithin(c, 2000)).not.toBe("open");
  // had the publish been processed, it would have been routed before the socket closed: ahead of the marker
  const m = await marker(watcher, watcher, "behind/marker");
  expect(leaked).toEqual([m]);
  const state = await inspectBroker(broker);
  expect(state.retained.count).toBe(0);
  expect(state.sessions.map((s) => s.clientId)).not.toContain(`refused-${v}`);
  await end(watcher);
});

test("a JWT without `sub` gets no %u: the MQTT user name does not stand in for it", async () => {
  const claims = { publish: ["users/%u/#"], subscribe: ["users/%u/#", "public/#"] };
  const c = await connect(broker.url(), { protocolVersion: 5, username: "alice", password: await token(claims) });
  const codes = await c.subscribeAsync({ "users/alice/#": { qos: 1 }, "public/#": { qos: 1 } }).then(
    (g) => g.map((x) => x.qos as number),
    (e: { packet: { granted: number[] } }) => e.packet.granted,
  );
  expect(codes).toEqual([0x87, 1]);
  await expect(c.publishAsync("users/alice/inbox", "forged", { qos: 1 })).rejects.toMatchObject({ code: 0x87 });
  await end(c);
  // with `sub`, %u is the subject
  const named = await connect(broker.url(), { protocolVersion: 5, username: "alice", password: await token({ ...claims, sub: "dev-7" }) });
  expect((await named.subscribeAsync("users/dev-7/#", { qos: 1 }))[0]!.qos).toBe(1);
  await named.publishAsync("users/dev-7/inbox", "mine", { qos: 1 });
  await end(named);
});
