// RULES ([vars], JSON): which messages go to which Queue, Worker or webhook. Parsed once per
// object. A rule that does not parse is left out with a logged error and the others still run;
// RULES that is not a JSON array gives no rules. The broker itself always runs (docs/rules.md).
import { isValidTopicFilter } from "../topics/validate";

export type Target =
  /** a Cloudflare Queue producer binding: sendBatch of the messages */
  | { kind: "queue"; binding: string }
  /** a service binding to a Worker: RPC `onMessages(messages)` */
  | { kind: "worker"; binding: string }
  /** an HTTPS endpoint (http:// only on the local host): POST */
  | { kind: "webhook"; url: string };

export interface Rule {
  /** unique; the key of its pending sends in storage (default: "<to> <filter>") */
  name: string;
  filter: string;
  to: Target;
  /** webhooks: the NAME of the Worker secret (or var) whose value signs the body (X-Signature-256) */
  secret?: string;
  /** webhooks: "json" (default; messages as JSON, batched) or "raw" (one POST per message, the payload as body) */
  format: "json" | "raw";
  /** ms one send may take before it counts as failed */
  timeoutMs: number;
  /** the highest guarantee: 1 (default) = at least once for QoS >= 1 messages; 0 = at most once for all */
  qos: 0 | 1;
}

export interface RulesConfig {
  rules: Rule[];
  /** one per rule left out, or for RULES as a whole */
  errors: string[];
}

export const MAX_RULES = 256;
export const DEFAULT_TIMEOUT_S = 10;
export const MAX_TIMEOUT_S = 60;
const FIELDS = new Set(["name", "filter", "to", "secret", "format", "timeout", "qos"]);
const NAME = /^[\x21-\x7e]([\x20-\x7e]{0,126}[\x21-\x7e])?$/;
const LOCAL_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** Parses RULES; `env` holds the object's bindings and secrets, to check that what a rule names exists. */
export function parseRules(text: unknown, env: Record<string, unknown>): RulesConfig {
  const rules: Rule[] = [];
  const errors: string[] = [];
  if (text === undefined || text === null || text === "") return { rules, errors };
  let list: unknown;
  try {
    list = typeof text === "string" ? JSON.parse(text) : text;
  } catch (err) {
    errors.push(`RULES is not valid JSON (${(err as Error).message}): no rules are active`);
    return { rules, errors };
  }
  if (!Array.isArray(list)) {
    errors.push("RULES must be a JSON array of rules: no rules are active");
    return { rules, errors };
  }
  const names = new Set<string>();
  list.forEach((entry, i) => {
    if (i >= MAX_RULES) {
      if (i === MAX_RULES) errors.push(`RULES: only the first ${MAX_RULES} rules are used`);
      return;
    }
    const rule = parseRule(entry, env);
    if (typeof rule === "string") {
      errors.push(`RULES[${i}] is left out: ${rule}`);
    } else if (names.has(rule.name)) {
      errors.push(`RULES[${i}] is left out: the name "${rule.name}" is taken by an earlier rule`);
    } else {
      names.add(rule.name);
      rules.push(rule);
    }
  });
  return { rules, errors };
}

