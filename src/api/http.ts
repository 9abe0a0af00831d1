// The HTTP API under /api/<namespace>/...: bearer auth, routing, validation, JSON in and out.
// Every failure is a JSON `{ "error": "..." }`; bad input is a 4xx, never a 500.
import { Buffer } from "node:buffer";
import type { Env } from "../env";
import type { ClientDetail, RetainedMessage } from "../broker/admin";
import type { PublishProperties } from "../protocol/codec";
import { loadConfig } from "../config";
import { authorize } from "./auth";
import { METRICS_CONTENT_TYPE, metricsNamespaces, metricsText } from "./metrics";
import { bridgeStatus } from "../bridge/start";
import { NamespaceView } from "./namespace";
import { InputError, NAMESPACE, clientIdOf, filterOf, integerOf, namespaceOf, publishOf, topicOf } from "./input";

const ROUTE = /^\/api\/([^/]*)\/(publish|retained|clients|stats|metrics|bridges)(?:\/(.*))?$/;
const ALLOWED: Record<string, string> = { publish: "POST", retained: "GET, DELETE", clients: "GET", "clients/<id>": "GET, DELETE", stats: "GET", metrics: "GET", bridges: "GET" };

export async function handleApi(request: Request, env: Env): Promise<Response> {
  const response = await answer(request, env);
  // A request body left unread (an answer given before reading it) can make the connection close
  // under the client, whose next request on that kept-alive connection then meets a reset: read
  // a body small enough to read. A body over the limit (413) is not read; that connection closes.
  if (request.body && !request.bodyUsed && Number(request.headers.get("content-length") ?? Infinity) <= DRAIN_LIMIT) {
    await request.arrayBuffer().catch(() => undefined);
  }
  return response;
}

const DRAIN_LIMIT = 64 * 1024;

async function answer(request: Request, env: Env): Promise<Response> {
  try {
    // the namespace a path names, for its own token (API_TOKENS); routing validates it later
    const named = /^\/api\/([^/]+)/.exec(new URL(request.url).pathname)?.[1];
    const auth = await authorize(request, env, named !== undefined && NAMESPACE.test(named) ? named : null);
    if (auth === "disabled") return error(403, "the HTTP API is off: set the API_TOKEN (or API_TOKENS) secret to enable it");
    if (auth === "misconfigured") return error(503, 'the HTTP API is misconfigured: API_TOKENS must be JSON {"<namespace>": "<token>", ...}');
    if (auth === "unauthorized") {
      return error(401, "missing or wrong token: send Authorization: Bearer <API_TOKEN, or the namespace's token in API_TOKENS>", { "WWW-Authenticate": "Bearer" });
    }
    return await route(request, env);
  } catch (err) {
    if (err instanceof InputError) return error(err.status, err.message);
    console.error(`[api] ${request.method} ${new URL(request.url).pathname}: ${(err as Error)?.stack ?? String(err)}`);
    return error(500, "internal error");
  }
}

async function route(request: Request, env: Env): Promise<Response> {
  const url = new URL(request.url);
  const m = ROUTE.exec(url.pathname);
  if (!m) return error(404, "no such API path: use /api/<namespace>/publish, /retained, /clients, /clients/<id>, /stats, /metrics or /bridges");
  const namespace = namespaceOf(m[1]);
  const resource = m[2]!;
  const rest = m[3];
  const broker = new NamespaceView(env, namespace);
  const method = request.method;
  const query = url.searchParams;

  if (rest !== undefined && (resource !== "clients" || rest === "")) return error(404, `no such API path: ${url.pathname}`);
  const path = rest === undefined ? resource : `${resource}/<id>`;
  switch (`${method} ${path}`) {
    case "POST publish": {
      const max = loadConfig(env).MAX_PACKET_SIZE;
      const msg = publishOf(await jsonBody(request, max), max);
      const outcome = await broker.publish(msg);
      if ("refused" in outcome) return error(outcome.status, outcome.refused);
      return json(200, { matched: outcome.matched });
    }
    case "GET retained": {
      const filter = filterOf(query.get("filter"));
      const limit = integerOf(query.get("limit"), "limit", 1, 10000, 1000);
      const { messages, truncated } = await broker.retained(filter, limit);
      return json(200, { filter, messages: messages.map(retainedJson), truncated });
    }
    case "DELETE retained": {
      const topic = topicOf(query.get("topic") ?? undefined);
      return json(200, { topic, deleted: await broker.deleteRetained(topic) });
    }
    case "GET clients":
      return json(200, { clients: await broker.clients() });
    case "GET clients/<id>": {
      const clientId = clientIdOf(decode(rest!));
      const detail = await broker.client(clientId);
      if (!detail) return error(404, `no session of client "${clientId}" in namespace "${namespace}"`);
      return json(200, { namespace, ...(detail as ClientDetail) });
    }
    case "DELETE clients/<id>": {
      const clientId = clientIdOf(decode(rest!));
      if (!(await broker.disconnect(clientId))) return error(404, `client "${clientId}" is not connected`);
      return json(200, { disconnected: clientId });
    }
    case "GET bridges":
      return json(200, { namespace, ...(await bridgeStatus(env, namespace)) });
    case "GET stats":
      return json(200, { namespace, ...(await broker.stats()) });
    case "GET metrics":
      return metricsResponse(env, [namespace]);
    default: {
      const allow = ALLOWED[path]!;
      return error(405, `use ${allow} for ${url.pathname}`, { Allow: allow });
    }
  }
}

