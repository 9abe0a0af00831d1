// Rules for one namespace object, from its env: RULES parsed, each rule given its destination.
// No rules (or none valid): null, and the publish path pays one null check.
import { parseRules, type RulesConfig } from "./config";
import { makeDestination } from "./destinations";
import { RuleEngine, type RulesHost } from "./engine";

/**
 * RULES parsed once per text and isolate (the env is the same for all its objects, and an object
 * is rebuilt at every wake): what it said is logged the first time.
 */
let parsed: { key: string; config: RulesConfig } | null = null;

export function loadRules(env: Record<string, unknown>, namespace: string, host: RulesHost): RuleEngine | null {
  const text = env.RULES;
  if (text === undefined || text === null || text === "") return null;
  const key = typeof text === "string" ? text : JSON.stringify(text);
  if (parsed?.key !== key) {
    parsed = { key, config: parseRules(text, env) };
    const { rules, errors } = parsed.config;
    for (const e of errors) host.log("error", `rules: ${e}`);
    host.log("info", `rules: ${rules.length} active${rules.length ? ` (${rules.map((r) => r.name).join(", ")})` : ""}`);
  }
  const { rules } = parsed.config;
  if (rules.length === 0) return null;
  return new RuleEngine(
    rules.map((rule) => ({ rule, dest: makeDestination(rule, env, namespace) })),
    host,
  );
}
