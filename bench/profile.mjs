// npm run bench:profile: where the broker's time goes inside workerd. Runs one scenario against
// the built worker under Miniflare with V8's sampling profiler on (over the inspector protocol)
// and prints the functions by self and by inclusive share of samples. "(program)", "(garbage
// collector)" and native functions such as `send` are the runtime's share.
//   PROFILE=fanin|fanout (default fanin), QOS=0|1 (default 1)
import WebSocket from "ws";
import * as S from "./scenarios.mjs";
import { freePort, startBroker } from "./servers.mjs";

const scenario = process.env.PROFILE ?? "fanin";
const qos = Number(process.env.QOS ?? 1);
const run = (target) => (scenario === "fanout" ? S.fanOut(target, qos) : S.fanIn(target, qos));

const inspectorPort = await freePort();
const target = await startBroker({ inspectorPort });
await run(target); // warm-up: JIT

const workers = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
const inspector = new WebSocket(workers.find((w) => w.title.includes("core:user")).webSocketDebuggerUrl);
await new Promise((resolve) => inspector.once("open", resolve));
let lastId = 0;
const pending = new Map();
inspector.on("message", (data) => {
  const m = JSON.parse(data);
  pending.get(m.id)?.(m.result);
  pending.delete(m.id);
});
const call = (method, params = {}) => new Promise((resolve) => {
  const id = ++lastId;
  pending.set(id, resolve);
  inspector.send(JSON.stringify({ id, method, params }));
});

await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: 50 });
await call("Profiler.start");
const result = await run(target);
const { profile } = await call("Profiler.stop");
console.log(`${scenario} QoS ${qos}: ${Math.round(result.perSecond)}/s, broker ${result.brokerCpuUs.toFixed(1)} µs CPU per delivery (profiler on)`);

const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const name = (n) => `${n.callFrame.functionName || "(anonymous)"}${n.callFrame.lineNumber >= 0 ? ` :${n.callFrame.lineNumber + 1}` : ""}`;
const self = new Map();
const inclusive = new Map();
for (const id of profile.samples) {
  const key = name(nodes.get(id));
  self.set(key, (self.get(key) ?? 0) + 1);
  const seen = new Set();
  for (let at = id; at !== undefined; at = parent.get(at)) {
    const k = name(nodes.get(at));
    if (!seen.has(k)) inclusive.set(k, (inclusive.get(k) ?? 0) + 1);
    seen.add(k);
  }
}
const total = profile.samples.length;
const top = (map, n) => [...map].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, c]) => `${((100 * c) / total).toFixed(1).padStart(6)}%  ${k}`).join("\n");
console.log(`\nself time (line numbers are in dist/index.js):\n${top(self, 25)}\n\ninclusive time:\n${top(inclusive, 25)}`);
inspector.close();
await target.stop();
process.exit(0);
