// Starts the built worker (dist/index.js) in workerd through Miniflare on a free port, with
// persistent storage in a temp folder, so tests can restart the runtime on the same state.
// Static assets (the web console) are served as wrangler.toml's [assets] says.
import { Miniflare, type WorkerOptions } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { createWebsocket } from "../../client/node-websocket.mjs";
import { hinted } from "./hint";

export { hinted };

export interface Broker {
  port: number;
  /** shards the namespace spans (the SHARDS var this broker started with; 1 when unset) */
  shards: number;
  url(namespace?: string): string;
  /** http://127.0.0.1:<port><path>, for the HTTP API and the console */
  http(path?: string): string;
  mf: Miniflare;
  /** what workerd printed so far (stdout and stderr; still echoed to the console) */
  logs: string[];
  /** dispose the runtime and start it again on the same storage and port */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

export interface BrokerOptions {
  /**
   * More Workers in the same runtime, e.g. one that calls the broker through a service binding:
   * `serviceBindings: { BROKER: { name: BROKER_WORKER, entrypoint: "BrokerService" } }`.
   */
  workers?: WorkerOptions[];
  /**
   * More options for the broker Worker itself, merged over the ones made here (its `bindings`
   * over `vars`): e.g. `queueProducers: { Q: { queueName: "q" } }`, `serviceBindings: { SINK: "sink" }`.
   */
  broker?: Partial<WorkerOptions>;
}

/** The broker Worker's name (wrangler.toml `name`), for service bindings of extra workers. */
export const BROKER_WORKER = "edge-mqtt-broker";

let assetsOptions: WorkerOptions["assets"] | undefined;
/** wrangler's own reading of wrangler.toml [assets]: the same routing as `wrangler dev` and deploy. */
function assets(): WorkerOptions["assets"] {
  return (assetsOptions ??= unstable_getMiniflareWorkerOptions("wrangler.toml").workerOptions.assets);
}

/**
 * `E2E_SHARDS=<n>` runs the suite against namespaces of n shards (the `e2e-sharded` vitest
 * project): every broker gets `SHARDS=<n>` unless the test sets SHARDS itself.
 */
export const E2E_SHARDS = Number(process.env.E2E_SHARDS ?? 1) || 1;

/**
 * True in the sharded run. `test.skipIf(SHARDED)` marks a test that run cannot pass yet, with a
 * `// sharded: <why>` comment above it (grep for "sharded:"); the list shrinks as the broker learns.
 * `E2E_RUN_SKIPPED=1` runs them anyway, to see which pass now.
 */
export const SHARDED = E2E_SHARDS > 1 && process.env.E2E_RUN_SKIPPED !== "1";

export async function startBroker(vars: Record<string, string> = {}, extra: BrokerOptions = {}): Promise<Broker> {
  // in place: a test may change its vars object before `restart()` (58-bridge does)
  if (E2E_SHARDS > 1 && vars.SHARDS === undefined) Object.assign(vars, { SHARDS: String(E2E_SHARDS), SHARDS_EXPERIMENTAL: "1" });
  const port = await freePort();
  const persist = mkdtempSync(join(tmpdir(), "mqtt-broker-"));
  const logs: string[] = [];
  const tee = (stream: NodeJS.ReadableStream, out: NodeJS.WriteStream) =>
    stream.on("data", (chunk: Buffer) => {
      logs.push(chunk.toString());
      out.write(chunk);
    });
  const options = () => ({
    host: "127.0.0.1",
    port,
    cf: false,
    defaultPersistRoot: persist,
    handleRuntimeStdio(stdout: NodeJS.ReadableStream, stderr: NodeJS.ReadableStream) {
      tee(stdout, process.stdout);
      tee(stderr, process.stderr);
    },
    workers: [
      {
        name: BROKER_WORKER,
        modules: true,
        scriptPath: "dist/index.js",
        compatibilityDate: "2026-04-01",
        compatibilityFlags: ["nodejs_compat"],
        durableObjects: { BROKER: { className: "NamespaceBroker", useSQLite: true }, BRIDGE: { className: "BridgeObject", useSQLite: true } },
        bindings: vars,
        assets: assets(),
        ...extra.broker,
        ...(extra.broker?.bindings ? { bindings: { ...vars, ...extra.broker.bindings } } : {}),
      } as WorkerOptions,
      ...(extra.workers ?? []),
    ],
  });
  let mf = new Miniflare(options());
  await mf.ready;
  const broker: Broker = {
    port,
    shards: Math.max(1, Math.floor(Number(vars.SHARDS ?? 1)) || 1),
    mf,
    logs,
    url: (namespace) => `ws://127.0.0.1:${port}/mqtt${namespace ? `/${namespace}` : ""}`,
    http: (path = "/") => `http://127.0.0.1:${port}${path}`,
    async restart() {
      await mf.dispose();
      mf = new Miniflare(options());
      broker.mf = mf;
      await mf.ready;
    },
    async close() {
      await mf.dispose();
      rmSync(persist, { recursive: true, force: true });
    },
  };
  return broker;
}

/** Connects an MQTT.js client and waits for CONNACK; rejects on error or a refused connect. */
/**
 * An MQTT.js client, connected. It sends one WebSocket frame per packet through the client helper
 * (client/node-websocket.mjs), as we tell Node users to; `createWebsocket: undefined` in `opts`
 * gives MQTT.js's own socket, which splits every packet into several frames.
 */
export function connect(url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const framing = "createWebsocket" in opts ? {} : { createWebsocket };
    const client = mqtt.connect(hinted(url, opts.clientId), { reconnectPeriod: 0, connectTimeout: 5000, ...framing, ...opts });
    client.once("connect", () => resolve(client));
    client.once("error", (e) => {
      client.end(true);
      reject(e);
    });
  });
}

