// Runs the Eclipse Paho MQTT interoperability suite (third_party/paho-interop, unmodified) against
// the built worker (dist/index.js; `npm run build` first — `npm run interop` does) in workerd.
// The suite speaks MQTT over TCP, the broker over WebSocket only: a proxy here turns each TCP
// connection into one WebSocket to ws://127.0.0.1:<port>/mqtt (subprotocol "mqtt", binary frames).
//
//   npm run interop                       # the three configurations, both suites (~10 min)
//   INTEROP_CONFIGS=recommended npm run interop   # one of defaults, keepalive60, recommended (~3.5 min)
//   INTEROP_STRICT=1 npm run interop      # exit 1 when a test fails
//   INTEROP_VERBOSE=1 npm run interop     # echo the suites' output
//
// Per configuration: a fresh broker, then client_test5.py (27 MQTT 5 tests, ~165 s: the tests
// sleep) and client_test.py (10 MQTT 3.1.1 tests, ~40 s), one after the other. A summary line per
// suite and configuration; for each failing test, what it printed (the reason).
//
// Exported for test/e2e/59-paho-interop.test.ts (which runs the suites in parallel groups, one
// broker namespace each): startBroker, startProxy, extractSuite, runSuite, runConfiguration, ….
import { Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { WebSocket } from "ws";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const VENDORED = join(ROOT, "third_party", "paho-interop", "interoperability");

/** The configurations the README reports on: vars given to the broker Worker. */
export const CONFIGURATIONS = {
  defaults: {},
  keepalive60: { MAX_KEEPALIVE: "60" },
  recommended: { MAX_KEEPALIVE: "60", ACL_DEFAULT: JSON.stringify({ deny: { subscribe: ["test/nosubscribe"] } }) },
};

/** The two suites: the script in interoperability/ and how many tests it holds. */
export const SUITES = {
  "mqtt5 (client_test5.py)": { script: "client_test5.py", tests: 27 },
  "mqtt3.1.1 (client_test.py)": { script: "client_test.py", tests: 10 },
};

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** The built worker under Miniflare on a free port with `vars` only, fresh storage; workerd's output kept in `logs`. */
export async function startBroker(vars = {}) {
  const port = await freePort();
  const persist = mkdtempSync(join(tmpdir(), "paho-interop-"));
  const logs = [];
  const mf = new Miniflare({
    host: "127.0.0.1",
    port,
    cf: false,
    defaultPersistRoot: persist,
    handleRuntimeStdio(stdout, stderr) {
      for (const s of [stdout, stderr]) s.on("data", (c) => logs.push(c.toString()));
    },
    workers: [
      {
        name: "edge-mqtt-broker",
        modules: true,
        scriptPath: join(ROOT, "dist", "index.js"),
        compatibilityDate: "2026-04-01",
        compatibilityFlags: ["nodejs_compat"],
        // the Durable Object bindings as wrangler.toml declares them (BROKER, and any added since)
        durableObjects: unstable_getMiniflareWorkerOptions(join(ROOT, "wrangler.toml")).workerOptions.durableObjects,
        bindings: vars,
      },
    ],
  });
  await mf.ready;
  return {
    port,
    logs,
    url: `ws://127.0.0.1:${port}/mqtt`,
    async close() {
      await mf.dispose();
      rmSync(persist, { recursive: true, force: true });
    },
  };
}

/**
 * TCP → WebSocket: each TCP connection gets its own WebSocket (subprotocol mqtt); TCP bytes go as
 * binary frames, frames come back as bytes. A TCP FIN closes the WebSocket (close frame after the
 * bytes already sent, then a hard terminate if the broker does not answer within a second); a TCP
 * error (RST) terminates it. The WebSocket closing ends the TCP connection; its error destroys it.
 */
export async function startProxy(wsUrl) {
  const sockets = new Set();
  const server = createServer((tcp) => {
    sockets.add(tcp);
    tcp.setNoDelay(true);
    const pending = [];
    const ws = new WebSocket(wsUrl, "mqtt", { perMessageDeflate: false });
    ws.binaryType = "nodebuffer";
    let closing;
    const closeWs = () => {
      if (ws.readyState === WebSocket.CLOSED) return;
      if (ws.readyState === WebSocket.CONNECTING) return ws.terminate();
      ws.close(1000);
      closing ??= setTimeout(() => ws.terminate(), 1000);
    };
    tcp.on("data", (chunk) => (ws.readyState === WebSocket.OPEN ? ws.send(chunk) : pending.push(chunk)));
    tcp.on("end", closeWs);
    tcp.on("error", () => ws.terminate());
    tcp.on("close", () => {
      sockets.delete(tcp);
      closeWs();
    });
    ws.on("open", () => {
      for (const chunk of pending.splice(0)) ws.send(chunk);
      if (tcp.readableEnded || tcp.destroyed) closeWs();
    });
    ws.on("message", (data) => {
      if (!tcp.destroyed) tcp.write(data);
    });
    ws.on("close", () => {
      clearTimeout(closing);
      if (!tcp.destroyed) tcp.end();
    });
    ws.on("error", () => tcp.destroy());
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return {
    port: server.address().port,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * One MQTT 3.1.1 CONNECT (clean session) and DISCONNECT on `wsUrl`, so the namespace's Durable
 * Object is up before the suite connects: the suite's client waits only 0.5 s for its first CONNACK,
 * less than a cold object plus the WebSocket handshake can take on a busy machine.
 */
export function warmUp(wsUrl, timeoutMs = 10_000) {
  const id = Buffer.from("paho-interop-warmup");
  const body = Buffer.concat([Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 0, 0, id.length]), id]);
  const connect = Buffer.concat([Buffer.from([0x10, body.length]), body]);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, "mqtt", { perMessageDeflate: false });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`interop: no CONNACK from ${wsUrl} within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.on("open", () => ws.send(connect));
    ws.once("message", (data) => {
      clearTimeout(timer);
      const d = Buffer.from(data);
      if (d[0] !== 0x20 || d[3] !== 0) reject(new Error(`interop: warm-up CONNECT refused (${d.toString("hex")})`));
      ws.send(Buffer.from([0xe0, 0]));
      ws.close(1000);
    });
    ws.on("close", () => {
      clearTimeout(timer);
      resolve();
    });
    ws.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** A scratch copy of the vendored suite (Python writes __pycache__ next to the modules it imports). */
export function extractSuite() {
  const dir = mkdtempSync(join(tmpdir(), "paho-suite-"));
  cpSync(VENDORED, dir, { recursive: true });
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function hasPython() {
  return spawnSync("python3", ["--version"], { stdio: "ignore" }).status === 0;
}

// The scripts take the port as `-p <port>` (and the host only as the default, "localhost", which
// their AF_INET sockets resolve to 127.0.0.1), then call unittest.main(), which reads sys.argv too
// and rejects the -p that client_test.py leaves there. This shim runs the script unchanged with
// `-p <port>` in sys.argv and gives unittest.main its own argv: verbose, and the tests asked for.
const SHIM = `
import sys, runpy, unittest
script, port, *tests = sys.argv[1:]
_main = unittest.main
def main(*args, **kwargs):
    kwargs["argv"] = [script, "-v", *tests]
    return _main(*args, **kwargs)
unittest.main = main
sys.argv = [script, "-p", port]
sys.path.insert(0, ".")
runpy.run_path(script, run_name="__main__")
`;

/** Parses unittest's report (stderr): tests run, failed and errored test names, the time it printed. */
export function parseUnittest(text) {
  const ran = text.match(/^Ran (\d+) tests? in ([\d.]+)s$/m);
  const failed = [...text.matchAll(/^FAIL: (\w+) /gm)].map((m) => m[1]);
  const errored = [...text.matchAll(/^ERROR: (\w+) /gm)].map((m) => m[1]);
  const skipped = Number(text.match(/^(?:OK|FAILED) \(.*?skipped=(\d+)/m)?.[1] ?? 0);
  const run = ran ? Number(ran[1]) : 0;
  return {
    run,
    passed: run - failed.length - errored.length - skipped,
    failed,
    errored,
    skipped,
    seconds: ran ? Number(ran[2]) : undefined,
    ok: ran !== null && /^OK\b/m.test(text),
  };
}

/** Runs one suite script (optionally only `tests`, e.g. ["Test.test_basic"]) against host 127.0.0.1:port. */
export function runSuite({ dir, script, port, tests = [], timeoutMs = 15 * 60_000, echo = false }) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    // unbuffered: -v announces each test as it starts (the durations), prints stay in order
    const child = spawn("python3", ["-c", SHIM, script, String(port), ...tests], { cwd: dir, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PYTHONUNBUFFERED: "1" } });
    let stdout = "";
    let stderr = "";
    const starts = []; // [test, ms since start] as unittest -v announces each test (a docstring goes on the next line)
    child.stdout.on("data", (c) => {
      stdout += c;
      if (echo) process.stdout.write(c);
    });
    child.stderr.on("data", (c) => {
      const from = Math.max(0, stderr.lastIndexOf("\n") + 1);
      stderr += c;
      for (const m of stderr.slice(from).matchAll(/^(test\w+) \(__main__\.\w+\.\w+\)(?: \.\.\. |\n)/gm)) {
        if (!starts.some(([t]) => t === m[1])) starts.push([m[1], Date.now() - started]);
      }
      if (echo) process.stderr.write(c);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const wall = Date.now() - started;
      const end = stderr.search(/^-{20,}\nRan /m) >= 0 ? wall : undefined;
      // seconds per test (the last one's ends with the process), for balancing subsets
      const durations = Object.fromEntries(starts.map(([t, at], i) => [t, ((starts[i + 1]?.[1] ?? end ?? wall) - at) / 1000]));
      resolve({ script, code, signal, wallSeconds: wall / 1000, durations, stdout, stderr, ...parseUnittest(stderr) });
    });
  });
}

/**
 * One broker with `vars` and both suites (or `suites`: a script, optionally some of its tests and
 * a broker namespace, /mqtt/<namespace>), each through its own proxy. One after the other on the
 * same namespace by default; `parallel` runs them at once (give each its own namespace then: the
 * suites share client ids and topics).
 */
export async function runConfiguration(vars, { suites = Object.values(SUITES).map((s) => ({ script: s.script })), parallel = false, echo = false } = {}) {
  const broker = await startBroker(vars);
  const suite = extractSuite();
  const proxies = [];
  try {
    const run = async ({ script, tests, namespace }) => {
      const url = namespace ? `${broker.url}/${namespace}` : broker.url;
      await warmUp(url);
      const proxy = await startProxy(url);
      proxies.push(proxy);
      return runSuite({ dir: suite.dir, script, port: proxy.port, tests, echo });
    };
    const results = [];
    if (parallel) results.push(...(await Promise.all(suites.map(run))));
    else for (const s of suites) results.push(await run(s));
    return { results, brokerLogs: broker.logs };
  } finally {
    suite.remove();
    await Promise.all(proxies.map((p) => p.close()));
    await broker.close();
  }
}

/** What a failing test printed on stderr (its own traceback.print_exc, the client's errors), from -v's "test ... " to its verdict. */
export function failureOutput(stderr, test) {
  const at = stderr.search(new RegExp(`^${test} \\(__main__\\.`, "m"));
  if (at < 0) return "";
  const rest = stderr.slice(at);
  const verdict = rest.search(/^(?:FAIL|ERROR|ok)$/m);
  const next = rest.slice(1).search(/^test\w+ \(__main__\.|^={20,}$/m);
  const cut = Math.min(verdict >= 0 ? verdict + 5 : Infinity, next >= 0 ? next + 1 : Infinity, rest.length);
  // and unittest's own report of it at the end (the assertion when the test printed nothing)
  const report = stderr.match(new RegExp(`^={20,}\\n(?:FAIL|ERROR): ${test} [^]*?(?=^={20,}$|^-{20,}\\nRan )`, "m"))?.[0] ?? "";
  const lines = `${rest.slice(0, cut).trim()}\n${report.replace(/^=+\n/, "").trim()}`.split("\n");
  // the suite's client logs each error three times, twice with a timestamp
  return lines.filter((l, i) => !/^ERROR:mqtt-client:/.test(l) && l !== lines[i - 1]).join("\n").trim();
}

function line(config, name, r) {
  const bad = [...r.failed.map((t) => `${t} (fail)`), ...r.errored.map((t) => `${t} (error)`)];
  const status = r.ok ? "ok" : r.run === 0 ? `did not run (exit ${r.code ?? r.signal})` : bad.join(", ");
  return `${config.padEnd(12)} ${name.padEnd(27)} ${String(r.passed).padStart(2)}/${r.run} passed  ${r.wallSeconds.toFixed(1).padStart(6)} s  ${status}`;
}

async function main() {
  if (!hasPython()) {
    console.error("interop: python3 not found; the Paho suite is Python 3");
    process.exit(process.env.INTEROP_STRICT === "1" ? 1 : 0);
  }
  const wanted = (process.env.INTEROP_CONFIGS ?? Object.keys(CONFIGURATIONS).join(",")).split(",").map((s) => s.trim());
  const echo = process.env.INTEROP_VERBOSE === "1";
  const names = Object.keys(SUITES);
  const lines = [];
  let allOk = true;
  for (const config of wanted) {
    const vars = CONFIGURATIONS[config];
    if (!vars) throw new Error(`interop: unknown configuration ${config} (${Object.keys(CONFIGURATIONS).join(", ")})`);
    console.log(`interop: ${config} ${JSON.stringify(vars)}`);
    const { results } = await runConfiguration(vars, { echo });
    let passed = 0;
    let total = 0;
    results.forEach((r, i) => {
      const l = line(config, names[i], r);
      console.log(l);
      lines.push(l);
      passed += r.passed;
      total += Object.values(SUITES)[i].tests;
      allOk &&= r.ok;
      if (!r.ok && !echo) {
        // why: what each failing test printed (the assertion inside the test, the client's errors)
        for (const t of [...r.failed, ...r.errored]) {
          console.log(failureOutput(r.stderr, t).split("\n").slice(0, 50).map((s) => `    ${s}`).join("\n"));
        }
      }
    });
    const wall = results.reduce((t, r) => t + r.wallSeconds, 0);
    const l = `${config.padEnd(12)} ${"total".padEnd(27)} ${String(passed).padStart(2)}/${total} passed  ${wall.toFixed(1).padStart(6)} s`;
    console.log(l);
    lines.push(l);
  }
  console.log(`\ninterop summary\n${lines.join("\n")}`);
  if (!allOk && process.env.INTEROP_STRICT === "1") process.exit(1);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
