// Rules for one namespace object, from its env: RULES parsed, each rule given its destination.
// No rules (or none valid): null, and the publish path pays one null check.
import { parseRules } from "./config";
import { makeDestination } from "./destinations";
import { RuleEngine, type RulesHost } from "./engine";

/** What RULES said is logged once per isolate, not at every object start (same env for all). */
const announced = new Set<string>();

export function loadRules(env: Record<string, unknown>, namespace: string, host: RulesHost): RuleEngine | null {
  const text = env.RULES;
  if (text === undefined || text === null || text === "") return null;
  const { rules, errors } = parseRules(text, env);
  const key = typeof text === "string" ? text : JSON.stringify(text);
  if (!announced.has(key)) {
    announced.add(key);
    for (const e of errors) host.log("error", `rules: ${e}`);
    host.log("info", `rules: ${rules.length} active${rules.length ? ` (${rules.map((r) => r.name).join(", ")})` : ""}`);
  }
  if (rules.length === 0) return null;
  return new RuleEngine(
    rules.map((rule) => ({ rule, dest: makeDestination(rule, env, namespace) })),
    host,
  );
}