/**
 * GET /metrics: the Prometheus exposition of one or more namespaces, named by
 * `?namespace=a&namespace=b` and/or `?namespaces=a,b` (default: "default"), at most
 * MAX_METRICS_NAMESPACES. API_TOKEN opens any; a namespace's own token (API_TOKENS) only its own:
 * 401 when the token opens none of those asked for, 403 when it opens some but not all.
 */
export async function handleMetrics(request: Request, env: Env): Promise<Response> {
  try {
    if (request.method !== "GET") return error(405, "use GET for /metrics", { Allow: "GET" });
    const namespaces = metricsNamespaces(new URL(request.url).searchParams);
    const verdicts = await Promise.all(namespaces.map((ns) => authorize(request, env, ns)));
    if (verdicts.includes("disabled")) return error(403, "the HTTP API is off: set the API_TOKEN (or API_TOKENS) secret to enable it");
    if (verdicts.includes("misconfigured")) return error(503, 'the HTTP API is misconfigured: API_TOKENS must be JSON {"<namespace>": "<token>", ...}');
    const refused = namespaces.filter((_, i) => verdicts[i] !== "ok");
    if (refused.length === namespaces.length) {
      return error(401, "missing or wrong token: send Authorization: Bearer <API_TOKEN, or the namespace's token in API_TOKENS>", { "WWW-Authenticate": "Bearer" });
    }
    if (refused.length > 0) return error(403, `the token does not open namespace(s) ${refused.map((n) => `"${n}"`).join(", ")}: use API_TOKEN, or ask for the token's own namespace`);
    return await metricsResponse(env, namespaces);
  } catch (err) {
    if (err instanceof InputError) return error(err.status, err.message);
    console.error(`[api] GET /metrics: ${(err as Error)?.stack ?? String(err)}`);
    return error(500, "internal error");
  }
}

async function metricsResponse(env: Env, namespaces: string[]): Promise<Response> {
  const body = await readMetrics(env, namespaces);
  return new Response(body, { status: 200, headers: { "content-type": METRICS_CONTENT_TYPE, "cache-control": "no-store" } });
}

/**
 * The exposition of the namespaces (checked names), for GET /metrics, /api/<ns>/metrics and the
 * RPC: one stats call per namespace (the same RPC the stats API makes, so the same billed event),
 * and, in parallel, the status of the namespace's bridges (what GET /api/<ns>/bridges answers: one
 * RPC per bridge, to the bridge objects). A namespace without bridges in BRIDGES costs no bridge
 * RPC: bridgeStatus then only reads the (cached) parsed BRIDGES.
 */
export async function readMetrics(env: Env, namespaces: readonly string[]): Promise<string> {
  const [stats, bridges] = await Promise.all([
    Promise.all(namespaces.map((ns) => new NamespaceView(env, ns).stats())),
    Promise.all(namespaces.map((ns) => (env.BRIDGES ? bridgeStatus(env, ns) : null))),
  ]);
  return metricsText(namespaces.map((ns, i) => [ns, stats[i]!, bridges[i]] as const));
}

/** The request body as JSON, refusing bodies far larger than the largest payload could need. */
async function jsonBody(request: Request, maxPayload: number): Promise<unknown> {
  const limit = Math.ceil(maxPayload / 3) * 4 + 256 * 1024; // base64 of the payload plus room for properties
  const declared = Number(request.headers.get("Content-Length") ?? "0");
  if (declared > limit) throw new InputError(`request body exceeds ${limit} bytes`, 413);
  const text = await request.text();
  if (text.length > limit) throw new InputError(`request body exceeds ${limit} bytes`, 413);
  try {
    return JSON.parse(text);
  } catch {
    throw new InputError("the request body must be JSON");
  }
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new InputError("malformed percent-encoding in the client id");
  }
}

/** Binary as JSON: the text when it is UTF-8, and always base64 (the same names a publish accepts). */
function bytesJson(name: string, bytes: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  try {
    out[name] = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    // not text: base64 only
  }
  out[`${name}Base64`] = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
  return out;
}

function retainedJson(m: RetainedMessage): Record<string, unknown> {
  const out: Record<string, unknown> = { topic: m.topic, qos: m.qos, ...bytesJson("payload", m.payload) };
  if (m.properties) out.properties = propertiesJson(m.properties);
  if (m.expiresAt !== undefined) out.expiresAt = m.expiresAt;
  return out;
}

function propertiesJson(p: PublishProperties): Record<string, unknown> {
  const { correlationData, ...rest } = p;
  return correlationData ? { ...rest, ...bytesJson("correlationData", correlationData) } : rest;
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", ...headers },
  });
}

function error(status: number, message: string, headers: Record<string, string> = {}): Response {
  return json(status, { error: message }, headers);
}
