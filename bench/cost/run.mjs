// `npm run cost`: drives standard fleets against the built broker (workerd under Miniflare, on
// 127.0.0.1 only), reads the billed-event counters (stats `events`) before and after a window,
// and projects a month with bench/cost/project.mjs. Scaled down for a small machine: DEVICES
// devices (default 200) for WINDOW seconds (default 180) per fleet, projected linearly to
// TARGET devices (default 1,000). Run after `npm run build` (the script does it).
//
//   COST_DEVICES=200 COST_WINDOW=180 COST_TARGET=1000 npm run cost
import { readFileSync } from "node:fs";
import { startBroker, BENCH_LIMITS } from "../servers.mjs";
import { LiteClient, publishBytes } from "../lite-client.mjs";
import { project, awsUnits } from "./project.mjs";

const DEVICES = Number(process.env.COST_DEVICES ?? 200);
const WINDOW = Number(process.env.COST_WINDOW ?? 180); // seconds
const TARGET = Number(process.env.COST_TARGET ?? 1000);
const TOKEN = "cost-run-token";
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
async function fleet(name, { setup, aws }) {
  const broker = await startBroker({ bindings: { ...BENCH_LIMITS, API_TOKEN: TOKEN } });
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
      wakeups: d("wakeups"),
      awakeMs: d("awakeMs"),
      rowsWritten: d("rowsWritten"),
      storageBytes: broker.storageBytes(),
      connectionMinutes: (run.connections * seconds) / 60,
      awsMessages: aws(seconds),
      published: s1.messages.received - s0.messages.received,
      delivered: s1.messages.sent - s0.messages.sent,
    };
    await Promise.all(run.clients.map((c) => c.terminate()));
    return { name, seconds, measured, devices: run.devices };
  } finally {
    await broker.stop();
  }
}

/** Linear projection to TARGET devices: per-device traffic scales; the one object's awake time and alarms do not. */
function scaled(m, devices) {
  const f = TARGET / devices;
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

const usd = (n) => (n >= 100 ? `$${n.toFixed(0)}` : n >= 1 ? `$${n.toFixed(2)}` : `$${n.toFixed(4)}`);
const num = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(n < 10 ? 2 : 0));

async function main() {
  console.log(`cost run ${new Date().toISOString()}: ${DEVICES} devices per fleet, ${WINDOW} s each, projected linearly to ${TARGET} devices and a 30-day month; prices of ${prices.date}`);
  const results = [];
  results.push(
    await fleet("(a) idle, 3.1.1, keep-alive 60 s", {
      setup: idle,
      aws: () => 0, // PINGREQ/PINGRESP are not metered
    }),
  );
  results.push(
    await fleet("(c) 200 B QoS 1 reading/min → dashboard", {
      setup: readings,
      // per reading: PUBLISH in, PUBLISH out to the dashboard, the dashboard's 3.1.1 PUBACK (one 5 KB unit each)
      aws: (seconds) => ((DEVICES * seconds) / 60) * (awsUnits(200 + 16) * 2 + 1),
    }),
  );
  for (const r of results) {
    const m = r.measured;
    console.log(`\n${r.name}: measured over ${r.seconds.toFixed(0)} s with ${r.devices} devices`);
    console.log(
      `  events: websocketMessages ${m.websocketMessages}, rpc ${m.rpc}, http ${m.http}, alarms ${m.alarms}, wakeups ${m.wakeups}, awakeMs ${m.awakeMs}, rowsWritten ${m.rowsWritten}; published ${m.published}, delivered ${m.delivered}`,
    );
    const p = project(scaled(m, r.devices), r.seconds, prices);
    console.log(`  projected month, ${TARGET} devices:`);
    console.log(`  ${"provider".padEnd(11)}${"item".padEnd(14)}${"quantity".padStart(12)}  ${"unit".padEnd(20)}${"list".padStart(10)}${"after allowance".padStart(17)}`);
    for (const l of p.lines) console.log(`  ${l.provider.padEnd(11)}${l.item.padEnd(14)}${num(l.quantity).padStart(12)}  ${l.unit.padEnd(20)}${usd(l.list).padStart(10)}${usd(l.cost).padStart(17)}`);
    // awakeMs is time in memory: an upper bound of billed duration, since an idle object that can
    // hibernate is not billed even before it hibernates; the lower bound takes duration as 0.
    const low = project({ ...scaled(m, r.devices), awakeMs: 0 }, r.seconds, prices);
    console.log(`  total: Cloudflare ${usd(p.cloudflare.list)} list (${usd(p.cloudflare.cost)} after the monthly allowances; Workers Paid minimum $${prices.cloudflare.minimumPerMonth.amount} apart), AWS IoT Core ${usd(p.aws.list)} list`);
    console.log(`  AWS/Cloudflare at list prices: ${p.ratio.toFixed(1)}× with duration = awake time (upper bound), ${low.ratio.toFixed(1)}× without duration (Cloudflare ${usd(low.cloudflare.list)})`);
    r.projection = p;
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
