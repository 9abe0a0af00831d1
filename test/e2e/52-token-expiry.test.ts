// A connection ends when the token it connected with expires: MQTT 5 gets DISCONNECT 0xA0
// (Maximum connect time) with a reason string, MQTT 3.1.1 a closed socket; the will goes out (it
// is not a normal DISCONNECT). The deadline is the alarm's, from the socket attachment: it holds
// across hibernation. There is no re-authentication (AUTH packets): a client reconnects with a
// fresh token.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { IDisconnectPacket, MqttClient } from "mqtt";
import { startBroker, connect, collect, end, type Broker } from "./harness";
import { objectUptime, uncaught } from "./inspect";
import { makeKeys, sign, type TestKeys } from "../jwt-helpers";

let broker: Broker;
let keys: TestKeys;
const nowS = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  keys = await makeKeys();
  // CONNECT_TIMEOUT=1: the last event of a new socket is over soon, so the object can hibernate
  broker = await startBroker({ AUTH_MODE: "jwt", JWT_SECRET: keys.secret, CONNECT_TIMEOUT: "1" });
});
afterAll(() => broker.close());

const token = (exp: number, claims: Record<string, unknown> = {}) => sign(keys, "HS256", { ns: "default", sub: "dev", exp, ...claims });

/** When the client's connection ended (ms), and the DISCONNECT it got, if any. */
function ended(c: MqttClient): Promise<{ at: number; disconnect: IDisconnectPacket | null }> {
  return new Promise((resolve) => {
    let disconnect: IDisconnectPacket | null = null;
    c.on("disconnect", (p) => (disconnect = p));
    c.once("close", () => resolve({ at: Date.now(), disconnect }));
  });
}

async function watcher(topic: string): Promise<MqttClient> {
  const w = await connect(broker.url(), { protocolVersion: 5, username: "w", password: await token(nowS() + 600, { sub: "watcher" }), keepalive: 0 });
  await w.subscribeAsync(topic, { qos: 1 });
  return w;
}

describe.each([5, 4] as const)("protocol %i", (protocolVersion) => {
  test("the connection ends when the token expires, and the will goes out", async () => {
    const topic = `status/expiry-${protocolVersion}`;
    const w = await watcher(topic);
    const will = collect(w, 1, 10000);
    const exp = nowS() + 3;
    const c = await connect(broker.url(), {
      protocolVersion,
      clientId: `short-lived-${protocolVersion}`,
      username: "dev",
      password: await token(exp),
      keepalive: 0,
      will: { topic, payload: Buffer.from("expired"), qos: 1, retain: false },
    });
    const { at, disconnect } = await ended(c);
    // the alarm fires at exp (whole seconds); allow the runtime a little slack
    expect(at).toBeGreaterThanOrEqual(exp * 1000 - 50);
    expect(at).toBeLessThanOrEqual(exp * 1000 + 2500);
    if (protocolVersion === 5) {
      expect(disconnect?.reasonCode).toBe(0xa0);
      expect(disconnect?.properties?.reasonString).toBe("token expired");
    } else {
      expect(disconnect).toBeNull(); // 3.1.1 has no DISCONNECT from the server
    }
    expect((await will)[0]!.payload).toBe("expired");
    // a fresh token gets back in
    const again = await connect(broker.url(), { protocolVersion, clientId: `short-lived-${protocolVersion}`, username: "dev", password: await token(nowS() + 600) });
    expect(again.connected).toBe(true);
    await end(again, w);
  }, 15000);
});

test("a token that has not expired keeps its connection (no early cut)", async () => {
  const c = await connect(broker.url(), { protocolVersion: 5, username: "dev", password: await token(nowS() + 600), keepalive: 0 });
  const other = await connect(broker.url(), { protocolVersion: 5, username: "dev", password: await token(nowS() + 2), keepalive: 0, clientId: "brief" });
  await ended(other); // the short one goes; the alarm that cut it left the long one alone
  expect(c.connected).toBe(true);
  await end(c);
}, 10000);

test("the deadline holds across hibernation: the alarm wakes a fresh object, which cuts the client from its attachment", async () => {
  const topic = "status/hibernating";
  const w = await watcher(topic);
  const will = collect(w, 1, 25000);
  // The object hibernates after ~10 s without events: the token expires at ~14 s.
  const exp = nowS() + 14;
  const c = await connect(broker.url(), { protocolVersion: 5, clientId: "sleeper", username: "dev", password: await token(exp), keepalive: 0, will: { topic, payload: Buffer.from("gone"), qos: 1, retain: false } });
  const start = Date.now();
  const { at, disconnect } = await ended(c);
  expect(disconnect?.reasonCode).toBe(0xa0);
  expect(at).toBeGreaterThanOrEqual(exp * 1000 - 50);
  expect(at).toBeLessThanOrEqual(exp * 1000 + 2500);
  expect((await will)[0]!.payload).toBe("gone");
  // the object that cut it was constructed after the client connected: it had hibernated
  expect(await objectUptime(broker)).toBeLessThan((Date.now() - start) / 1000 - 5);
  expect(w.connected).toBe(true);
  expect(uncaught(broker)).toEqual([]);
  await end(w);
}, 30000);

test("a token whose exp is beyond any alarm date (far future) connects, works, and leaves the other clients' deadlines alone", async () => {
  // exp 1e13 s is the year 318857: past what a Date (and so an alarm) can hold (8.64e15 ms)
  const far = await connect(broker.url(), { protocolVersion: 5, clientId: "forever", username: "dev", password: await token(1e13), keepalive: 0 });
  expect(far.connected).toBe(true);
  await far.subscribeAsync("far/t", { qos: 1 });
  const got = collect(far, 1, 5000);
  await far.publishAsync("far/t", "hello", { qos: 1 });
  expect((await got)[0]!.payload).toBe("hello");
  // a short token after it is still cut on time
  const exp = nowS() + 2;
  const brief = await connect(broker.url(), { protocolVersion: 5, clientId: "brief-after-far", username: "dev", password: await token(exp), keepalive: 0 });
  const { at, disconnect } = await ended(brief);
  expect(disconnect?.reasonCode).toBe(0xa0);
  expect(at).toBeLessThanOrEqual(exp * 1000 + 2500);
  expect(far.connected).toBe(true);
  expect(uncaught(broker)).toEqual([]);
  await end(far);
}, 15000);

test('a token with "exp": 1e999 (JSON reads Infinity) is refused or never cut, never an internal error', async () => {
  const { createHmac } = await import("node:crypto");
  const b64 = (s: string) => Buffer.from(s).toString("base64url");
  const input = `${b64(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64('{"ns":"default","sub":"dev","exp":1e999}')}`;
  const token = `${input}.${createHmac("sha256", keys.secret).update(input).digest("base64url")}`;
  let code = 0;
  const c = await connect(broker.url(), { protocolVersion: 5, clientId: "infinite", username: "dev", password: token, keepalive: 0 }).catch((e: { code?: number }) => {
    code = e.code ?? -1;
    return null;
  });
  if (c) {
    const gone = ended(c);
    await c.subscribeAsync("inf/t", { qos: 1 });
    const got = collect(c, 1, 5000);
    await c.publishAsync("inf/t", "x", { qos: 1 });
    expect((await got)[0]!.payload).toBe("x");
    expect(c.connected).toBe(true);
    await end(c);
    await gone;
  } else expect(code).toBe(0x86);
  expect(uncaught(broker)).toEqual([]);
  expect(broker.logs.join("\n")).not.toMatch(/internal error/);
}, 15000);
