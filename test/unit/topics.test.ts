// Topic names, filters and matching (MQTT 3.1.1 §4.7, MQTT 5.0 §4.7, §4.8.2), as tables.
import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { TopicAcl } from "../../src/auth/acl";
import { isValidTopicFilter, isValidTopicName, literalPrefix, parseSharedFilter, prefixEnd, topicMatches } from "../../src/topics/validate";
import { TopicTrie } from "../../src/topics/trie";

describe("topic names", () => {
  test.each([
    "a",
    "a/b/c",
    "/",
    "/a",
    "a/",
    "a//b",
    "//",
    "$SYS/broker/uptime",
    "$",
    " ",
    "sport/tennis/player1",
    "ü/日本/😀",
    "__proto__",
    "constructor/prototype",
    "a".repeat(65535),
  ])("valid name %j [MQTT-4.7.3-1]", (name) => {
    expect(isValidTopicName(name)).toBe(true);
  });

  test.each([
    ["", "empty [MQTT-4.7.3-1]"],
    ["+", "single-level wildcard [MQTT-3.3.2-2]"],
    ["#", "multi-level wildcard [MQTT-3.3.2-2]"],
    ["a/+/b", "wildcard level [MQTT-3.3.2-2]"],
    ["a/#", "trailing wildcard [MQTT-3.3.2-2]"],
    ["a+b", "wildcard inside a level [MQTT-4.7.3-2]"],
    ["a#", "wildcard inside a level [MQTT-4.7.3-2]"],
    ["a\u0000b", "NUL character [MQTT-4.7.3-2]"],
    ["a".repeat(65536), "longer than 65535"],
  ])("invalid name %j: %s", (name) => {
    expect(isValidTopicName(name)).toBe(false);
  });
});

describe("topic filters", () => {
  test.each([
    "#",
    "+",
    "+/+",
    "+/#",
    "/#",
    "/+",
    "a/#",
    "a/+/b",
    "a/+/+/#",
    "a//b",
    "a/",
    "/",
    "$SYS/#",
    "$SYS/+/x",
    "__proto__/#",
    "sport/tennis/player1",
  ])("valid filter %j [MQTT-4.7.1-2, 4.7.1-3]", (filter) => {
    expect(isValidTopicFilter(filter)).toBe(true);
  });

  test.each([
    ["", "empty [MQTT-4.7.3-1]"],
    ["a/#/b", "# not last [MQTT-4.7.1-2]"],
    ["#/", "# not last [MQTT-4.7.1-2]"],
    ["a#", "# not a whole level [MQTT-4.7.1-2]"],
    ["a/b#", "# not a whole level [MQTT-4.7.1-2]"],
    ["##", "# not a whole level [MQTT-4.7.1-2]"],
    ["a+", "+ not a whole level [MQTT-4.7.1-3]"],
    ["+a/b", "+ not a whole level [MQTT-4.7.1-3]"],
    ["a/++/b", "+ not a whole level [MQTT-4.7.1-3]"],
    ["a/\u0000", "NUL character [MQTT-4.7.3-2]"],
  ])("invalid filter %j: %s", (filter) => {
    expect(isValidTopicFilter(filter)).toBe(false);
  });
});

describe("shared subscriptions $share/<group>/<filter> (MQTT 5.0 §4.8.2)", () => {
  test.each([
    ["$share/g/a/b", { group: "g", filter: "a/b" }],
    ["$share/g/#", { group: "g", filter: "#" }],
    ["$share/group-1/+/x/#", { group: "group-1", filter: "+/x/#" }],
    ["$share/g//a", { group: "g", filter: "/a" }],
    ["$share/g/$SYS/#", { group: "g", filter: "$SYS/#" }],
  ])("%j is shared", (filter, parsed) => {
    expect(parseSharedFilter(filter)).toEqual(parsed);
  });

  test.each([
    ["$share/g", "no filter"],
    ["$share/g/", "empty filter"],
    ["$share//a", "empty share name"],
    ["$share/g+/a", "wildcard in share name [MQTT-4.8.2-2]"],
    ["$share/#/a", "wildcard in share name [MQTT-4.8.2-2]"],
    ["$share/g/a/#/b", "invalid inner filter"],
  ])("%j is an invalid shared filter: %s", (filter) => {
    expect(parseSharedFilter(filter)).toBe("invalid");
  });

  test.each(["a/b", "#", "$SYS/#", "$shared/g/a", "share/g/a", "$share"])("%j is not shared", (filter) => {
    expect(parseSharedFilter(filter)).toBeNull();
  });
});

