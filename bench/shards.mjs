// Sharded scenarios (docs/scale-out.md §11, §12): one namespace over K Durable Objects on this
// machine. One machine cannot show more total throughput (every shard shares one workerd process
// and two cores); what it shows is that each object's load falls as K grows, at what cost in
// throughput and in calls between shards.
//   BENCH_SHARDS=1,2,4,8 npm run bench   (BENCH_ONLY=shards for these alone)
import { buildSync } from "esbuild";
import { LiteClient } from "./lite-client.mjs";
import { startBroker, BENCH_LIMITS } from "./servers.mjs";
import { cpuMicros, rssBytes } from "./proc.mjs";
import { pump, counter, withTimeout } from "./scenarios.mjs";

const NAMESPACE = "bench";

/** src/shards/layout.ts, bundled for Node (the hash the Worker places hinted clients with). */
let layout;
async function loadLayout() {
  if (!layout) {
    buildSync({ entryPoints: ["src/shards/layout.ts"], bundle: true, format: "esm", platform: "node", outfile: "bench/results/layout.mjs", logLevel: "warning" });
    layout = await import(new URL("./results/layout.mjs", import.meta.url));
  }
  return layout;
}

/** `count` client ids, the i-th homed on shard i mod k (an even spread by construction). */
async function idsSpread(prefix, count, k) {
  const { home } = await loadLayout();
  const ids = [];
  let n = 0;
  for (let i = 0; i < count; i++) {
    const want = i % k;
    let id;
    do id = `${prefix}-${n++}`;
    while (home(id, k) !== want);
    ids.push(id);
  }
  return ids;
}

/** The broker with SHARDS=k; `stats(i)` reads shard i's figures over DO RPC. */
async function startSharded(k) {
  const { shardName } = await loadLayout();
  const target = await startBroker({ bindings: { ...BENCH_LIMITS, SHARDS: String(k), SHARDS_EXPERIMENTAL: "1" } });
  const ns = await target.mf.getDurableObjectNamespace("BROKER");
  target.k = k;
  target.stats = (i) => ns.get(ns.idFromName(shardName(NAMESPACE, i))).stats();
  target.allStats = () => Promise.all(Array.from({ length: k }, (_, i) => target.stats(i)));
  target.hinted = (clientId) => target.url(`?client=${encodeURIComponent(clientId)}`);
  return target;
}

const events = (s) => s.events.websocketMessages + s.events.rpc + s.events.http + s.events.alarms;
/** this shard's traffic with the others (`stats.shard` at K > 1; zeros at K = 1) */
const link = (s) => s.shard ?? s.shards ?? {};

/**
 * Per-shard differences of two readings over `seconds`. A stats call counts itself as an RPC:
 * the later reading's own call is taken off.
 */
function perShard(before, after, seconds, messages) {
  return after.map((a, i) => {
    const b = before[i];
    const d = (f) => (f(a) ?? 0) - (f(b) ?? 0);
    const rpc = d((s) => s.events.rpc) - 1;
    const ev = d(events) - 1;
    return {
      shard: i,
      connected: a.clients.connected,
      eventsPerSecond: ev / seconds,
      events: ev,
      websocketMessages: d((s) => s.events.websocketMessages),
      rpc,
      alarms: d((s) => s.events.alarms),
      rowsWritten: d((s) => s.events.rowsWritten),
      linkCalls: d((s) => link(s).linkCalls),
      linkFailures: d((s) => link(s).linkFailures),
      forwardedCopies: d((s) => link(s).forwardedCopies),
      forwardedIn: d((s) => link(s).forwardedIn),
      messagesReceived: d((s) => s.messages.received),
      messagesSent: d((s) => s.messages.sent),
      rpcPerMessage: rpc / messages,
    };
  });
}

function summary(shards, messages) {
  const sum = (f) => shards.reduce((n, s) => n + f(s), 0);
  return {
    busiestEventsPerSecond: Math.max(...shards.map((s) => s.eventsPerSecond)),
    /** the busiest shard's events per message: its load whatever the throughput */
    busiestEventsPerMessage: Math.max(...shards.map((s) => s.events)) / messages,
    rpcPerMessage: sum((s) => s.rpc) / messages,
    linkCallsPerMessage: sum((s) => s.linkCalls) / messages,
    rowsPerMessage: sum((s) => s.rowsWritten) / messages,
  };
}

