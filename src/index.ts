// Worker entry: routes /mqtt[/<namespace>] WebSocket upgrades to the namespace's Durable Object
// and /api/... to the HTTP API. Everything else is the web console, served as static assets
// (wrangler.toml [assets]) before the Worker is even invoked.
import { NamespaceBroker } from "./broker/namespace-do";
import type { Env } from "./env";
import { chooseSubprotocol } from "./protocol/subprotocol";
import { loadConfig } from "./config";
import { handleApi, handleMetrics } from "./api/http";
import { NAMESPACE } from "./api/input";
import { BrokerService } from "./api/rpc";
import { BridgeObject } from "./bridge/object";
import { BRIDGE_HEADER } from "./bridge/header";
import { place, shardName } from "./shards/layout";

export { NamespaceBroker, BrokerService, BridgeObject };

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/api" || url.pathname.startsWith("/api/")) return handleApi(request, env);
    if (url.pathname === "/metrics") return handleMetrics(request, env);
    // Only a bridge object's own request may name a bridge (it goes to the namespace object directly).
    if (request.headers.has(BRIDGE_HEADER)) return text(400, `the ${BRIDGE_HEADER} header is reserved for the broker's own bridges`);
    const route = /^\/mqtt(?:\/(.*))?$/.exec(url.pathname);
    if (!route) return text(404, "not found: connect to /mqtt or /mqtt/<namespace>");
    const namespace = route[1] ?? "default";
    if (!NAMESPACE.test(namespace)) {
      return text(400, "invalid namespace: use 1-64 characters of A-Z a-z 0-9 _ . -");
    }
    // Browsers send Origin and let any page open WebSockets (no CORS for them); other clients
    // send none. Without ALLOWED_ORIGINS only the broker's own origin (its console) may.
    const config = loadConfig(env);
    const origin = request.headers.get("Origin");
    if (origin !== null && !originAllowed(origin, url.origin, config.ALLOWED_ORIGINS)) {
      return text(403, `origin not allowed: ${origin.slice(0, 200)} is not this broker's origin nor in ALLOWED_ORIGINS`);
    }
    if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
      return text(426, "this endpoint speaks MQTT over WebSocket: send an Upgrade: websocket request", { Upgrade: "websocket" });
    }
    if (chooseSubprotocol(request.headers.get("Sec-WebSocket-Protocol")) === "unsupported") {
      return text(400, `unsupported WebSocket subprotocol: offer "mqtt"`);
    }
    // The shard (docs/scale-out.md §1): a client hinting its id (?client=<id>) goes to the id's
    // home, where its session lives; any other to any shard. One shard: the namespace's object.
    const shard = config.SHARDS > 1 ? place(url.searchParams.get("client"), config.SHARDS) : 0;
    // The request goes on unchanged (a copy would cost memory for the socket's whole life).
    const stub = env.BROKER.get(env.BROKER.idFromName(shardName(namespace, shard)));
    return stub.fetch(request);
  },
} satisfies ExportedHandler<Env>;

/**
 * The broker's own origin, and ALLOWED_ORIGINS: comma-separated origins ("https://app.example.com"),
 * or "*" for any page at all. Empty: the own origin only.
 */
function originAllowed(origin: string, own: string, allowed: string): boolean {
  const o = origin.toLowerCase();
  if (o === own.toLowerCase()) return true;
  return allowed.split(",").some((a) => a.trim() === "*" || (a.trim() !== "" && a.trim().toLowerCase() === o));
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body + "\n", { status, headers: { "content-type": "text/plain; charset=utf-8", ...headers } });
}
