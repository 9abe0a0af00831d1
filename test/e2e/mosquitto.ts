// A real Mosquitto for the bridge tests: started on free local ports from a generated config (an
// anonymous listener, and one with a password file), with persistence, so a test can stop it and
// start it again on the same ports and state. Found as ensure-test-deps.mjs finds it.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tcpConnect } from "node:net";
import { freePort } from "./harness";
import { until } from "./marker";

export interface Mosquitto {
  /** anonymous listener */
  port: number;
  /** listener that wants user "bridge", password "secret-pw" */
  authPort: number;
  url: string;
  /** what mosquitto logged */
  logs: string[];
  stop(): Promise<void>;
  start(): Promise<void>;
  /** SIGSTOP / SIGCONT: a dead peer that keeps its sockets open */
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

export const MOSQUITTO_USER = "bridge";
export const MOSQUITTO_PASSWORD = "secret-pw";

function binary(): string {
  if (process.env.MOSQUITTO_PATH) return process.env.MOSQUITTO_PATH;
  for (const p of ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto", "/opt/homebrew/sbin/mosquitto"]) if (existsSync(p)) return p;
  return "mosquitto";
}

export async function startMosquitto(): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), "mosquitto-"));
  const port = await freePort();
  const authPort = await freePort();
  const passwords = join(dir, "passwd");
  const made = spawnSync(binary().replace(/sbin\/mosquitto$/, "bin/mosquitto_passwd"), ["-b", "-c", passwords, MOSQUITTO_USER, MOSQUITTO_PASSWORD]);
  if (made.status !== 0) spawnSync("mosquitto_passwd", ["-b", "-c", passwords, MOSQUITTO_USER, MOSQUITTO_PASSWORD]);
  const conf = join(dir, "mosquitto.conf");
  writeFileSync(
    conf,
    [
      "per_listener_settings true",
      "persistence true",
      `persistence_location ${dir}/`,
      "log_dest stdout",
      "log_type error",
      "log_type warning",
      "log_type notice",
      "log_type information",
      ...(process.getuid?.() === 0 ? ["user root"] : []),
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      `listener ${authPort} 127.0.0.1`,
      "allow_anonymous false",
      `password_file ${passwords}`,
      "",
    ].join("\n"),
  );
  const logs: string[] = [];
  let proc: ChildProcess | null = null;
  const m: Mosquitto = {
    port,
    authPort,
    url: `mqtt://127.0.0.1:${port}`,
    logs,
    async start() {
      const p = spawn(binary(), ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
      proc = p;
      p.stdout!.on("data", (d: Buffer) => logs.push(d.toString()));
      p.stderr!.on("data", (d: Buffer) => logs.push(d.toString()));
      let exited = false;
      p.once("exit", () => (exited = true));
      await until(async () => {
        if (exited) throw new Error(`mosquitto exited: ${logs.join("")}`);
        return (await listening(port)) && (await listening(authPort));
      }, "mosquitto to listen", 10_000);
    },
    async stop() {
      const p = proc;
      proc = null;
      if (!p || p.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        p.once("exit", () => resolve());
        p.kill("SIGTERM");
      });
    },
    pause() {
      proc?.kill("SIGSTOP");
    },
    resume() {
      proc?.kill("SIGCONT");
    },
    async close() {
      m.resume();
      await m.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await m.start();
  return m;
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}
