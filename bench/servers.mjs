// The three systems under test, each reachable as ws://127.0.0.1:<port>/…
import { Miniflare } from "miniflare";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, readdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { workerdPids } from "./proc.mjs";

export async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function dirBytes(dir) {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? dirBytes(p) : statSync(p).size;
  }
  return total;
}

/** A worker under Miniflare on a free port, with its own persistence folder; `pids` are its workerd processes. */
async function startMiniflare(name, path, options) {
  const port = await freePort();
  const persist = mkdtempSync(join(tmpdir(), `bench-${name}-`));
  const before = new Set(workerdPids(process.pid));
  const mf = new Miniflare({ host: "127.0.0.1", port, cf: false, modules: true, compatibilityDate: "2026-04-01", defaultPersistRoot: persist, ...options });
  await mf.ready;
  const pids = workerdPids(process.pid).filter((p) => !before.has(p));
  return {
    name,
    mf,
    url: (q = "") => `ws://127.0.0.1:${port}${path}${q}`,
    pids: () => pids,
    storageBytes: () => dirBytes(persist),
    async stop() {
      await mf.dispose();
      rmSync(persist, { recursive: true, force: true });
    },
  };
}

// The generator floods faster than one subscriber acknowledges; queues sized so nothing is
// dropped (the defaults, 1,000 messages per session, would drop by design: see README).
// Likewise the per-client publish rate (1,000/s) and the connections per namespace (1,000) are
// off: the generator publishes ~10k/s per client and opens 2,000 idle connections.
export const BENCH_LIMITS = { MAX_QUEUED_MESSAGES: "100000", MAX_QUEUED_BYTES: "1000000000", MAX_PUBLISH_RATE: "0", MAX_CONNECTIONS: "0" };

/** Our broker: the built worker under Miniflare (no wrangler dev proxy hop); `extra` adds Miniflare options. */
export function startBroker(extra = {}) {
  return startMiniflare("broker", "/mqtt/bench", {
    scriptPath: "dist/index.js",
    compatibilityFlags: ["nodejs_compat"],
    durableObjects: { BROKER: { className: "NamespaceBroker", useSQLite: true } },
    bindings: BENCH_LIMITS,
    ...extra,
  });
}

/** The raw relay DO: the runtime's limit for moving frames through one Durable Object. */
export function startRelay() {
  return startMiniflare("relay", "/relay", {
    scriptPath: "bench/relay-worker.mjs",
    durableObjects: { RELAY: { className: "Relay", useSQLite: true } },
  });
}

/** Aedes over WebSocket in a child process. */
export async function startAedes() {
  const port = await freePort();
  const child = spawn(process.execPath, ["bench/aedes-server.mjs", String(port)], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise((resolve, reject) => {
    child.stdout.once("data", resolve);
    child.once("exit", reject);
  });
  return {
    name: "aedes",
    url: () => `ws://127.0.0.1:${port}/`,
    pids: () => [child.pid],
    async stop() {
      child.kill();
      await new Promise((r) => child.once("exit", r));
    },
  };
}
