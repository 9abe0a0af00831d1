// Topic ACLs: lists of patterns like Mosquitto's pattern ACLs. A pattern is a topic filter in
// which %c stands for the client id and %u for the user name. Patterns match the way
// subscriptions do, so `#` and `+` do not match topics starting with `$` [MQTT-4.7.2-1]:
// `$SYS/#` has to be granted explicitly. Compiled once per connection; `allows` runs per message.
// Deny patterns (Mosquitto's and EMQX's deny rules) win over the allow patterns; an ACL without
// allow patterns but with deny patterns allows everything else (`$` topics included, as no ACL does).

/** What a topic filter gets under a read ACL. */
export type FilterAccess = "covered" | "partial" | "denied";

export class TopicAcl {
  /** pattern levels, after substitution */
  private readonly patterns: readonly (readonly string[])[];
  /** a bare `#` pattern: every topic that does not start with `$` */
  private readonly all: boolean;

  /** deny patterns, after substitution; null when there are none (the hot path pays one test) */
  private readonly deny: readonly (readonly string[])[] | null;
  /** no allow list: everything not denied is allowed */
  private readonly everything: boolean;

  private constructor(patterns: string[][], deny: string[][] | null = null, everything = false) {
    this.patterns = patterns;
    this.all = patterns.some((p) => p.length === 1 && p[0] === "#");
    this.deny = deny && deny.length ? deny : null;
    this.everything = everything;
  }

  /**
   * Allow list and deny list together; null when neither is given (unrestricted, the cheapest).
   * Without an allow list everything the deny list does not match is allowed. A deny pattern
   * whose %c or %u cannot be filled in (see compile) is not dropped: the level holding the
   * placeholder becomes `+`, so it denies more, never less.
   */
  static build(allow: readonly string[] | undefined, deny: readonly string[] | undefined, clientId: string, username: string | undefined): TopicAcl | null {
    if (allow === undefined && (deny === undefined || deny.length === 0)) return null;
    const patterns = allow === undefined ? [] : TopicAcl.compile(allow, clientId, username).patterns.map((p) => [...p]);
    const denied: string[][] = [];
    for (const raw of deny ?? []) {
      const levels = raw.split("/").map((level) => (level.includes("%") ? (substitute(level, clientId, username) ?? "+") : level));
      const filter = levels.join("/");
      if (isPattern(filter)) denied.push(levels);
    }
    return new TopicAcl(patterns, denied, allow === undefined);
  }

  /**
   * Substitutes %c and %u in one pass (a substituted value is never read again as a
   * placeholder), and drops a pattern that cannot apply or whose meaning a value would change:
   * %u without a user name, or a value that is empty or holds `/`, `+`, `#`, `%` or NUL — client
   * id `%u` with user name `+` must not turn `clients/%c/#` into `clients/+/#` — or that starts
   * with `$` at the start of the pattern (`%c/#` with client id `$SYS`). Refused, never widened.
   */
  static compile(patterns: readonly string[], clientId: string, username: string | undefined): TopicAcl {
    const out: string[][] = [];
    for (const raw of patterns) {
      const filter = substitute(raw, clientId, username);
      if (filter !== null && isPattern(filter)) out.push(filter.split("/"));
    }
    return new TopicAcl(out);
  }

  get size(): number {
    return this.patterns.length;
  }

  /** Whether a topic name matches a pattern. No allocation: runs for every publish and delivery. */
  allows(topic: string): boolean {
    if (this.deny !== null && this.denies(topic)) return false;
    if (this.everything) return true;
    if (this.all && topic.charCodeAt(0) !== 0x24) return true;
    const patterns = this.patterns;
    for (let i = 0; i < patterns.length; i++) if (matches(patterns[i]!, topic)) return true;
    return false;
  }

  /**
   * A subscription filter (without `$share/<group>/`) against the read patterns: "covered" when
   * every topic it matches is readable, "partial" when some are (deliveries are then checked one
   * by one), "denied" when none are.
   */
  access(filter: string): FilterAccess {
    const f = filter.split("/");
    const deny = this.deny;
    // A deny pattern that covers the whole filter refuses the subscription; one that overlaps
    // it leaves the subscription granted but checked per delivery, where allows() drops the
    // denied topics (`test/#` with `test/nosubscribe` denied: granted, minus that topic).
    if (deny !== null) for (const d of deny) if (covers(d, f)) return "denied";
    const access = this.allowAccess(f);
    if (access === "covered" && deny !== null && deny.some((d) => overlaps(d, f))) return "partial";
    return access;
  }