/** One rule, or why not. */
function parseRule(entry: unknown, env: Record<string, unknown>): Rule | string {
  if (!entry || typeof entry !== "object" || Array.isArray(entry)) return "a rule must be a JSON object";
  const e = entry as Record<string, unknown>;
  for (const key of Object.keys(e)) if (!FIELDS.has(key)) return `unknown field "${key}" (fields: ${[...FIELDS].join(", ")})`;
  const filter = e.filter;
  if (typeof filter !== "string" || !isValidTopicFilter(filter)) return `"filter" must be a valid MQTT topic filter (got ${JSON.stringify(filter)})`;
  if (filter.startsWith("$share/")) return `"filter" cannot be a shared subscription ("$share/...")`;
  if (filter === "$SYS" || filter.startsWith("$SYS/")) return `"filter": $SYS topics are the broker's own and never go to rules`;
  if (typeof e.to !== "string") return `"to" must be "queue:<binding>", "worker:<binding>" or "webhook:<url>"`;
  const to = parseTarget(e.to, env);
  if (typeof to === "string") return to;

  // the default name is logged, counted and sent: a webhook's query string (a token?) stays out of it
  const name = e.name === undefined ? `${to.kind === "webhook" ? `webhook:${redactUrl(to.url)}` : e.to} ${filter}` : e.name;
  if (e.name === undefined && !NAME.test(name as string)) {
    return `the default name (${JSON.stringify(name)}) is not 1 to 128 printable ASCII characters: give the rule a "name"`;
  }
  if (typeof name !== "string" || !NAME.test(name)) return `"name" must be 1 to 128 printable ASCII characters`;

  const format = e.format ?? "json";
  if (format !== "json" && format !== "raw") return `"format" must be "json" or "raw"`;
  if (format === "raw" && to.kind !== "webhook") return `"format": "raw" is for webhooks only`;

  const timeout = e.timeout ?? DEFAULT_TIMEOUT_S;
  if (typeof timeout !== "number" || !(timeout > 0) || timeout > MAX_TIMEOUT_S) return `"timeout" must be seconds above 0, at most ${MAX_TIMEOUT_S}`;

  const qos = e.qos ?? 1;
  if (qos !== 0 && qos !== 1) return `"qos" must be 0 (at most once) or 1 (at least once)`;

  const rule: Rule = { name, filter, to, format, timeoutMs: Math.round(timeout * 1000), qos };
  if (e.secret !== undefined) {
    if (to.kind !== "webhook") return `"secret" is for webhooks only`;
    if (typeof e.secret !== "string" || e.secret === "") return `"secret" must be the name of a Worker secret`;
    const value = env[e.secret];
    if (typeof value !== "string" || value === "") return `the secret "${e.secret}" is not set (wrangler secret put ${e.secret})`;
    rule.secret = e.secret;
  }
  return rule;
}

/** A webhook URL for names, stats and logs: no query string (it may hold a token). */
export function redactUrl(url: string): string {
  const q = url.indexOf("?");
  return q < 0 ? url : `${url.slice(0, q)}?...`;
}

function parseTarget(to: string, env: Record<string, unknown>): Target | string {
  const colon = to.indexOf(":");
  const kind = colon < 0 ? to : to.slice(0, colon);
  const rest = colon < 0 ? "" : to.slice(colon + 1);
  switch (kind) {
    case "queue": {
      const binding = env[rest] as { sendBatch?: unknown } | undefined;
      if (!rest) return `"to": "queue:" needs a binding name`;
      if (!binding || typeof binding.sendBatch !== "function") return `"to": no Queue producer binding "${rest}" (wrangler.toml [[queues.producers]] binding = "${rest}")`;
      return { kind, binding: rest };
    }
    case "worker": {
      if (!rest) return `"to": "worker:" needs a binding name`;
      const binding = env[rest];
      if (!binding || (typeof binding !== "object" && typeof binding !== "function")) return `"to": no service binding "${rest}" (wrangler.toml [[services]] binding = "${rest}")`;
      return { kind, binding: rest };
    }
    case "webhook": {
      let url: URL;
      try {
        url = new URL(rest);
      } catch {
        return `"to": "${rest}" is not a URL`;
      }
      if (url.protocol === "http:" && !LOCAL_HOSTS.has(url.hostname)) return `"to": a webhook must use https:// (http:// only to localhost, for tests)`;
      if (url.protocol !== "https:" && url.protocol !== "http:") return `"to": a webhook must use https://`;
      if (url.username || url.password) return `"to": no credentials in the webhook URL (use "secret" to sign)`;
      return { kind, url: url.href };
    }
    default:
      return `"to": unknown destination kind "${kind}" (use queue:<binding>, worker:<binding> or webhook:<url>)`;
  }
}