/** The next `n` messages on a client, as { topic, payload (string), packet }. */
export function collect(client: MqttClient, n: number, timeoutMs = 5000): Promise<{ topic: string; payload: string; packet: mqtt.IPublishPacket }[]> {
  return new Promise((resolve, reject) => {
    const got: { topic: string; payload: string; packet: mqtt.IPublishPacket }[] = [];
    const timer = setTimeout(() => {
      client.off("message", onMessage);
      reject(new Error(`timed out with ${got.length}/${n} messages: ${JSON.stringify(got.map((g) => g.topic + "=" + g.payload))}`));
    }, timeoutMs);
    const onMessage = (topic: string, payload: Buffer, packet: mqtt.IPublishPacket) => {
      got.push({ topic, payload: payload.toString(), packet });
      if (got.length >= n) {
        clearTimeout(timer);
        client.off("message", onMessage);
        resolve(got);
      }
    };
    client.on("message", onMessage);
  });
}

/** Resolves with the messages received within `ms` (to show that nothing, or nothing more, arrives). */
export function quietFor(client: MqttClient, ms: number): Promise<string[]> {
  return new Promise((resolve) => {
    const got: string[] = [];
    const onMessage = (topic: string, payload: Buffer) => got.push(`${topic}=${payload.toString()}`);
    client.on("message", onMessage);
    setTimeout(() => {
      client.off("message", onMessage);
      resolve(got);
    }, ms);
  });
}

export function end(...clients: (MqttClient | undefined)[]): Promise<void[]> {
  return Promise.all(clients.map((c) => (c ? new Promise<void>((r) => c.end(true, {}, () => r())) : Promise.resolve())));
}

/** The HTTP API token for brokers started with `{ API_TOKEN: TEST_API_TOKEN }`. */
export const TEST_API_TOKEN = "test-api-token";

/**
 * Publishes through the HTTP API: the operator's path, and the way to put a message on a `$`
 * topic other than `$SYS` (MQTT clients may not publish to `$` topics).
 */
export async function apiPublish(broker: Broker, namespace: string, message: { topic: string; payload: string; qos?: number; retain?: boolean }): Promise<void> {
  const res = await fetch(broker.http(`/api/${namespace}/publish`), {
    method: "POST",
    headers: { "content-type": "application/json", Authorization: `Bearer ${TEST_API_TOKEN}` },
    body: JSON.stringify(message),
  });
  if (!res.ok) throw new Error(`API publish failed: ${res.status} ${await res.text()}`);
}
