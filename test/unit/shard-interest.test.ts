// Interest between shards (docs/scale-out.md §5, §7): the own summary's refcounts, the peers'
// views (idempotent ops), MQTT matching of `targets` and `groups`, checked against a brute-force
// scan with topicMatches. Exact filters travel and are kept as 32-bit fingerprints: never a false
// negative, and a false positive only for a topic sharing a fingerprint with a peer's exact filter.
import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { fingerprint, isExactFilter } from "../../src/shards/fingerprint";
import { Interest } from "../../src/shards/interest";
import { parseSharedFilter, topicMatches } from "../../src/topics/validate";

/** two exact filters with one fingerprint (found by a birthday search over "c/<n>") */
const TWIN_A = "c/29858";
const TWIN_B = "c/146529";

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

  test("counts exact filters by fingerprint: two sharing one are one announcement, withdrawn with the last", () => {
    expect(TWIN_A).not.toBe(TWIN_B);
    expect(fingerprint(TWIN_A)).toBe(fingerprint(TWIN_B));
    const i = new Interest(0, 2);
    expect(i.localAdded(TWIN_A)).toBe(true);
    expect(i.localAdded(TWIN_B)).toBe(false); // its fingerprint is announced already
    expect(i.localAdded(TWIN_A)).toBe(false);
    expect(i.localFingerprints()).toEqual([fingerprint(TWIN_A)]);
    expect(i.localRemoved(TWIN_A)).toBe(false);
    expect(i.localRemoved(TWIN_A)).toBe(false); // TWIN_B still needs it
    expect(i.localRemoved(TWIN_B)).toBe(true);
    expect(i.localFingerprints()).toEqual([]);
    expect(i.localRemoved(TWIN_B)).toBe(false);
    expect(i.sizes().localFilters).toBe(0);
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

  test("viewOf lists a peer's wildcard and shared filters as announced, fingerprintsOf its exact ones", () => {
    const i = new Interest(0, 3);
    const filters = ["a/b", "+/x/#", "#", "/", "$share/g/+/y", "$share/h/z", "/+"];
    i.load(filters.map((filter) => ({ peer: 1, filter })));
    i.apply(2, true, "other/#");
    i.apply(2, true, "other");
    const trie = filters.filter((f) => !isExactFilter(f));
    expect(i.viewOf(1).sort()).toEqual([...trie].sort());
    expect(i.fingerprintsOf(1)).toEqual([fingerprint("a/b"), fingerprint("/")].sort((a, b) => a - b));
    expect(i.fingerprintsOf(2)).toEqual([fingerprint("other")]);
    expect(i.viewOf(0)).toEqual([]);
    expect(i.fingerprintsOf(0)).toEqual([]);
    const copy = new Interest(0, 3);
    copy.load(i.viewOf(1).map((filter) => ({ peer: 1, filter })));
    copy.loadFingerprints(i.fingerprintsOf(1).map((fp) => ({ peer: 1, fp })));
    expect(copy.sizes()).toMatchObject({ exactFilters: 2, wildFilters: 3, sharedFilters: 2 });
    expect(targetsOf(copy, "a/b")).toEqual([1]);
  });

  test("applyFingerprint is the same view as apply of the filter, and refuses what is not 32 bits", () => {
    const i = new Interest(0, 3);
    expect(i.applyFingerprint(1, true, fingerprint("a/b"))).toBe(true);
    expect(i.apply(1, true, "a/b")).toBe(false);
    expect(targetsOf(i, "a/b")).toEqual([1]);
    for (const fp of [-1, 2 ** 32, 0.5, NaN]) expect(i.applyFingerprint(2, true, fp)).toBe(false);
    expect(i.applyFingerprint(0, true, 5)).toBe(false); // self
    expect(i.apply(1, false, "a/b")).toBe(true);
    expect(i.hasAny()).toBe(false);
  });

  test("two filters sharing a fingerprint: one entry per peer; the twin topic is a false positive, nothing is lost", () => {
    const i = new Interest(0, 4);
    expect(i.apply(1, true, TWIN_A)).toBe(true);
    expect(targetsOf(i, TWIN_A)).toEqual([1]);
    expect(targetsOf(i, TWIN_B)).toEqual([1]); // a useless copy: shard 1's router finds nobody
    expect(targetsOf(i, "c/1")).toEqual([]);
    expect(i.apply(1, true, TWIN_B)).toBe(false); // the same entry
    expect(i.apply(2, true, TWIN_B)).toBe(true);
    expect(targetsOf(i, TWIN_A)).toEqual([1, 2]);
    expect(i.sizes()).toMatchObject({ exactFilters: 1, exactPairs: 2, perPeer: [0, 1, 1, 0] });
    expect(i.apply(1, false, TWIN_B)).toBe(true); // a remove by either name withdraws the fingerprint
    expect(targetsOf(i, TWIN_A)).toEqual([2]);
    expect(i.clearPeer(2)).toBe(1);
    expect(i.hasAny()).toBe(false);
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
    // a callback may look up another topic (and targets) without breaking the outer walk
    const outer: string[] = [];
    s.groups("a/b", (f) => {
      outer.push(f);
      expect(groupsOf(s, "a")).toEqual([["$share/g/#", [1]]]);
      expect(targetsOf(s, "a/b")).toEqual([]);
    });
    expect(outer.sort()).toEqual(["$share/g/#", "$share/g/a/+", "$share/g/a/b", "$share/h/a/+"]);
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
  // the twins: a topic and a filter may share a fingerprint without being equal
  const twin = fc.constantFrom(TWIN_A, TWIN_B);
  const topicArb = fc.oneof({ weight: 6, arbitrary: fc.array(level, { minLength: 1, maxLength: 4 }).map((l) => l.join("/")) }, { weight: 1, arbitrary: twin });
  const filterArb = fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .tuple(fc.array(fc.oneof(level, fc.constant("+")), { minLength: 1, maxLength: 4 }), fc.boolean(), fc.constantFrom(null, "g", "h"))
        .map(([levels, hash, group]) => {
          const f = (hash ? [...levels.slice(0, -1), "#"] : levels).join("/");
          return group ? `$share/${group}/${f}` : f;
        }),
    },
    { weight: 1, arbitrary: twin },
  );
  const K = 5;
  const opArb = fc.record({ peer: fc.integer({ min: 0, max: K - 1 }), add: fc.boolean(), filter: filterArb });
  const stepArb = fc.oneof(
    { weight: 12, arbitrary: opArb.map((op) => ({ kind: "op" as const, ...op })) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: K - 1 }).map((peer) => ({ kind: "clear" as const, peer })) },
  );

  test("targets and groups equal a scan of every peer's filters with topicMatches, exact ones by fingerprint", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: K - 1 }), fc.array(stepArb, { maxLength: 40 }), fc.array(topicArb, { minLength: 1, maxLength: 8 }), (self, steps, topics) => {
        const interest = new Interest(self, K);
        // per peer: wildcard and shared filters as strings, exact ones as the fingerprints announced
        const model = Array.from({ length: K }, () => ({ strings: new Set<string>(), fps: new Set<number>() }));
        const size = (m: (typeof model)[number]) => m.strings.size + m.fps.size;
        for (const step of steps) {
          if (step.kind === "clear") {
            expect(interest.clearPeer(step.peer)).toBe(step.peer === self ? 0 : size(model[step.peer]!));
            model[step.peer]!.strings.clear();
            model[step.peer]!.fps.clear();
            continue;
          }
          const m = model[step.peer]!;
          const exact = isExactFilter(step.filter);
          const set: Set<string | number> = exact ? m.fps : m.strings;
          const key = exact ? fingerprint(step.filter) : step.filter;
          // ops of self and malformed shared filters (`$share/g/` has an empty filter) are ignored
          const kept = step.peer !== self && parseSharedFilter(step.filter) !== "invalid";
          const expectChange = kept && (step.add ? !set.has(key) : set.has(key));
          expect(interest.apply(step.peer, step.add, step.filter)).toBe(expectChange);
          if (kept) step.add ? set.add(key) : set.delete(key);
        }
        model.forEach((m, peer) => {
          expect(interest.viewOf(peer).sort()).toEqual([...m.strings].sort());
          expect(interest.fingerprintsOf(peer)).toEqual([...m.fps].sort((a, b) => a - b));
        });
        for (const topic of topics) {
          const want: number[] = [];
          const wantGroups = new Map<string, number[]>();
          const fp = fingerprint(topic);
          model.forEach((m, peer) => {
            let hit = m.fps.has(fp);
            for (const f of m.strings) {
              const shared = parseSharedFilter(f);
              if (shared && shared !== "invalid") {
                if (topicMatches(shared.filter, topic)) wantGroups.set(f, [...(wantGroups.get(f) ?? []), peer]);
              } else if (topicMatches(f, topic)) hit = true;
            }
            if (hit) want.push(peer);
          });
          // equal: no false negative, and a false positive only where the topic's fingerprint is a peer's
          // (the twins: a peer with TWIN_A gets TWIN_B's copies)
          expect(targetsOf(interest, topic)).toEqual(want);
          expect(groupsOf(interest, topic)).toEqual([...wantGroups].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
        }
        expect(interest.hasAny()).toBe(model.some((m) => size(m) > 0));
        expect(interest.sizes().perPeer).toEqual(model.map(size));
      }),
      { numRuns: 2000 },
    );
  });

  test("localAdded / localRemoved announce exactly the presence changes of a multiset", () => {
    fc.assert(
      // only filters added before are removed (the router's promise): a fingerprint alone cannot tell twins apart
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.constantFrom("a", "a/+", "$share/g/a", "b", TWIN_A, TWIN_B)), { maxLength: 60 }), (ops) => {
        const interest = new Interest(0, 2);
        const perFilter = new Map<string, number>();
        // what is announced: strings for wildcard and shared filters, fingerprints for exact ones
        const keyOf = (f: string) => (isExactFilter(f) ? fingerprint(f) : f);
        const counts = new Map<string | number, number>();
        const announced = new Set<string | number>();
        for (const [add, f] of ops) {
          if (!add && !perFilter.get(f)) continue;
          perFilter.set(f, (perFilter.get(f) ?? 0) + (add ? 1 : -1));
          const key = keyOf(f);
          const n = counts.get(key) ?? 0;
          if (add) {
            const announce = interest.localAdded(f);
            expect(announce).toBe(n === 0);
            if (announce) announced.add(key);
            counts.set(key, n + 1);
          } else {
            const announce = interest.localRemoved(f);
            expect(announce).toBe(n === 1);
            if (announce) announced.delete(key);
            counts.set(key, n - 1);
          }
        }
        expect(new Set<string | number>([...interest.localFilters(), ...interest.localFingerprints()])).toEqual(announced);
        expect(announced).toEqual(new Set([...counts].filter(([, n]) => n > 0).map(([f]) => f)));
      }),
      { numRuns: 1000 },
    );
  });
});
