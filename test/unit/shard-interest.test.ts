// Interest between shards (docs/scale-out.md §5, §7): the own summary's refcounts, the peers'
// views (idempotent ops), MQTT matching of `targets` and `groups`, checked against a brute-force
// scan with topicMatches.
import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Interest } from "../../src/shards/interest";
import { parseSharedFilter, topicMatches } from "../../src/topics/validate";

function targetsOf(interest: Interest, topic: string): number[] {
  const n = interest.targets(topic);
  return Array.from(interest.shards.subarray(0, n));
}

function groupsOf(interest: Interest, topic: string): [string, number[]][] {
  const out: [string, number[]][] = [];
  interest.groups(topic, (f, shards) => out.push([f, [...shards]]));
  return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

describe("own summary", () => {
  test("announces an add at the first subscription of a filter string and a remove at the last", () => {
    const i = new Interest(0, 4);
    expect(i.localAdded("a/b")).toBe(true);
    expect(i.localAdded("a/b")).toBe(false);
    expect(i.localAdded("a/+")).toBe(true);
    expect(i.localRemoved("a/b")).toBe(false);
    expect(i.localRemoved("a/b")).toBe(true);
    expect(i.localRemoved("a/b")).toBe(false); // unknown: nothing to announce
    expect([...i.localFilters()]).toEqual(["a/+"]);
    expect(i.sizes().localFilters).toBe(1);
  });

  test("counts a shared filter under its whole string, apart from the plain filter and other groups", () => {
    const i = new Interest(0, 2);
    expect(i.localAdded("$share/g/a")).toBe(true);
    expect(i.localAdded("a")).toBe(true);
    expect(i.localAdded("$share/h/a")).toBe(true);
    expect(i.localAdded("$share/g/a")).toBe(false);
    expect(i.localRemoved("$share/g/a")).toBe(false);
    expect(i.localRemoved("$share/g/a")).toBe(true);
    expect(i.localRemoved("a")).toBe(true);
  });
});

describe("views", () => {
  test("apply is idempotent per peer and reports whether the view changed", () => {
    const i = new Interest(0, 4);
    expect(i.apply(1, true, "a/b")).toBe(true);
    expect(i.apply(1, true, "a/b")).toBe(false);
    expect(i.apply(2, true, "a/b")).toBe(true);
    expect(i.apply(3, false, "a/b")).toBe(false);
    expect(i.apply(1, true, "a/#")).toBe(true);
    expect(i.apply(1, true, "a/#")).toBe(false);
    expect(i.sizes()).toMatchObject({ exactFilters: 1, exactPairs: 2, wildFilters: 1, wildPairs: 1, perPeer: [0, 2, 1, 0] });
    expect(i.apply(1, false, "a/b")).toBe(true);
    expect(i.apply(1, false, "a/b")).toBe(false);
    expect(targetsOf(i, "a/b")).toEqual([1, 2]); // 1 through a/#
    expect(i.apply(1, false, "a/#")).toBe(true);
    expect(targetsOf(i, "a/b")).toEqual([2]);
    expect(i.apply(2, false, "a/b")).toBe(true);
    expect(targetsOf(i, "a/b")).toEqual([]);
    expect(i.hasAny()).toBe(false);
    expect(i.sizes()).toMatchObject({ exactFilters: 0, exactPairs: 0, wildFilters: 0, wildPairs: 0, perPeer: [0, 0, 0, 0] });
  });

  test("ignores ops from self, from a shard outside 0 … k − 1 and malformed shared filters", () => {
    const i = new Interest(2, 4);
    expect(i.apply(2, true, "a")).toBe(false);
    expect(i.apply(4, true, "a")).toBe(false);
    expect(i.apply(-1, true, "a")).toBe(false);
    expect(i.apply(1.5, true, "a")).toBe(false);
    expect(i.apply(1, true, "$share/g")).toBe(false);
    expect(i.apply(1, true, "$share//a")).toBe(false);
    expect(i.hasAny()).toBe(false);
  });

  test("targets never include self, whatever the view holds", () => {
    const i = new Interest(1, 3);
    i.load([
      { peer: 0, filter: "#" },
      { peer: 1, filter: "#" },
      { peer: 2, filter: "x" },
      { peer: 1, filter: "x" },
    ]);
    expect(targetsOf(i, "x")).toEqual([0, 2]);
    expect(targetsOf(i, "y")).toEqual([0]);
  });

  test("clearPeer forgets one peer's exact, wildcard and shared filters and nothing else", () => {
    const i = new Interest(0, 4);
    i.load(
      ["a", "b", "c/+", "c/#", "$share/g/a", "$share/g/c/+"].flatMap((filter) => [
        { peer: 1, filter },
        { peer: 2, filter },
      ]),
    );
    i.apply(1, true, "only1");
    i.apply(1, true, "only1/#");
    expect(i.clearPeer(1)).toBe(8);
    expect(i.clearPeer(1)).toBe(0);
    expect(i.sizes()).toMatchObject({ exactFilters: 2, exactPairs: 2, wildFilters: 2, wildPairs: 2, sharedFilters: 2, sharedPairs: 2, perPeer: [0, 0, 6, 0] });
    expect(targetsOf(i, "a")).toEqual([2]);
    expect(targetsOf(i, "only1")).toEqual([]);
    expect(targetsOf(i, "only1/x")).toEqual([]);
    expect(targetsOf(i, "c/x")).toEqual([2]);
    expect(groupsOf(i, "c/x")).toEqual([["$share/g/c/+", [2]]]);
    expect(i.clearPeer(2)).toBe(6);
    expect(i.hasAny()).toBe(false);
    // the trie was pruned: adding again works from scratch
    expect(i.apply(3, true, "c/+")).toBe(true);
    expect(targetsOf(i, "c/x")).toEqual([3]);
  });

  test("load adds rows idempotently", () => {
    const i = new Interest(0, 3);
    const rows = [
      { peer: 1, filter: "a" },
      { peer: 2, filter: "a" },
      { peer: 1, filter: "a" },
    ];
    i.load(rows);
    i.load(rows);
    expect(i.sizes().exactPairs).toBe(2);
    expect(targetsOf(i, "a")).toEqual([1, 2]);
  });
});

describe("matching", () => {
  const i = new Interest(0, 8);
  i.load([
    { peer: 1, filter: "sport/tennis/player1" },
    { peer: 2, filter: "sport/+" },
    { peer: 3, filter: "sport/#" },
    { peer: 4, filter: "#" },
    { peer: 5, filter: "+/+" },
    { peer: 6, filter: "$SYS/#" },
    { peer: 7, filter: "+/tennis/#" },
    { peer: 6, filter: "/+" },
  ]);
  test.each<[string, number[]]>([
    ["sport/tennis/player1", [1, 3, 4, 7]],
    ["sport/tennis/player2", [3, 4, 7]],
    ["sport", [3, 4]], // # includes the parent level
    ["sport/", [2, 3, 4, 5]], // an empty level is a level
    ["sport/tennis", [2, 3, 4, 5, 7]],
    ["/finance", [4, 5, 6]],
    ["$SYS/broker/uptime", [6]], // no leading wildcard matches a $ topic [MQTT-4.7.2-1]
    ["$SYS", [6]],
    ["$x/tennis", []],
    ["a/tennis", [4, 5, 7]],
    ["sport/tennis/player1/x", [3, 4, 7]],
    ["sport/tennis/player", [3, 4, 7]], // exact means equal, not a prefix
  ])("%s → %j", (topic, expected) => {
    expect(targetsOf(i, topic)).toEqual(expected);
  });

  test("shared filters are not targets, and groups reports them with their peers", () => {
    const s = new Interest(0, 4);
    s.load([
      { peer: 1, filter: "$share/g/a/+" },
      { peer: 3, filter: "$share/g/a/+" },
      { peer: 2, filter: "$share/h/a/+" },
      { peer: 2, filter: "$share/g/a/b" },
      { peer: 1, filter: "$share/g/#" },
    ]);
    expect(s.hasAny()).toBe(true);
    expect(s.hasShared()).toBe(true);
    expect(targetsOf(s, "a/b")).toEqual([]);
    expect(groupsOf(s, "a/b")).toEqual([
      ["$share/g/#", [1]],
      ["$share/g/a/+", [1, 3]],
      ["$share/g/a/b", [2]],
      ["$share/h/a/+", [2]],
    ]);
    expect(groupsOf(s, "a")).toEqual([["$share/g/#", [1]]]);
    expect(groupsOf(s, "$SYS/x")).toEqual([]);
    s.apply(3, false, "$share/g/a/+");
    s.apply(1, false, "$share/g/a/+");
    expect(groupsOf(s, "a/c")).toEqual([
      ["$share/g/#", [1]],
      ["$share/h/a/+", [2]],
    ]);
  });

  test("levels named like Object members are plain keys", () => {
    const s = new Interest(0, 3);
    s.apply(1, true, "__proto__/+");
    s.apply(2, true, "constructor");
    expect(targetsOf(s, "__proto__/x")).toEqual([1]);
    expect(targetsOf(s, "constructor")).toEqual([2]);
    expect(targetsOf(s, "toString")).toEqual([]);
  });
});

describe("against a brute-force scan", () => {
  const level = fc.constantFrom("a", "b", "", "$x", "__proto__");
  const topicArb = fc.array(level, { minLength: 1, maxLength: 4 }).map((l) => l.join("/"));
  const filterArb = fc
    .tuple(fc.array(fc.oneof(level, fc.constant("+")), { minLength: 1, maxLength: 4 }), fc.boolean(), fc.constantFrom(null, "g", "h"))
    .map(([levels, hash, group]) => {
      const f = (hash ? [...levels.slice(0, -1), "#"] : levels).join("/");
      return group ? `$share/${group}/${f}` : f;
    });
  const K = 5;
  const opArb = fc.record({ peer: fc.integer({ min: 0, max: K - 1 }), add: fc.boolean(), filter: filterArb });
  const stepArb = fc.oneof(
    { weight: 12, arbitrary: opArb.map((op) => ({ kind: "op" as const, ...op })) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: K - 1 }).map((peer) => ({ kind: "clear" as const, peer })) },
  );

  test("targets and groups equal a scan of every peer's filters with topicMatches", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: K - 1 }), fc.array(stepArb, { maxLength: 40 }), fc.array(topicArb, { minLength: 1, maxLength: 8 }), (self, steps, topics) => {
        const interest = new Interest(self, K);
        const model = Array.from({ length: K }, () => new Set<string>());
        for (const step of steps) {
          if (step.kind === "clear") {
            expect(interest.clearPeer(step.peer)).toBe(step.peer === self ? 0 : model[step.peer]!.size);
            model[step.peer]!.clear();
            continue;
          }
          const set = model[step.peer]!;
          // ops of self and malformed shared filters (`$share/g/` has an empty filter) are ignored
          const kept = step.peer !== self && parseSharedFilter(step.filter) !== "invalid";
          const expectChange = kept && (step.add ? !set.has(step.filter) : set.has(step.filter));
          expect(interest.apply(step.peer, step.add, step.filter)).toBe(expectChange);
          if (kept) step.add ? set.add(step.filter) : set.delete(step.filter);
        }
        for (const topic of topics) {
          const want: number[] = [];
          const wantGroups = new Map<string, number[]>();
          model.forEach((filters, peer) => {
            let hit = false;
            for (const f of filters) {
              const shared = parseSharedFilter(f);
              if (shared && shared !== "invalid") {
                if (topicMatches(shared.filter, topic)) wantGroups.set(f, [...(wantGroups.get(f) ?? []), peer]);
              } else if (topicMatches(f, topic)) hit = true;
            }
            if (hit) want.push(peer);
          });
          expect(targetsOf(interest, topic)).toEqual(want);
          expect(groupsOf(interest, topic)).toEqual([...wantGroups].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
        }
        expect(interest.hasAny()).toBe(model.some((s) => s.size > 0));
        expect(interest.sizes().perPeer).toEqual(model.map((s) => s.size));
      }),
      { numRuns: 2000 },
    );
  });

  test("localAdded / localRemoved announce exactly the presence changes of a multiset", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.constantFrom("a", "a/+", "$share/g/a", "b")), { maxLength: 60 }), (ops) => {
        const interest = new Interest(0, 2);
        const counts = new Map<string, number>();
        const announced = new Set<string>();
        for (const [add, f] of ops) {
          const n = counts.get(f) ?? 0;
          if (add) {
            const announce = interest.localAdded(f);
            expect(announce).toBe(n === 0);
            if (announce) announced.add(f);
            counts.set(f, n + 1);
          } else {
            const announce = interest.localRemoved(f);
            expect(announce).toBe(n === 1);
            if (announce) announced.delete(f);
            if (n > 0) counts.set(f, n - 1);
          }
        }
        expect(new Set(interest.localFilters())).toEqual(announced);
        expect(announced).toEqual(new Set([...counts].filter(([, n]) => n > 0).map(([f]) => f)));
      }),
      { numRuns: 1000 },
    );
  });
});