  private allowAccess(f: readonly string[]): FilterAccess {
    if (this.everything) return "covered";
    let partial = false;
    for (const p of this.patterns) {
      if (covers(p, f)) return "covered";
      if (!partial && overlaps(p, f)) partial = true;
    }
    return partial ? "partial" : "denied";
  }

  /** Whether a deny pattern matches the topic name. */
  private denies(topic: string): boolean {
    const deny = this.deny!;
    for (let i = 0; i < deny.length; i++) if (matches(deny[i]!, topic)) return true;
    return false;
  }
}

/** The pattern with %c and %u replaced in one pass; null when a value may not go in. */
export function substitute(pattern: string, clientId: string, username: string | undefined): string | null {
  if (!pattern.includes("%")) return pattern;
  let out = "";
  let from = 0;
  for (let i = pattern.indexOf("%"); i >= 0 && i < pattern.length - 1; i = pattern.indexOf("%", from)) {
    const kind = pattern[i + 1];
    if (kind !== "c" && kind !== "u") {
      out += pattern.slice(from, i + 1); // another `%` sequence stays as it is
      from = i + 1;
      continue;
    }
    const value = kind === "c" ? clientId : username;
    if (!usable(value) || (i === 0 && value.charCodeAt(0) === 0x24)) return null;
    out += pattern.slice(from, i) + value;
    from = i + 2;
  }
  return out + pattern.slice(from);
}

/** A value that stays one literal topic level once substituted. */
function usable(value: string | undefined): value is string {
  return value !== undefined && value !== "" && !/[/+#%\u0000]/.test(value);
}

/** A topic filter, as a pattern: levels of text, `+`, or a final `#`. */
export function isPattern(p: string): boolean {
  if (p.length === 0 || p.includes("\u0000")) return false;
  const levels = p.split("/");
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    if (l.includes("#") && (l !== "#" || i !== levels.length - 1)) return false;
    if (l.includes("+") && l !== "+") return false;
  }
  return true;
}

const isWild = (level: string) => level === "+" || level === "#";
const isDollar = (level: string) => level.charCodeAt(0) === 0x24;

/** Topic-name match, walking the string level by level without splitting it. */
function matches(p: readonly string[], topic: string): boolean {
  let pos = 0; // start of the current topic level; topic.length + 1 once past the last level
  const dollar = topic.charCodeAt(0) === 0x24;
  for (let i = 0; i < p.length; i++) {
    const level = p[i]!;
    if (level === "#") return !(i === 0 && dollar); // also matches the parent level ("a/#" ~ "a")
    if (pos > topic.length) return false;
    let end = topic.indexOf("/", pos);
    if (end < 0) end = topic.length;
    if (level === "+") {
      if (i === 0 && dollar) return false;
    } else if (end - pos !== level.length || !topic.startsWith(level, pos)) return false;
    pos = end + 1;
  }
  return pos === topic.length + 1;
}

/** Every topic matching filter `f` matches pattern `p`. */
function covers(p: readonly string[], f: readonly string[]): boolean {
  for (let i = 0; i < p.length; i++) {
    const pl = p[i]!;
    const fl = f[i];
    if (pl === "#") return !(i === 0 && fl !== undefined && !isWild(fl) && isDollar(fl));
    if (fl === undefined || fl === "#") return false;
    if (pl === "+") {
      if (i === 0 && fl !== "+" && isDollar(fl)) return false;
    } else if (fl !== pl) return false; // includes fl === "+" under a literal: broader
  }
  return f.length === p.length;
}

/** Some topic matches both filter `f` and pattern `p`. */
function overlaps(p: readonly string[], f: readonly string[]): boolean {
  for (let i = 0; ; i++) {
    const pl = p[i];
    const fl = f[i];
    if (pl === undefined && fl === undefined) return true;
    if (pl === "#" || fl === "#") {
      const other = pl === "#" ? fl : pl;
      return !(i === 0 && other !== undefined && !isWild(other) && isDollar(other));
    }
    if (pl === undefined || fl === undefined) return false;
    if (pl === "+" || fl === "+") {
      const other = pl === "+" ? fl : pl;
      if (i === 0 && !isWild(other) && isDollar(other)) return false;
      continue;
    }
    if (pl !== fl) return false;
  }
}
