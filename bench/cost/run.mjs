// `npm run cost`: drives standard fleets against the built broker (workerd under Miniflare, on
// 127.0.0.1 only), reads the billed-event counters (stats `events`) before and after a window,
// and projects a month with bench/cost/project.mjs. Scaled down for a small machine: DEVICES
// devices (default 200) for WINDOW seconds (default 180) per fleet, projected linearly to
// TARGET devices (default 1,000). Run after `npm run build` (the script does it).
//
//   COST_DEVICES=200 COST_WINDOW=180 COST_TARGET=1000 npm run cost
import { readFileSync } from "node:fs";
import mqtt from "mqtt";
import mqttPacket from "mqtt-packet";
import { createWebsocket } from "../../client/node-websocket.mjs";
import { startBroker, BENCH_LIMITS } from "../servers.mjs";
import { LiteClient, publishBytes } from "../lite-client.mjs";
import { project, awsUnits } from "./project.mjs";

const DEVICES = Number(process.env.COST_DEVICES ?? 200);
const WINDOW = Number(process.env.COST_WINDOW ?? 180); // seconds
const TARGET = Number(process.env.COST_TARGET ?? 1000);
const TOKEN = "cost-run-token";
/** The broker's keep-alive policy in fleet (b): MQTT 5 devices asking for less are told this. */
const MIN_KEEPALIVE = Number(process.env.COST_MIN_KEEPALIVE ?? 300);
/** Fleet (d): messages a second from one Node backend through MQTT.js. */
const BACKEND_RATE = 100;
/** Which fleets to run (e.g. COST_FLEETS=b,d); default all. */
const FLEETS = (process.env.COST_FLEETS ?? "a,b,c,d,d+").split(",");
const prices = JSON.parse(readFileSync(new URL("./prices.json", import.meta.url), "utf8"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function stats(broker) {
  const url = broker.url().replace(/^ws:/, "http:").replace(/\/mqtt\/bench.*$/, "/api/bench/stats");
  const res = await fetch(url, { headers: { Authorization: `Bearer ${TOKEN}` } });
  if (!res.ok) throw new Error(`stats: ${res.status} ${await res.text()}`);
  return res.json();
}

/** Connects `n` devices (MQTT 3.1.1), a few at a time. */
async function connectAll(broker, n, opts) {
  const clients = [];
  for (let i = 0; i < n; i += 20) {
    const batch = [];
    for (let k = i; k < Math.min(n, i + 20); k++) batch.push(LiteClient.connect(broker.url(), { clientId: `dev-${k}`, clean: true, keepalive: 60, version: 4, ...opts }));
    clients.push(...(await Promise.all(batch)));
  }
  return clients;
}

/**
 * Runs `drive(clients, broker)` for WINDOW seconds between two stats readings; returns the
 * measured deltas. `aws(windowSeconds)`: the AWS-metered messages of the traffic driven.
 */
async function fleet(name, { setup, aws, vars = {}, scale = true, savesInEveryEvent = false }) {
  const broker = await startBroker({ bindings: { ...BENCH_LIMITS, API_TOKEN: TOKEN, ...vars } });
  try {
    const run = await setup(broker);
    await sleep(2000); // connections settled
    const s0 = await stats(broker);
    const t0 = Date.now();
    await sleep(WINDOW * 1000);
    const s1 = await stats(broker);
    const seconds = (Date.now() - t0) / 1000;
    run.stop();
    const d = (k) => s1.events[k] - s0.events[k];
    const measured = {
      websocketMessages: d("websocketMessages"),
      rpc: d("rpc") - 1, // the second stats reading counts itself
      http: d("http"),
      alarms: d("alarms"),
      // the second reading itself wakes an object that hibernated (its life is then under 2 s old)
      wakeups: d("wakeups") - (s1.uptime < 2 && s1.events.wakeups > s0.events.wakeups ? 1 : 0),
      awakeMs: d("awakeMs"),
      // with EVENTS_SAVE_INTERVAL=0 every event wrote the totals' row: those rows are the measurement's, not the broker's
      rowsWritten: d("rowsWritten") - (savesInEveryEvent ? d("websocketMessages") + d("rpc") + d("http") + d("alarms") + d("wakeups") : 0),
      storageBytes: broker.storageBytes(),
      connectionMinutes: (run.connections * seconds) / 60,
      awsMessages: aws(seconds),
      published: s1.messages.received - s0.messages.received,
      delivered: s1.messages.sent - s0.messages.sent,
    };
    await Promise.all(run.clients.map((c) => c.terminate()));
    return { name, seconds, measured, devices: run.devices, scale, note: run.note?.() };
  } finally {
    await broker.stop();
  }
}

/** Linear projection to TARGET devices: per-device traffic scales; the one object's awake time and alarms do not. */
function scaled(m, devices, scale = true) {
  const f = scale ? TARGET / devices : 1;
  return {
    ...m,
    websocketMessages: m.websocketMessages * f,
    rowsWritten: m.rowsWritten * f,
    connectionMinutes: m.connectionMinutes * f,
    awsMessages: m.awsMessages * f,
  };
}

// (a) idle devices, MQTT 3.1.1, keep-alive 60 s: a PINGREQ a minute each (free on AWS)
async function idle(broker) {
  const clients = await connectAll(broker, DEVICES);
  const timers = clients.map((c) => {
    const t = setTimeout(() => {
      c.send(Buffer.from([0xc0, 0]));
      t2.ref = setInterval(() => c.send(Buffer.from([0xc0, 0])), 60_000);
    }, Math.random() * 60_000);
    const t2 = { t, ref: null };
    return t2;
  });
  return {
    clients,
    devices: DEVICES,
    connections: DEVICES,
    stop: () => timers.forEach((x) => (clearTimeout(x.t), clearInterval(x.ref))),
  };
}

// (b) the same idle devices on MQTT 5, asking for keep-alive 60 s; the broker's MIN_KEEPALIVE
// tells them a longer one (Server Keep Alive in CONNACK), and they ping at what they were told.
async function idleV5(broker) {
  const clients = await connectAll(broker, DEVICES, { version: 5 });
  const told = new Map();
  const timers = clients.map((c) => {
    const ka = serverKeepAlive(c.connack) ?? 60;
    told.set(ka, (told.get(ka) ?? 0) + 1);
    const x = { t: null, ref: null };
    x.t = setTimeout(() => {
      c.send(Buffer.from([0xc0, 0]));
      x.ref = setInterval(() => c.send(Buffer.from([0xc0, 0])), ka * 1000);
    }, Math.random() * ka * 1000);
    return x;
  });
  return {
    clients,
    devices: DEVICES,
    connections: DEVICES,
    note: () => `keep-alive told in CONNACK: ${[...told].map(([ka, n]) => `${ka} s × ${n}`).join(", ")}`,
    stop: () => timers.forEach((x) => (clearTimeout(x.t), clearInterval(x.ref))),
  };
}

/** Server Keep Alive of an MQTT 5 CONNACK (bytes), if any. */
function serverKeepAlive(connackBytes) {
  let found;
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  parser.on("packet", (p) => (found = p.properties?.serverKeepAlive));
  parser.parse(connackBytes);
  return found;
}

// (d) a Node backend publishing 100 msgs/s (200 B, QoS 1) through MQTT.js, to one subscriber;
// MQTT.js over Node's ws sends each packet as several frames unless given the client helper.
function backend(helper) {
  return async (broker) => {
    const sub = await LiteClient.connect(broker.url(), { clientId: "consumer", clean: true, keepalive: 0, version: 4 });
    await sub.subscribe("backend/#", 1);
    let received = 0;
    sub.onPublish = () => received++;
    const client = mqtt.connect(broker.url(), { clientId: "backend", keepalive: 60, reconnectPeriod: 0, protocolVersion: 4, ...(helper ? { createWebsocket } : {}) });
    await new Promise((resolve, reject) => (client.once("connect", resolve), client.once("error", reject)));
    const payload = Buffer.alloc(200, 0x62);
    let sent = 0;
    const timer = setInterval(() => {
      client.publish(`backend/${sent++ % 10}`, payload, { qos: 1 });
    }, 1000 / BACKEND_RATE);
    return {
      clients: [sub, { terminate: () => new Promise((r) => client.end(true, {}, r)) }],
      devices: 1,
      connections: 2,
      note: () => `MQTT.js ${helper ? "with" : "without"} client/node-websocket.mjs; ${sent} published, ${received} received`,
      stop: () => clearInterval(timer),
    };
  };
}

// (c) one 200-byte QoS 1 reading a minute per device, to one dashboard subscriber (QoS 1)
async function readings(broker) {
  const dashboard = await LiteClient.connect(broker.url(), { clientId: "dashboard", clean: true, keepalive: 0, version: 4 });
  await dashboard.subscribe("fleet/+/reading", 1);
  const clients = await connectAll(broker, DEVICES);
  const payload = Buffer.alloc(200, 0x61);
  let id = 0;
  const timers = clients.map((c, i) => {
    const msg = publishBytes(`fleet/${i}/reading`, payload, 1);
    const send = () => c.send(msg.withId((id = (id % 65535) + 1)));
    const x = { t: null, ref: null };
    x.t = setTimeout(() => {
      send();
      x.ref = setInterval(send, 60_000);
    }, Math.random() * 60_000);
    return x;
  });
  return {
    clients: [...clients, dashboard],
    devices: DEVICES,
    connections: DEVICES + 1,
    stop: () => timers.forEach((x) => (clearTimeout(x.t), clearInterval(x.ref))),
  };
}

/** per message: PUBLISH in, PUBLISH out, the subscriber's PUBACK (MQTT.js's PUBACK from the broker is outbound) */
const backendAws = (seconds) => BACKEND_RATE * seconds * (awsUnits(200 + 16) * 2 + 1);

const usd = (n) => (n >= 100 ? `$${n.toFixed(0)}` : n >= 1 ? `$${n.toFixed(2)}` : `$${n.toFixed(4)}`);
const num = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(n < 10 ? 2 : 0));

async function main() {
  console.log(`cost run ${new Date().toISOString()}: ${DEVICES} devices per fleet, ${WINDOW} s each, projected linearly to ${TARGET} devices and a 30-day month; prices of ${prices.date}`);
  const results = [];
  const runs = {
    a: () =>
      fleet("(a) idle, 3.1.1, keep-alive 60 s", {
        setup: idle,
        aws: () => 0, // PINGREQ/PINGRESP are not metered
      }),
    b: () =>
      fleet(`(b) idle, MQTT 5 asking 60 s, MIN_KEEPALIVE ${MIN_KEEPALIVE} s`, {
        setup: idleV5,
        // So few pings that the object hibernates between them, and a life's unsaved totals would
        // be lost: saved in every event here, those saves' rows taken out again (savesInEveryEvent).
        vars: { MIN_KEEPALIVE: String(MIN_KEEPALIVE), EVENTS_SAVE_INTERVAL: "0" },
        savesInEveryEvent: true,
        aws: () => 0,
      }),
    c: () =>
      fleet("(c) 200 B QoS 1 reading/min → dashboard", {
        setup: readings,
        // per reading: PUBLISH in, PUBLISH out to the dashboard, the dashboard's 3.1.1 PUBACK (one 5 KB unit each)
        aws: (seconds) => ((DEVICES * seconds) / 60) * (awsUnits(200 + 16) * 2 + 1),
      }),
    // one backend, not a fleet: projected as measured, not scaled to TARGET devices
    d: () => fleet(`(d) Node backend, MQTT.js, ${BACKEND_RATE} msgs/s QoS 1, no helper`, { setup: backend(false), scale: false, aws: backendAws }),
    "d+": () => fleet(`(d) Node backend, MQTT.js, ${BACKEND_RATE} msgs/s QoS 1, with createWebsocket`, { setup: backend(true), scale: false, aws: backendAws }),
  };
  for (const key of FLEETS) {
    if (!runs[key]) throw new Error(`unknown fleet ${key}: use a, b, c, d, d+`);
    results.push(await runs[key]());
  }
  for (const r of results) {
    const m = r.measured;
    console.log(`\n${r.name}: measured over ${r.seconds.toFixed(0)} s with ${r.devices} device(s)${r.note ? `; ${r.note}` : ""}`);
    console.log(
      `  events: websocketMessages ${m.websocketMessages}, rpc ${m.rpc}, http ${m.http}, alarms ${m.alarms}, wakeups ${m.wakeups}, awakeMs ${m.awakeMs}, rowsWritten ${m.rowsWritten}; published ${m.published}, delivered ${m.delivered}`,
    );
    const inbound = m.published + (m.delivered > 0 ? m.delivered : 0); // packets in: PUBLISH, and the subscriber's PUBACK per QoS 1 delivery
    if (r.name.startsWith("(d)")) {
      // the consumer's PUBACKs are one frame each (LiteClient): the rest are the backend's frames
      const perPublish = (m.websocketMessages - m.delivered) / Math.max(1, m.published);
      console.log(`  WebSocket messages per inbound MQTT packet: ${(m.websocketMessages / Math.max(1, inbound)).toFixed(2)}; per PUBLISH from the backend: ${perPublish.toFixed(2)}`);
    }
    const p = project(scaled(m, r.devices, r.scale), r.seconds, prices);
    console.log(`  projected month, ${r.scale ? `${TARGET} devices` : "as measured"}:`);
    console.log(`  ${"provider".padEnd(11)}${"item".padEnd(14)}${"quantity".padStart(12)}  ${"unit".padEnd(20)}${"list".padStart(10)}${"after allowance".padStart(17)}`);
    for (const l of p.lines) console.log(`  ${l.provider.padEnd(11)}${l.item.padEnd(14)}${num(l.quantity).padStart(12)}  ${l.unit.padEnd(20)}${usd(l.list).padStart(10)}${usd(l.cost).padStart(17)}`);
    // awakeMs is time in memory: an upper bound of billed duration, since an idle object that can
    // hibernate is not billed even before it hibernates; the lower bound takes duration as 0.
    const low = project({ ...scaled(m, r.devices, r.scale), awakeMs: 0 }, r.seconds, prices);
    console.log(`  total: Cloudflare ${usd(p.cloudflare.list)} list (${usd(p.cloudflare.cost)} after the monthly allowances; Workers Paid minimum $${prices.cloudflare.minimumPerMonth.amount} apart), AWS IoT Core ${usd(p.aws.list)} list`);
    console.log(`  AWS/Cloudflare at list prices: ${p.ratio.toFixed(1)}× with duration = awake time (upper bound), ${low.ratio.toFixed(1)}× without duration (Cloudflare ${usd(low.cloudflare.list)})`);
    r.projection = p;
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