// [filter, topic, matches]
const MATCHES: [string, string, boolean][] = [
  ["a/b", "a/b", true],
  ["a/b", "a/b/c", false],
  ["a/b", "a", false],
  ["a/b", "a/b/", false],
  ["a/b", "A/b", false],
  ["#", "a", true],
  ["#", "a/b/c", true],
  ["#", "/", true],
  ["#", "/a", true],
  ["+", "a", true],
  ["+", "a/b", false],
  ["+", "/a", false],
  ["+", "/", false],
  ["+/+", "/a", true], // "/finance" matches "+/+" (spec example)
  ["/+", "/a", true],
  ["+/+", "a/b", true],
  ["+/+", "a", false],
  ["+/+", "a/b/c", false],
  ["+/#", "a", true],
  ["a/+/b", "a//b", true], // an empty level is a level
  ["a//b", "a//b", true],
  ["a//b", "a/x/b", false],
  ["a/+", "a/", true],
  ["a/+", "a", false],
  ["a/#", "a", true], // [MQTT-4.7.1-2] "sport/#" also matches "sport"
  ["a/#", "a/", true],
  ["a/#", "a/b/c", true],
  ["a/#", "ab", false],
  ["sport/tennis/player1/#", "sport/tennis/player1", true],
  ["sport/tennis/player1/#", "sport/tennis/player1/ranking", true],
  ["sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true],
  ["sport/tennis/+", "sport/tennis/player1", true],
  ["sport/tennis/+", "sport/tennis/player1/ranking", false],
  ["sport/+", "sport", false],
  ["sport/+", "sport/", true],
  ["/#", "/a/b", true],
  ["/#", "a/b", false],
  // [MQTT-4.7.2-1] a filter starting with a wildcard does not match a topic starting with $
  ["#", "$SYS/uptime", false],
  ["#", "$", false],
  ["+/uptime", "$SYS/uptime", false],
  ["+/#", "$SYS/a", false],
  ["$SYS/#", "$SYS/uptime", true],
  ["$SYS/#", "$SYS", true],
  ["$SYS/+", "$SYS/uptime", true],
  ["$SYS/uptime", "$SYS/uptime", true],
  ["a/#", "a/$b", true], // only a leading $ is special
  ["a/+", "a/$b", true],
  // levels named like Object.prototype members are ordinary levels
  ["__proto__/+", "__proto__/x", true],
  ["__proto__/#", "__proto__", true],
  ["+/constructor", "a/constructor", true],
  ["constructor", "constructor", true],
  ["constructor", "toString", false],
  ["__proto__", "x", false],
  ["hasOwnProperty/#", "hasOwnProperty/a/b", true],
];

describe("matching", () => {
  test.each(MATCHES)("topicMatches(%j, %j) = %s [MQTT-4.7.1-1]", (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });

  // The third matcher: ACL patterns are topic filters too (auth/acl.ts), judged by the same table.
  test.each(MATCHES)("ACL pattern %j allows topic %j = %s", (filter, topic, expected) => {
    expect(TopicAcl.compile([filter], "client", "user").allows(topic)).toBe(expected);
  });

  test.each(MATCHES)("trie: filter %j against topic %j = %s [MQTT-4.7.1-1]", (filter, topic, expected) => {
    const trie = new TopicTrie<string>();
    trie.add(filter, "c", filter);
    // noise that must not match
    trie.add("zz/top", "other", "zz/top");
    const got: string[] = [];
    trie.match(topic, (v) => got.push(v), () => {});
    expect(got).toEqual(expected ? [filter] : []);
  });

  test.each(MATCHES)("trie: shared $share/g/%s against %j = %s", (filter, topic, expected) => {
    const trie = new TopicTrie<string>();
    trie.addShared("g", filter, "c", filter);
    const groups: string[] = [];
    trie.match(topic, () => {}, (g) => groups.push(`${g.name}:${g.filter}`));
    expect(groups).toEqual(expected ? [`g:${filter}`] : []);
  });

  test("trie and topicMatches agree on random filters and topics", () => {
    const level = fc.constantFrom("a", "b", "", "$x", "__proto__", "constructor");
    const topicArb = fc.array(level, { minLength: 1, maxLength: 4 }).map((l) => l.join("/"));
    const filterArb = fc
      .tuple(fc.array(fc.oneof(level, fc.constant("+")), { minLength: 1, maxLength: 4 }), fc.boolean())
      .map(([l, hash]) => (hash ? [...l, "#"] : l).join("/"));
    fc.assert(
      fc.property(fc.array(filterArb, { minLength: 1, maxLength: 6 }), topicArb, (filters, topic) => {
        const trie = new TopicTrie<string>();
        filters.forEach((f, i) => trie.add(f, `c${i}`, f));
        const got: string[] = [];
        trie.match(topic, (v) => got.push(v), () => {});
        const expected = filters.filter((f) => topicMatches(f, topic));
        expect(got.sort()).toEqual(expected.sort());
      }),
      { numRuns: 2000 },
    );
  });
});

describe("literalPrefix (narrows the retained-message scan)", () => {
  test.each([
    ["a/b", "a/b"],
    ["a/+/c", "a/"],
    ["a/#", "a"], // "a/#" matches "a" too
    ["a/+/#", "a/"],
    ["/#", ""],
    ["#", ""],
    ["+/a", ""],
  ])("%j → %j", (filter, prefix) => {
    expect(literalPrefix(filter)).toBe(prefix);
  });

  test.each(MATCHES.filter(([, , m]) => m))("every topic matched by %j starts with its prefix (%j)", (filter, topic) => {
    expect(topic.startsWith(literalPrefix(filter))).toBe(true);
  });
});

describe("prefixEnd (upper bound of a prefix range in SQLite's UTF-8 byte order)", () => {
  const utf8 = (s: string) => Buffer.from(s, "utf8");
  const inRange = (topic: string, prefix: string) => {
    const end = prefixEnd(prefix);
    return Buffer.compare(utf8(topic), utf8(prefix)) >= 0 && (end === null || Buffer.compare(utf8(topic), utf8(end)) < 0);
  };

  test.each([
    ["a/", "a0"],
    ["a", "b"],
    ["a/\ud7ff", "a/\ue000"],
    ["x\uffff", "x\u{10000}"],
    ["x\u{10ffff}", "y"],
    ["\u{10ffff}", null],
  ])("prefixEnd(%j) = %j", (prefix, end) => {
    expect(prefixEnd(prefix)).toBe(end);
  });

  test("selects exactly the topics that start with the prefix, for any characters", () => {
    const char = fc.constantFrom("a", "/", "z", "\u007f", "\u0080", "é", "\uffff", "日", "😀", "\u{10ffff}", "\ud7ff", "\ue000");
    const str = fc.array(char, { maxLength: 5 }).map((c) => c.join(""));
    fc.assert(
      fc.property(str, str, (prefix, topic) => {
        expect(inRange(topic, prefix)).toBe(topic.startsWith(prefix));
        expect(inRange(prefix + topic, prefix)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });
});
