// Starts the built worker (dist/index.js) in workerd through Miniflare on a free port, with
// persistent storage in a temp folder, so tests can restart the runtime on the same state.
import { Miniflare } from "miniflare";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";

export interface Broker {
  port: number;
  url(namespace?: string): string;
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

export async function startBroker(vars: Record<string, string> = {}): Promise<Broker> {
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
    modules: true,
    scriptPath: "dist/index.js",
    compatibilityDate: "2026-04-01",
    compatibilityFlags: ["nodejs_compat"],
    durableObjects: { BROKER: { className: "NamespaceBroker", useSQLite: true } },
    bindings: vars,
    defaultPersistRoot: persist,
    handleRuntimeStdio(stdout: NodeJS.ReadableStream, stderr: NodeJS.ReadableStream) {
      tee(stdout, process.stdout);
      tee(stderr, process.stderr);
    },
  });
  let mf = new Miniflare(options());
  await mf.ready;
  const broker: Broker = {
    port,
    mf,
    logs,
    url: (namespace) => `ws://127.0.0.1:${port}/mqtt${namespace ? `/${namespace}` : ""}`,
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
export function connect(url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
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
