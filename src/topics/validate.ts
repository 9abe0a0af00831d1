// Topic name and filter rules, MQTT 3.1.1 §4.7 and MQTT 5.0 §4.7.

const MAX_TOPIC_BYTES = 65535;

/** A topic name a client may PUBLISH to: non-empty, no wildcards, no NUL [MQTT-4.7.3-1/2, 3.3.2-2]. */
export function isValidTopicName(topic: string): boolean {
  if (topic.length === 0 || topic.length > MAX_TOPIC_BYTES) return false;
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i);
    if (c === 0x2b /* + */ || c === 0x23 /* # */ || c === 0) return false;
  }
  return true;
}

/** A topic filter: `+` fills a whole level, `#` fills a whole last level [MQTT-4.7.1-2/3]. */
export function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0 || filter.length > MAX_TOPIC_BYTES) return false;
  const levels = filter.split("/");
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.includes("\u0000")) return false;
    if (level.includes("#") && (level !== "#" || i !== levels.length - 1)) return false;
    if (level.includes("+") && level !== "+") return false;
  }
  return true;
}

export interface SharedFilter {
  group: string;
  filter: string;
}

const SHARE_PREFIX = "$share/";

/**
 * `$share/<group>/<filter>` (MQTT 5.0 §4.8.2). Returns null for an ordinary filter,
 * "invalid" for a malformed shared filter.
 */
export function parseSharedFilter(filter: string): SharedFilter | null | "invalid" {
  if (!filter.startsWith(SHARE_PREFIX)) return null;
  const rest = filter.slice(SHARE_PREFIX.length);
  const slash = rest.indexOf("/");
  if (slash <= 0) return "invalid";
  const group = rest.slice(0, slash);
  const inner = rest.slice(slash + 1);
  if (group.includes("+") || group.includes("#")) return "invalid";
  if (!isValidTopicFilter(inner)) return "invalid";
  return { group, filter: inner };
}

/** Whether `filter` matches `topic` (no shared prefix). Used for retained lookup and tests. */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  // [MQTT-4.7.2-1] a filter starting with a wildcard does not match a `$` topic
  if (topic.startsWith("$") && (f[0] === "+" || f[0] === "#")) return false;
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === "#") return true;
    if (i >= t.length) return false;
    if (level !== "+" && level !== t[i]) return false;
  }
  return f.length === t.length;
}

/** The literal prefix of a filter before its first wildcard: narrows a retained-message scan. */
export function literalPrefix(filter: string): string {
  const plus = filter.indexOf("+");
  const hash = filter.indexOf("#");
  let end = filter.length;
  if (plus >= 0) end = Math.min(end, plus);
  // "a/#" also matches "a" [MQTT-4.7.1-2]: the separator before "#" is not part of the prefix
  if (hash >= 0) end = Math.min(end, Math.max(0, hash - 1));
  return filter.slice(0, end);
}

/** Within the configured topic length (characters) and level count; 0 switches a limit off. */
export function withinTopicLimits(topic: string, maxLength: number, maxLevels: number): boolean {
  if (maxLength > 0 && topic.length > maxLength) return false;
  if (maxLevels > 0) {
    let levels = 1;
    for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 0x2f && ++levels > maxLevels) return false;
  }
  return true;
}

/**
 * The least string above every string that starts with `prefix` (null when there is none), in
 * code point order, which is SQLite's byte order of UTF-8: `topic >= prefix AND topic < end`
 * selects exactly the topics starting with `prefix`, including ones with characters beyond U+FFFF.
 */
export function prefixEnd(prefix: string): string | null {
  const points = Array.from(prefix);
  while (points.length > 0) {
    let next = points.pop()!.codePointAt(0)! + 1;
    if (next >= 0xd800 && next <= 0xdfff) next = 0xe000; // surrogates are not characters
    if (next <= 0x10ffff) return points.join("") + String.fromCodePoint(next);
  }
  return null;
}
