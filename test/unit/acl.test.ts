import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { TopicAcl } from "../../src/auth/acl";
import { topicMatches } from "../../src/topics/validate";

const acl = (patterns: string[], clientId = "c1", username?: string) => TopicAcl.compile(patterns, clientId, username);

describe("TopicAcl.allows", () => {
  test.each([
    [["a/#"], "a", true],
    [["a/#"], "a/b/c", true],
    [["a/#"], "ab", false],
    [["a/+"], "a/b", true],
    [["a/+"], "a/b/c", false],
    [["a/+"], "a", false],
    [["a/+"], "a/", true],
    [["+/+"], "/x", true],
    [["#"], "anything/at/all", true],
    [["#"], "$SYS/broker", false], // [MQTT-4.7.2-1]
    [["+/broker"], "$SYS/broker", false],
    [["$SYS/#"], "$SYS/broker", true],
    [["a/b"], "a/b", true],
    [["a/b"], "a/bc", false],
    [[], "a", false],
  ])("%j allows %s: %s", (patterns, topic, expected) => {
    expect(acl(patterns).allows(topic)).toBe(expected);
  });

  test("%c and %u are substituted", () => {
    const a = acl(["clients/%c/#", "users/%u/inbox"], "dev-1", "alice");
    expect(a.allows("clients/dev-1/temp")).toBe(true);
    expect(a.allows("clients/dev-2/temp")).toBe(false);
    expect(a.allows("users/alice/inbox")).toBe(true);
    expect(a.allows("users/bob/inbox")).toBe(false);
  });

  test("a pattern with %u does not apply without a user name", () => {
    const a = acl(["users/%u/#"], "c1", undefined);
    expect(a.size).toBe(0);
    expect(a.allows("users//x")).toBe(false);
  });

  test.each(["+", "#", "a/b", ""])("a client id %j cannot widen a %%c pattern", (clientId) => {
    const a = acl(["clients/%c/#"], clientId);
    expect(a.size).toBe(0);
    expect(a.allows("clients/other/x")).toBe(false);
  });

  // One pass over the pattern: a substituted value is never read again as a placeholder, and a
  // value that could change the pattern's meaning refuses the pattern (it grants nothing).
  test.each([
    // [pattern, client id, user name, the compiled pattern or null when refused]
    ["clients/%c/#", "%u", "+", null], // the attack: %c -> %u -> +
    ["clients/%c/#", "%u", "alice", null],
    ["users/%u/#", "c1", "%c", null],
    ["users/%u/%c", "+", "%c", null],
    ["x/%c/%u", "%u", "bob", null],
    ["clients/%c/#", "a%2Fb", undefined, null], // `%` in a value, whatever follows it
    ["clients/%c/#", "a\u0000b", undefined, null],
    ["users/%u/#", "c1", "a/b", null],
    ["users/%u/#", "c1", "#", null],
    ["users/%u/#", "c1", "", null],
    ["%c/#", "$SYS", undefined, null], // would make a `$` topic readable
    ["%u/#", "c1", "$share", null],
    ["clients/%c/#", "$dev", undefined, "clients/$dev/#"], // `$` only matters at the start
    ["x/%c/%u", "dev-1", "alice", "x/dev-1/alice"],
    ["%u/%c/%u", "d", "u", "u/d/u"],
    ["a/%x/%%/b%", "c1", "u", "a/%x/%%/b%"], // other `%` sequences stay as they are
  ] as const)("%j with client id %j and user %j: %j", (pattern, clientId, username, expected) => {
    const a = acl([pattern], clientId, username);
    expect(a.size).toBe(expected === null ? 0 : 1);
    if (expected !== null) {
      expect(a.access(expected)).toBe("covered");
    }
    expect(a.allows("clients/victim-1/secret")).toBe(false);
    expect(a.allows("users/victim/secret")).toBe(false);
  });

  test("substituted values stay one literal level: they never widen a pattern (property)", () => {
    const value = fc.array(fc.constantFrom("a", "+", "#", "/", "%", "c", "u", "$", "\u0000"), { minLength: 0, maxLength: 4 }).map((l) => l.join(""));
    const pattern = fc.constantFrom("x/%c/#", "%u/%c", "x/%u/%c/#", "%c/#", "%c%u/+", "x/%%c/%u");
    fc.assert(
      fc.property(pattern, value, fc.option(value, { nil: undefined }), (p, c, u) => {
        const a = acl([p], c, u);
        const topic = (cv: string, uv: string) => p.replace(/%([cu])/g, (_, k) => (k === "c" ? cv : uv)).replace("#", "t").replace("+", "w");
        if (a.size === 0) return;
        expect(a.allows(topic(c, u!))).toBe(true); // the client's own topics
        expect(a.allows(topic("zz", "zz"))).toBe(false); // nobody else's
      }),
      { numRuns: 3000 },
    );
  });

  test("agrees with subscription matching (property)", () => {
    const level = fc.constantFrom("a", "b", "", "$x");
    const topic = fc
      .array(level, { minLength: 1, maxLength: 4 })
      .map((l) => l.join("/"))
      .filter((t) => t.length > 0);
    const pattern = fc
      .tuple(fc.array(fc.constantFrom("a", "b", "", "+", "$x"), { minLength: 0, maxLength: 3 }), fc.boolean())
      .map(([levels, hash]) => (hash ? [...levels, "#"] : levels.length ? levels : ["a"]).join("/"))
      .filter((p) => p.length > 0);
    fc.assert(
      fc.property(pattern, topic, (p, t) => {
        expect(acl([p]).allows(t)).toBe(topicMatches(p, t));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("TopicAcl.access (subscription filters)", () => {
  test.each([
    [["a/#"], "a/b", "covered"],
    [["a/#"], "a/#", "covered"],
    [["a/#"], "a", "covered"],
    [["a/#"], "#", "partial"],
    [["a/#"], "+/b", "partial"],
    [["a/#"], "b/#", "denied"],
    [["a/+"], "a/#", "partial"],
    [["a/+"], "a/+/c", "denied"],
    [["#"], "+/x", "covered"],
    [["#"], "$SYS/#", "denied"],
    [["#", "$SYS/#"], "$SYS/broker/+", "covered"],
    [["+/x"], "$SYS/x", "denied"],
    [["$SYS/#"], "#", "denied"],
    [["a/b"], "+/+", "partial"],
  ])("%j gives %s: %s", (patterns, filter, expected) => {
    expect(acl(patterns).access(filter)).toBe(expected);
  });

  // "covered" must mean every matching topic is readable; "denied" that none is.
  test("agrees with topic matching (property)", () => {
    const levels = ["a", "b", "$x"];
    const topics: string[] = [];
    const grow = (prefix: string[], depth: number) => {
      if (prefix.length) topics.push(prefix.join("/"));
      if (depth === 0) return;
      for (const l of levels) grow([...prefix, l], depth - 1);
    };
    grow([], 3);
    const filter = fc
      .tuple(fc.array(fc.constantFrom("a", "b", "+", "$x"), { minLength: 0, maxLength: 3 }), fc.boolean())
      .map(([l, hash]) => (hash ? [...l, "#"] : l.length ? l : ["a"]).join("/"))
      .filter((f) => f.length > 0);
    fc.assert(
      fc.property(fc.array(filter, { minLength: 1, maxLength: 3 }), filter, (patterns, f) => {
        const a = acl(patterns);
        const access = a.access(f);
        const matching = topics.filter((t) => topicMatches(f, t));
        const readable = matching.filter((t) => a.allows(t));
        if (access === "covered") expect(readable).toEqual(matching);
        if (access === "denied") expect(readable).toEqual([]);
        // "partial": some readable topic matches the filter (not necessarily every one: patterns
        // that cover a filter only together are judged per message)
        if (access === "partial") expect(readable.length).toBeGreaterThan(0);
      }),
      { numRuns: 2000 },
    );
  });
});
