// Bearer-token check for the HTTP API. API_TOKEN (a Worker secret) opens every namespace;
// API_TOKENS (a secret, JSON {"<namespace>": "<token>"}) gives a namespace a token of its own
// that opens that namespace only. With neither the API is off. Tokens are compared as SHA-256
// digests, byte by byte without an early exit, so the time taken reveals neither a token's
// length nor how much of a guess was right. API_TOKENS that does not parse fails closed.
import { NAMESPACE } from "./input";

export type AuthResult = "ok" | "disabled" | "unauthorized" | "misconfigured";

export interface ApiTokens {
  API_TOKEN?: unknown;
  API_TOKENS?: unknown;
}

/** `namespace`: the one the path names (null when it names none: only API_TOKEN then opens it). */
export async function authorize(request: Request, env: ApiTokens, namespace: string | null): Promise<AuthResult> {
  const global = typeof env.API_TOKEN === "string" && env.API_TOKEN !== "" ? env.API_TOKEN : null;
  const perNamespace = parseTokens(env.API_TOKENS);
  if (perNamespace === "invalid") return "misconfigured";
  if (global === null && perNamespace === null) return "disabled";
  const header = request.headers.get("Authorization") ?? "";
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  if (!match) return "unauthorized";
  const given = match[1]!;
  const own = namespace !== null && perNamespace !== null && Object.hasOwn(perNamespace, namespace) ? perNamespace[namespace]! : null;
  // both compared, whichever matches, so the time does not tell which one exists
  const [a, b] = await Promise.all([global !== null ? sameSecret(given, global) : false, own !== null ? sameSecret(given, own) : false]);
  return a || b ? "ok" : "unauthorized";
}

/** API_TOKENS: null when unset, "invalid" when it is not {"<namespace>": "<non-empty token>", ...}. */
function parseTokens(value: unknown): Record<string, string> | null | "invalid" {
  if (value === undefined || value === null || (typeof value === "string" && value.trim() === "")) return null;
  if (typeof value !== "string") return "invalid";
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return "invalid";
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return "invalid";
  for (const [ns, token] of Object.entries(parsed)) {
    if (!NAMESPACE.test(ns) || typeof token !== "string" || token === "") return "invalid";
  }
  return parsed as Record<string, string>;
}

export async function sameSecret(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([digest(given), digest(expected)]);
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}
