// npm run bench: our broker, the raw relay DO and Aedes over WebSocket, side by side, in one run.
//   BENCH_RUNS=3            runs per throughput figure (the median is reported)
//   BENCH_ONLY=fanin,will   run only these scenarios
//   BENCH_SHARDS=1,2,4,8    also the sharded scenarios (bench/shards.mjs), at these K; off by default
import { writeFileSync, mkdirSync } from "node:fs";
import os from "node:os";
import { startBroker, startRelay, startAedes } from "./servers.mjs";
import * as S from "./scenarios.mjs";
import { runSharded } from "./shards.mjs";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const ONLY = process.env.BENCH_ONLY?.split(",");
const SHARDS = process.env.BENCH_SHARDS?.split(",").map(Number).filter((k) => Number.isInteger(k) && k >= 1);

const scenarios = [
  { key: "fanin", name: "fan-in QoS 0 (4 → 1, 50k × 64 B)", targets: ["broker", "relay", "aedes"], run: (t) => S.fanIn(t, 0), metric: "perSecond" },
  { key: "fanin", name: "fan-in QoS 1 (4 → 1, 50k × 64 B)", targets: ["broker", "relay", "aedes"], run: (t) => S.fanIn(t, 1), metric: "perSecond" },
  { key: "fanout", name: "fan-out QoS 0 (1 → 50, 10k × 64 B)", targets: ["broker", "relay", "aedes"], run: (t) => S.fanOut(t, 0), metric: "perSecond" },
  { key: "fanout", name: "fan-out QoS 1 (1 → 50, 10k × 64 B)", targets: ["broker", "relay", "aedes"], run: (t) => S.fanOut(t, 1), metric: "perSecond" },
  { key: "latency", name: "latency at 1,000 msg/s (ms)", targets: ["broker", "relay", "aedes"], run: (t) => S.latency(t), metric: "p99", lowerIsBetter: true, runs: Math.max(RUNS, 5), warmup: true },
  { key: "idle", name: "2,000 idle connections", targets: ["broker", "relay", "aedes"], run: (t) => S.idleConnections(t), metric: "bytesPerConnection", lowerIsBetter: true, fresh: true },
  { key: "retained", name: "5,000 retained → new subscriber", targets: ["broker", "aedes"], run: (t) => S.retained(t), metric: "seconds", lowerIsBetter: true },
  { key: "will", name: "will: socket loss / keep-alive 2 s (ms)", targets: ["broker", "aedes"], run: (t) => S.will(t), metric: "keepAliveOvershootMs", lowerIsBetter: true },
  { key: "sessions", name: "persistent: 100 offline subs × 10k QoS 1", targets: ["broker", "aedes"], run: (t) => S.persistentSessions(t), metric: "deliveriesPerSecond", runs: 1 },
];

const starters = { broker: startBroker, relay: startRelay, aedes: startAedes };

function median(results, metric) {
  const sorted = [...results].sort((a, b) => a[metric] - b[metric]);
  return sorted[Math.floor(sorted.length / 2)];
}

const fmt = (n, d = 0) => (n === undefined || n === null ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }));

const report = { date: new Date().toISOString(), machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`, runs: RUNS, results: [] };
console.log(`# benchmark ${report.date} — ${report.machine}; runner: Miniflare (workerd) for broker and relay, Node for Aedes; median of ${RUNS}`);

for (const sc of scenarios) {
  if (ONLY && !ONLY.includes(sc.key)) continue;
  const row = { scenario: sc.name, metric: sc.metric, byTarget: {} };
  for (const name of sc.targets) {
    // `fresh`: a new process per run (memory figures would otherwise reuse the last run's heap)
    const start = () => starters[name]();
    let target = await start();
    const runs = [];
    try {
      // `warmup`: one unrecorded run first (a fresh process's first run is still compiling its path)
      if (sc.warmup) await sc.run(target);
      for (let i = 0; i < (sc.runs ?? RUNS); i++) {
        if (sc.fresh && i > 0) {
          await target.stop();
          target = await start();
        }
        runs.push(await sc.run(target));
      }
      row.byTarget[name] = median(runs, sc.metric);
    } catch (e) {
      row.byTarget[name] = { error: String(e.message ?? e) };
    } finally {
      await target.stop();
    }
    console.log(`  ${sc.name} — ${name}: ${JSON.stringify(row.byTarget[name], (k, v) => (typeof v === "number" ? Math.round(v * 100) / 100 : v))}`);
  }
  report.results.push(row);
}

if (report.results.length > 0) {
  // Side-by-side summary.
  console.log("\n| scenario | broker | Aedes | broker / Aedes | raw relay | broker / relay |");
  console.log("|---|---|---|---|---|---|");
  for (const r of report.results) {
    const b = r.byTarget.broker?.[r.metric];
    const a = r.byTarget.aedes?.[r.metric];
    const x = r.byTarget.relay?.[r.metric];
    const ratio = (p, q) => (p === undefined || q === undefined ? "–" : `${fmt(p / q, 2)}×`);
    const d = r.metric === "perSecond" || r.metric === "deliveriesPerSecond" || r.metric === "bytesPerConnection" ? 0 : 2;
    console.log(`| ${r.scenario} (${r.metric}) | ${fmt(b, d)} | ${fmt(a, d)} | ${ratio(b, a)} | ${fmt(x, d)} | ${ratio(b, x)} |`);
  }
  console.log("\nCPU µs per delivered message (broker process / generator):");
  for (const r of report.results) {
    if (!["perSecond"].includes(r.metric)) continue;
    const parts = Object.entries(r.byTarget).map(([n, v]) => `${n} ${fmt(v.brokerCpuUs, 1)} / ${fmt(v.generatorCpuUs, 1)}`);
    console.log(`  ${r.scenario}: ${parts.join(", ")}`);
  }
}
if (SHARDS?.length && (!ONLY || ONLY.includes("shards"))) {
  console.log(`\n# sharded scenarios, K = ${SHARDS.join(", ")} (one workerd process: every shard shares the machine's cores)`);
  const sharded = await runSharded(SHARDS, Number(process.env.BENCH_SHARDS_RUNS ?? 1));
  mkdirSync("bench/results", { recursive: true });
  writeFileSync("bench/results/shards.json", JSON.stringify({ date: report.date, machine: report.machine, ...sharded }, null, 2));
  console.log("\nsharded results: bench/results/shards.json");
}
if (report.results.length > 0) {
  mkdirSync("bench/results", { recursive: true });
  writeFileSync("bench/results/latest.json", JSON.stringify(report, null, 2));
  console.log("\nfull results: bench/results/latest.json");
}
process.exit(0);
