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

/** Our broker: the built worker under Miniflare (no wrangler dev proxy hop). */
export async function startBroker(vars = {}) {
  const port = await freePort();
  const persist = mkdtempSync(join(tmpdir(), "bench-broker-"));
  const before = new Set(workerdPids(process.pid));
  const mf = new Miniflare({
    host: "127.0.0.1",
    port,
    cf: false,
    modules: true,
    scriptPath: "dist/index.js",
    compatibilityDate: "2026-04-01",
    compatibilityFlags: ["nodejs_compat"],
    durableObjects: { BROKER: { className: "NamespaceBroker", useSQLite: true } },
    bindings: vars,
    defaultPersistRoot: persist,
  });
  await mf.ready;
  const pids = workerdPids(process.pid).filter((p) => !before.has(p));
  return {
    name: "broker",
    url: (q = "") => `ws://127.0.0.1:${port}/mqtt/bench${q}`,
    pids: () => pids,
    storageBytes: () => dirBytes(persist),
    async stop() {
      await mf.dispose();
      rmSync(persist, { recursive: true, force: true });
    },
  };
}

/** The raw relay DO: the runtime's limit for moving frames through one Durable Object. */
export async function startRelay() {
  const port = await freePort();
  const persist = mkdtempSync(join(tmpdir(), "bench-relay-"));
  const before = new Set(workerdPids(process.pid));
  const mf = new Miniflare({
    host: "127.0.0.1",
    port,
    cf: false,
    modules: true,
    scriptPath: "bench/relay-worker.mjs",
    compatibilityDate: "2026-04-01",
    durableObjects: { RELAY: { className: "Relay", useSQLite: true } },
    defaultPersistRoot: persist,
  });
  await mf.ready;
  const pids = workerdPids(process.pid).filter((p) => !before.has(p));
  return {
    name: "relay",
    url: (q = "") => `ws://127.0.0.1:${port}/relay${q}`,
    pids: () => pids,
    async stop() {
      await mf.dispose();
      rmSync(persist, { recursive: true, force: true });
    },
  };
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