/**
 * Fan-in: `pubs` publishers spread evenly over the K shards (hinted ids), one `bench/in/#`
 * subscriber on shard 0; every message checked (loss, duplicates, order per publisher). The
 * figure of the issue's target is QoS 0 (docs/scale-out.md §12 explains why QoS 1 to one
 * subscriber cannot get its shard below ≈ 62 %: all PUBACKs land there).
 */
export async function shardedFanIn(k, qos, total = Number(process.env.BENCH_SHARDS_MESSAGES ?? 50_000), pubs = 100) {
  const target = await startSharded(k);
  try {
    const perPub = total / pubs;
    const [sid] = await idsSpread("fi-sub", 1, k); // homed on shard 0
    const sub = await LiteClient.connect(target.hinted(sid), { clientId: sid });
    await sub.subscribe("bench/in/#", qos);
    const { stats, done } = counter(sub, pubs, perPub, total);
    const ids = await idsSpread("fi-pub", pubs, k);
    const publishers = [];
    for (let i = 0; i < pubs; i += 20) publishers.push(...(await Promise.all(ids.slice(i, i + 20).map((id) => LiteClient.connect(target.hinted(id), { clientId: id })))));
    const before = await target.allStats();
    const cpu0 = cpuMicros(target.pids());
    const gen0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(publishers.map((c, i) => pump(c, i, perPub, qos, `bench/in/${i}`, 50)));
    await withTimeout(done, 180_000, `fan-in K=${k}: ${stats.received}/${total} received`);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuMicros(target.pids()) - cpu0;
    const gen = process.cpuUsage(gen0);
    const after = await target.allStats();
    const shards = perShard(before, after, seconds, total);
    const rss = rssBytes(target.pids());
    await Promise.all([sub, ...publishers].map((c) => c.disconnect()));
    return {
      k,
      qos,
      messages: total,
      publishers: pubs,
      seconds,
      perSecond: total / seconds,
      received: stats.received,
      duplicates: stats.duplicates,
      outOfOrder: stats.outOfOrder,
      brokerCpuUs: cpu / total,
      generatorCpuUs: (gen.user + gen.system) / total,
      rssBytes: rss,
      rssPerShardBytes: rss / k,
      ...summary(shards, total),
      shards,
    };
  } finally {
    await target.stop();
  }
}

/**
 * `n` idle connections (hinted ids, spread by the hash as real ids would be), `concurrency` at a
 * time: time to connect, process memory growth per connection, connections and events per shard.
 * Stops early, and says how far it got, if the machine refuses more.
 */
export async function shardedConnections(k, n = Number(process.env.BENCH_SHARDS_CONNECTIONS ?? 10_000), concurrency = 100) {
  const target = await startSharded(k);
  const clients = [];
  try {
    const rss0 = rssBytes(target.pids());
    const before = await target.allStats();
    const t0 = performance.now();
    let error = null;
    for (let i = 0; i < n && !error; i += concurrency) {
      const batch = Array.from({ length: Math.min(concurrency, n - i) }, (_, j) => `conn-${i + j}`);
      const opened = await Promise.allSettled(batch.map((id) => LiteClient.connect(target.hinted(id), { clientId: id, keepalive: 0 })));
      for (const r of opened) {
        if (r.status === "fulfilled") clients.push(r.value);
        else error ??= String(r.reason?.message ?? r.reason);
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 1000));
    const rss1 = rssBytes(target.pids());
    const after = await target.allStats();
    const shards = perShard(before, after, seconds, Math.max(1, clients.length)).map((s) => ({ shard: s.shard, connected: s.connected, events: s.events, eventsPerSecond: s.eventsPerSecond }));
    return {
      k,
      requested: n,
      connections: clients.length,
      error,
      seconds,
      connectsPerSecond: clients.length / seconds,
      rssBytes: rss1,
      rssPerShardBytes: rss1 / k,
      bytesPerConnection: (rss1 - rss0) / Math.max(1, clients.length),
      busiestConnected: Math.max(...shards.map((s) => s.connected)),
      shards,
    };
  } finally {
    await Promise.all(clients.map((c) => c.terminate()));
    await target.stop();
  }
}

const fmt = (n, d = 0) => (n === undefined || n === null || Number.isNaN(n) ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }));

