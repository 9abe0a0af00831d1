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
import { loadConfig } from "../config";


const WATCHDOG_MS = 60_000;

export class BridgeObject extends DurableObject<Env> {
  private link: BridgeLink | null = null;
  /** the configuration text the link was made from: a change restarts it */
  private configKey = "";
  /** the name this instance knows to be in storage */
  private storedName: string | undefined;

  /** Starts the bridge if it is configured and not running (idempotent); its status. */
  async ensure(name?: string): Promise<BridgeStatus | { name: string; error: string }> {
    // The watchdog alarm calls this with no name, and an alarm that wakes a cold instance gets no
    // ctx.id.name from the runtime: the name is kept in storage (a read and at most one write per
    // instance), or the watchdog would end at the first such alarm, and the bridge with it.
    if (name !== undefined && this.storedName !== name) {
      if ((await this.ctx.storage.get<string>("name")) !== name) await this.ctx.storage.put("name", name);
      this.storedName = name;
    }
    const bridgeName = name ?? this.storedName ?? this.ctx.id.name ?? (await this.ctx.storage.get<string>("name"));
    if (!bridgeName) return { name: "", error: "this bridge object does not know its name" };
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
        c.transport === "tcp" || c.transport === "tls" ? openTcp(c.host, c.port, c.transport === "tls", sink) : openWebSocket(`${c.transport}://${hostPort(c)}${c.path}`, sink, c.url),
      openLocal: async (sink: Parameters<typeof openTcp>[3]) => {
        const ns = env.BROKER.get(env.BROKER.idFromName(c.namespace));
        const request = new Request(`http://internal/mqtt/${c.namespace}`, {
          headers: { Upgrade: "websocket", "Sec-WebSocket-Protocol": "mqtt", [BRIDGE_HEADER]: c.name },
        });
        return channelOf(await ns.fetch(request), `namespace ${c.namespace}`, sink);
      },
      password: () => passwordOf(c, env),
      maxPacketSize: loadConfig(env).MAX_PACKET_SIZE,
      now: () => Date.now(),
      loadFilters: async () => (await this.ctx.storage.get<{ local: string[]; remote: string[] }>("filters")) ?? { local: [], remote: [] },
      saveFilters: (filters: { local: string[]; remote: string[] }) => this.ctx.storage.put("filters", filters),
      storage: {
        get: <T>(key: string) => this.ctx.storage.get<T>(key),
        put: (key: string, value: unknown) => void this.ctx.storage.put(key, value),
      },
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
