// Bridges to another MQTT broker (BRIDGES), against a real Mosquitto: messages both ways at each
// QoS, retained messages, no loops, a remote restart losing nothing at QoS 1, and clear statuses
// for a bad address or bad credentials. MQTT.js clients on both sides.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MqttClient } from "mqtt";
import { TEST_API_TOKEN, collect, connect, end, freePort, startBroker, type Broker } from "./harness";
import { expectOnlyMarker, until } from "./marker";
import { record } from "./inspect";
import { MOSQUITTO_PASSWORD, MOSQUITTO_USER, startMosquitto, type Mosquitto } from "./mosquitto";

let mosq: Mosquitto;
let broker: Broker;
let closedPort: number;
const clients: MqttClient[] = [];

const fast = { reconnectMin: 0.1, reconnectMax: 0.5 };

async function bridges(ns: string): Promise<{ bridges: Record<string, any>[]; errors: string[] }> {
  const res = await fetch(broker.http(`/api/${ns}/bridges`), { headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as { bridges: Record<string, any>[]; errors: string[] };
}

async function statusOf(ns: string, name: string): Promise<Record<string, any>> {
  const b = (await bridges(ns)).bridges.find((x) => x.name === name);
  if (!b) throw new Error(`no bridge ${name} in ${ns}`);
  return b;
}

async function linked(ns: string, name: string, timeoutMs = 10_000): Promise<Record<string, any>> {
  let last: Record<string, any> = {};
  try {
    await until(async () => {
      last = await statusOf(ns, name);
      return last.connected?.remote === true && last.connected?.local === true;
    }, `bridge ${name} to connect`, timeoutMs);
  } catch (e) {
    throw new Error(`${(e as Error).message}; last status: ${JSON.stringify(last)}`);
  }
  return last;
}

async function remote(opts: Parameters<typeof connect>[1] = {}): Promise<MqttClient> {
  const c = await connect(mosq.url, { protocolVersion: 5, ...opts });
  clients.push(c);
  return c;
}

async function local(ns: string, opts: Parameters<typeof connect>[1] = {}): Promise<MqttClient> {
  const c = await connect(broker.url(ns), { protocolVersion: 5, ...opts });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  mosq = await startMosquitto();
  closedPort = await freePort();
  const url = mosq.url;
  broker = await startBroker({
    API_TOKEN: TEST_API_TOKEN,
    REMOTE_PW: MOSQUITTO_PASSWORD,
    BRIDGES: JSON.stringify([
      { name: "b5", namespace: "site", url, version: 5, clientId: "bridge-b5", ...fast,
        out: [{ filter: "sensors/#", prefix: "site-1/", qos: 2 }], in: [{ filter: "commands/#", prefix: "from-cloud/", qos: 2 }] },
      { name: "loop5", namespace: "loop5", url, version: 5, ...fast,
        out: [{ filter: "l5/#", prefix: "", qos: 1 }], in: [{ filter: "l5/#", prefix: "", qos: 1 }] },
      { name: "loop4", namespace: "loop4", url, version: 4, ...fast,
        out: [{ filter: "l4/#", prefix: "", qos: 1 }], in: [{ filter: "l4/#", prefix: "", qos: 1 }] },
      { name: "down", namespace: "bad", url: `mqtt://127.0.0.1:${closedPort}`, ...fast, out: [{ filter: "x/#" }] },
      { name: "wrongpw", namespace: "bad", url: `mqtt://127.0.0.1:${mosq.authPort}`, username: MOSQUITTO_USER, password: "wrong", ...fast, out: [{ filter: "x/#" }] },
      { name: "nosecret", namespace: "bad", url, passwordSecret: "NOT_SET", ...fast, out: [{ filter: "x/#" }] },
      { name: "authed", namespace: "auth", url: `mqtt://127.0.0.1:${mosq.authPort}`, username: MOSQUITTO_USER, passwordSecret: "REMOTE_PW", ...fast,
        out: [{ filter: "a/#", prefix: "authed/" }] },
      { name: "persist", namespace: "persist", url, version: 4, ...fast, out: [{ filter: "p/#", prefix: "site-p/", qos: 1 }] },
      { name: "broken", namespace: "bad", url: "http://nope" },
    ]),
  });
});

afterAll(async () => {
  await end(...clients);
  await broker?.close();
  await mosq?.close();
});

describe("bridge to Mosquitto", () => {
  it("carries messages out (local → remote, under the prefix) at QoS 0, 1 and 2", async () => {
    await linked("site", "b5");
    const sub = await remote();
    await sub.subscribeAsync("site-1/sensors/#", { qos: 2 });
    const pub = await local("site");
    const got = collect(sub, 3);
    for (const qos of [0, 1, 2] as const) await pub.publishAsync(`sensors/q${qos}`, `out-${qos}`, { qos });
    const msgs = await got;
    expect(msgs.map((m) => `${m.topic}=${m.payload}@${m.packet.qos}`).sort()).toEqual(["site-1/sensors/q0=out-0@0", "site-1/sensors/q1=out-1@1", "site-1/sensors/q2=out-2@2"]);
  });

  it("carries messages in (remote → local, under the prefix) at QoS 0, 1 and 2", async () => {
    await linked("site", "b5");
    const sub = await local("site");
    await sub.subscribeAsync("from-cloud/#", { qos: 2 });
    const pub = await remote();
    const got = collect(sub, 3);
    for (const qos of [0, 1, 2] as const) await pub.publishAsync(`commands/q${qos}`, `in-${qos}`, { qos });
    const msgs = await got;
    expect(msgs.map((m) => `${m.topic}=${m.payload}@${m.packet.qos}`).sort()).toEqual([
      "from-cloud/commands/q0=in-0@0", "from-cloud/commands/q1=in-1@1", "from-cloud/commands/q2=in-2@2",
    ]);
    const s = await statusOf("site", "b5");
    expect(s.received).toBeGreaterThanOrEqual(3);
    expect(s.sent).toBeGreaterThanOrEqual(3);
    expect(s.lastError).toBeNull();
  });
});
