// Where a message goes across the bridge: the first rule whose filter matches the topic, and the
// topic it takes on the other side (prefix + topic). Pure functions.
import { topicMatches } from "../topics/validate";
import type { TopicRule } from "./config";

/** The rule a topic falls under (config order), or null. */
export function ruleFor(rules: readonly TopicRule[], topic: string): TopicRule | null {
  for (const r of rules) if (topicMatches(r.filter, topic)) return r;
  return null;
}

/** The topic on the other side: `prefix` + topic. */
export function mapTopic(rule: TopicRule, topic: string): string {
  return rule.prefix + topic;
}

/**
 * Whether an `out` rule could have produced this remote topic (its prefix + a topic its filter
 * matches). Used for MQTT 3.1.1 remotes that know neither No Local nor the bridge bit: such a
 * message may be our own coming back, and is not brought in.
 */
export function producedByOut(out: readonly TopicRule[], remoteTopic: string): boolean {
  for (const r of out) {
    if (!remoteTopic.startsWith(r.prefix)) continue;
    const local = remoteTopic.slice(r.prefix.length);
    if (local !== "" && topicMatches(r.filter, local)) return true;
  }
  return false;
}
