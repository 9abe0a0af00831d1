// npm run bench:interest — the memory and speed of one shard's views of the others
// (src/shards/interest.ts): N distinct exact filters spread over PEERS peers (kept as 32-bit
// fingerprints, src/shards/fingerprint.ts), then W wildcard filters; heap used (after gc) before
// and after each, build time, and time per targets() for a hit and a miss, over distinct topics
// (each seen once: a cold cache, and no level cache) and over a hot set of 1000; then the false
// positives: the share of FP_TOPICS random topics nobody subscribed that targets() still sends
// somewhere (expected ≈ N / 2³² per topic). Memory is measured first, with no other large array
// alive (an optimised frame may drop a dead array early and blur the figure); lookups come after.
import { Interest } from "../src/shards/interest";

const N = Number(process.env.N ?? 1_000_000);
const W = Number(process.env.W ?? 10_000);
const PEERS = Number(process.env.PEERS ?? 8);
const LOOKUPS = Number(process.env.LOOKUPS ?? 1_000_000);
const RUNS = Number(process.env.RUNS ?? 3);
const FP_TOPICS = Number(process.env.FP_TOPICS ?? 1_000_000);

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");

/** the JS heap and the typed arrays' buffers (held outside it) */
function heap(): number {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const mb = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MB`;
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
// joined, so flat, as a filter read from SQLite or a packet is: a template literal makes a rope that
// V8 flattens on first hashing (and the GC then shortcuts), which would blur the heap figures
const device = (i: number) => ["devices", `${((i * 2654435761) >>> 0).toString(16).padStart(8, "0")}-${i}`, "cmd"].join("/");
const wildcard = (i: number) => (i % 2 ? ["fleet", String(i), "#"] : ["devices", `${(i * 7919).toString(16)}-w`, "+"]).join("/");

function memory(label: string, count: number, build: () => void, estimate: () => number): void {
  const before = heap();
  const t0 = process.hrtime.bigint();
  build();
  const took = ms(t0);
  const used = heap() - before;
  console.log(`${label}: built in ${took.toFixed(0)} ms (${((took * 1e6) / count).toFixed(0)} ns each); heap +${mb(used)}, ${(used / count).toFixed(0)} bytes per filter (strings and typed arrays included); memoryEstimate() ${mb(estimate())}`);
}

/**
 * ns per targets() over `topics` round robin, median of RUNS. A hit must always be found; a miss
 * may be a false positive (its fingerprint is a subscribed filter's), which must stay rare.
 */
function lookup(interest: Interest, topics: string[], expectHit: boolean): string {
  const runs: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    let hits = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < LOOKUPS; i++) hits += interest.targets(topics[i % topics.length]!) > 0 ? 1 : 0;
    runs.push(Number(process.hrtime.bigint() - t0) / LOOKUPS);
    if (expectHit ? hits !== LOOKUPS : hits > LOOKUPS / 1000) throw new Error(`hits ${hits} of ${LOOKUPS}, expected ${expectHit ? "all" : "almost none"}`);
  }
  return `${runs.sort((a, b) => a - b)[RUNS >> 1]!.toFixed(0)} ns`;
}

/** xorshift32: the same random topics every run */
let seed = 0x2545f491;
function random32(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return seed >>> 0;
}

/** Fresh flat strings, not the keys' own: a topic from a PUBLISH is a new string. */
const fresh = (count: number, make: (i: number) => string) => Array.from({ length: count }, (_, i) => make(i).split("").join(""));

// ---- memory ----
const interest = new Interest(0, PEERS + 1); // self 0, peers 1 … PEERS
memory(`${N.toLocaleString()} exact filters over ${PEERS} peers`, N, () => {
  for (let i = 0; i < N; i++) interest.apply(1 + (i % PEERS), true, device(i));
}, () => interest.memoryEstimate());
const built = interest.sizes();
console.log(`  ${built.exactFilters.toLocaleString()} distinct fingerprints, ${built.exactPairs.toLocaleString()} (fingerprint, peer) pairs: ${(N - built.exactPairs).toLocaleString()} filters shared a fingerprint with another of the same peer (one entry)`);

let sink = 0;
const t1 = process.hrtime.bigint();
for (let i = 0; i < N; i++) sink += device(i).length;
if (sink === 0) throw new Error("no strings");
console.log(`  (making the ${N.toLocaleString()} filter strings alone takes ${ms(t1).toFixed(0)} ms of each build time above and below)`);

let local: Interest | null = new Interest(0, PEERS + 1);
memory(`own summary of ${N.toLocaleString()} local filters`, N, () => {
  for (let i = 0; i < N; i++) local!.localAdded(device(i));
}, () => local!.memoryEstimate());
local = null;

let multi: Interest | null = new Interest(0, PEERS + 1);
const M = Math.floor(N / 10);
memory(`${M.toLocaleString()} exact filters each announced by 3 peers`, M, () => {
  for (let i = 0; i < M; i++) for (let p = 1; p <= 3; p++) multi!.apply(1 + ((i + p) % PEERS), true, device(i));
}, () => multi!.memoryEstimate());
multi = null;

// ---- lookups, exact filters only ----
const hits = fresh(Math.min(N, LOOKUPS), device);
const misses = fresh(Math.min(N, LOOKUPS), (i) => device(i + N));
const hotHits = hits.slice(0, 1000);
const hotMisses = misses.slice(0, 1000);
lookup(interest, hotHits, true); // warm-up
console.log(`targets(), exact filters only: hit ${lookup(interest, hits, true)}, miss ${lookup(interest, misses, false)} (distinct topics); hot set: hit ${lookup(interest, hotHits, true)}, miss ${lookup(interest, hotMisses, false)}`);

// ---- false positives: random topics nobody subscribed (a different shape than any filter) ----
{
  let falsePositives = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < FP_TOPICS; i++) {
    const topic = ["devices", random32().toString(36) + random32().toString(36), "cmd"].join("/");
    if (interest.targets(topic) > 0) falsePositives++;
  }
  const expected = (FP_TOPICS * built.exactFilters) / 2 ** 32;
  console.log(`false positives: ${falsePositives} of ${FP_TOPICS.toLocaleString()} random unsubscribed topics (${((falsePositives / FP_TOPICS) * 100).toFixed(4)} %; expected ≈ ${expected.toFixed(0)} = topics × distinct fingerprints / 2³²), ${(Number(process.hrtime.bigint() - t0) / FP_TOPICS).toFixed(0)} ns per topic with making it`);
}

// ---- wildcard filters: half `devices/<id>/+` (W/2 siblings of the device ids), half `fleet/<n>/#` ----
memory(`+ ${W.toLocaleString()} wildcard filters`, W, () => {
  for (let i = 0; i < W; i++) interest.apply(1 + (i % PEERS), true, wildcard(i));
}, () => interest.memoryEstimate());
const wildHits = fresh(1000, (i) => `fleet/${2 * i + 1}/x/y`);
console.log(`targets(), with them: exact hit ${lookup(interest, hits, true)}, miss ${lookup(interest, misses, false)} (distinct topics); hot set: exact hit ${lookup(interest, hotHits, true)}, miss ${lookup(interest, hotMisses, false)}, wildcard hit ${lookup(interest, wildHits, true)}`);

const t0 = process.hrtime.bigint();
const cleared = interest.clearPeer(1);
console.log(`clearPeer(1): ${cleared.toLocaleString()} filters in ${ms(t0).toFixed(0)} ms`);
