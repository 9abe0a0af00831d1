// The Durable Object of one bridge (id: idFromName(<bridge name>)). It holds the bridge's two
// connections; an open outbound socket keeps it awake. It is started by ensure() — called when its
// namespace object starts or wakes, and by the status API — and kept started by its own alarm
// (a watchdog, every WATCHDOG_MS: alarms survive evictions and restarts), which also stops it
// once the bridge is gone from BRIDGES.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
import { parseBridges, passwordOf, type BridgeConfig } from "./config";
import { BridgeLink, type BridgeStatus } from "./link";
import { channelOf, openTcp, openWebSocket } from "./transport";
import { BRIDGE_HEADER } from "./header";


const WATCHDOG_MS = 60_000;

export class BridgeObject extends DurableObject<Env> {
  private link: BridgeLink | null = null;
  /** the configuration text the link was made from: a change restarts it */
  private configKey = "";

  /** Starts the bridge if it is configured and not running (idempotent); its status. */
  async ensure(name?: string): Promise<BridgeStatus | { name: string; error: string }> {
    const bridgeName = name ?? this.ctx.id.name ?? (await this.ctx.storage.get<string>("name"));
    if (!bridgeName) return { name: "", error: "this bridge object does not know its name" };
    if (name && !this.ctx.id.name) await this.ctx.storage.put("name", name);
    const config = parseBridges(this.env.BRIDGES).bridges.find((b) => b.name === bridgeName);
    if (!config) {
      // removed from BRIDGES (or made invalid): stop, and let the object rest
      this.link?.stop();
      this.link = null;
      await this.ctx.storage.deleteAlarm();
      return { name: bridgeName, error: "not configured (or invalid): see BRIDGES errors" };
    }
    const key = JSON.stringify(config);
    if (this.link && key !== this.configKey) {
      this.link.stop();
      this.link = null;
    }
    if (!this.link) {
      this.configKey = key;
      this.link = new BridgeLink(config, this.runtime(config));
    }
    this.link.start();
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + WATCHDOG_MS);
    return this.link.status();
  }

  status(): BridgeStatus | null {
    return this.link?.status() ?? null;
  }

  override async alarm(): Promise<void> {
    const result = await this.ensure();
    if (!("error" in result)) await this.ctx.storage.setAlarm(Date.now() + WATCHDOG_MS);
  }

  private runtime(c: BridgeConfig) {
    const env = this.env;
    return {
      openRemote: (sink: Parameters<typeof openTcp>[3]) =>
        c.transport === "tcp" || c.transport === "tls" ? openTcp(c.host, c.port, c.transport === "tls", sink) : openWebSocket(`${c.transport}://${hostPort(c)}${c.path}`, sink),
      openLocal: async (sink: Parameters<typeof openTcp>[3]) => {
        const ns = env.BROKER.get(env.BROKER.idFromName(c.namespace));
        const request = new Request(`http://internal/mqtt/${c.namespace}`, {
          headers: { Upgrade: "websocket", "Sec-WebSocket-Protocol": "mqtt", [BRIDGE_HEADER]: c.name },
        });
        return channelOf(await ns.fetch(request), `namespace ${c.namespace}`, sink);
      },
      password: () => passwordOf(c, env),
      now: () => Date.now(),
      loadFilters: async () => (await this.ctx.storage.get<{ local: string[]; remote: string[] }>("filters")) ?? { local: [], remote: [] },
      saveFilters: (filters: { local: string[]; remote: string[] }) => this.ctx.storage.put("filters", filters),
      setTimer: (fn: () => void, ms: number) => {
        const t = setTimeout(fn, ms);
        return () => clearTimeout(t);
      },
      log: (level: "info" | "warn" | "error", message: string) => console[level](`[bridge] ${message}`),
    };
  }
}

function hostPort(c: BridgeConfig): string {
  return `${c.host.includes(":") ? `[${c.host}]` : c.host}:${c.port}`;
}