/** Runs the sharded scenarios for every K in `ks`; prints the tables of bench/README.md. */
export async function runSharded(ks, runs = 1) {
  const out = { fanIn: [], connections: [] };
  const median = (list, key) => [...list].sort((a, b) => a[key] - b[key])[Math.floor(list.length / 2)];
  const qosList = (process.env.BENCH_SHARDS_QOS ?? "0,1").split(",").map(Number);
  for (const qos of qosList) {
    for (const k of ks) {
      const results = [];
      for (let r = 0; r < runs; r++) {
        try {
          results.push(await shardedFanIn(k, qos));
        } catch (e) {
          results.push({ k, qos, error: String(e.message ?? e), perSecond: 0 });
        }
      }
      const m = median(results, "perSecond");
      out.fanIn.push(m);
      console.log(`  sharded fan-in QoS ${qos}, K=${k}: ${m.error ?? `${fmt(m.perSecond)} msgs/s, busiest shard ${fmt(m.busiestEventsPerSecond)} events/s, ${fmt(m.rpcPerMessage, 3)} RPC/msg`}`);
    }
  }
  for (const k of process.env.BENCH_SHARDS_CONNECTIONS === "0" ? [] : ks) {
    const r = await shardedConnections(k).catch((e) => ({ k, error: String(e.message ?? e) }));
    out.connections.push(r);
    console.log(`  sharded connections K=${k}: ${r.connections ?? 0}/${r.requested ?? "?"} in ${fmt(r.seconds, 1)} s${r.error ? ` (stopped: ${r.error})` : ""}`);
  }
  printTables(out);
  return out;
}

function printTables({ fanIn, connections }) {
  for (const qos of [0, 1]) {
    const rows = fanIn.filter((r) => r.qos === qos);
    if (rows.length === 0) continue;
    const base = rows.find((r) => r.k === 1 && !r.error);
    console.log(`\nSharded fan-in QoS ${qos}: 100 publishers spread over K shards → 1 wildcard subscriber on shard 0, ${fmt(rows[0]?.messages)} × 64 B`);
    console.log("| K | total msgs/s | vs K = 1 | busiest shard events/s | vs K = 1 | busiest shard events / msg | RPCs / 1k msgs | link calls / 1k msgs | rows / msg | workerd CPU µs / msg | workerd RSS / K (MiB) | lost / dup / out of order |");
    console.log("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (const r of rows) {
      if (r.error) {
        console.log(`| ${r.k} | error: ${r.error} ||||||||||`);
        continue;
      }
      const vs = (a, b) => (b ? `${fmt((100 * a) / b)} %` : "–");
      console.log(
        `| ${r.k} | ${fmt(r.perSecond)} | ${vs(r.perSecond, base?.perSecond)} | ${fmt(r.busiestEventsPerSecond)} | ${vs(r.busiestEventsPerSecond, base?.busiestEventsPerSecond)} | ${fmt(r.busiestEventsPerMessage, 2)} | ${fmt(r.rpcPerMessage * 1000, 2)} | ${fmt(r.linkCallsPerMessage * 1000, 2)} | ${fmt(r.rowsPerMessage, 3)} | ${fmt(r.brokerCpuUs, 1)} | ${fmt(r.rssPerShardBytes / 2 ** 20)} | ${r.messages - r.received + r.duplicates} / ${r.duplicates} / ${r.outOfOrder} |`,
      );
    }
    console.log("\nper shard (events/s · WebSocket frames · RPCs in · link calls out · copies forwarded out · applied in · rows written):");
    for (const r of rows) {
      if (r.error) continue;
      const cells = r.shards.map((s) => `#${s.shard} ${fmt(s.eventsPerSecond)}/s · ${fmt(s.websocketMessages)} · ${fmt(s.rpc)} · ${fmt(s.linkCalls)} · ${fmt(s.forwardedCopies)} · ${fmt(s.forwardedIn)} · ${fmt(s.rowsWritten)}`);
      console.log(`  K=${r.k}: ${cells.join(" | ")}`);
    }
  }
  if (connections.length === 0) return;
  console.log("\nSharded idle connections (hinted ids), 100 at a time");
  console.log("| K | connections | seconds | connects/s | workerd RSS (MiB) | RSS / K (MiB) | KiB / connection | busiest shard's connections |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of connections) {
    if (r.error && !r.connections) {
      console.log(`| ${r.k} | error: ${r.error} |||||||`);
      continue;
    }
    console.log(`| ${r.k} | ${fmt(r.connections)}${r.error ? ` (stopped: ${r.error})` : ""} | ${fmt(r.seconds, 1)} | ${fmt(r.connectsPerSecond)} | ${fmt(r.rssBytes / 2 ** 20)} | ${fmt(r.rssPerShardBytes / 2 ** 20)} | ${fmt(r.bytesPerConnection / 1024, 1)} | ${fmt(r.busiestConnected)} |`);
  }
}
