// The cost projection: what a measured window of traffic costs per month on Cloudflare Durable
// Objects, next to AWS IoT Core's list price for the same traffic. Pure arithmetic on the
// counters and prices.json; tested in test/unit/cost.test.ts.

/**
 * @typedef {object} Measured  counts over the window (differences of two `stats` readings)
 * @property {number} websocketMessages  `events.websocketMessages`
 * @property {number} rpc               `events.rpc`
 * @property {number} http              `events.http`
 * @property {number} alarms            `events.alarms`
 * @property {number} awakeMs           `events.awakeMs`
 * @property {number} rowsWritten       `events.rowsWritten`
 * @property {number} [storageBytes]    bytes stored at the end (a level, not a rate)
 * @property {number} connectionMinutes AWS: minutes devices were connected in the window
 * @property {number} awsMessages       AWS: metered messages (5 KB units, in and out) in the window
 */

/**
 * @typedef {object} Line
 * @property {"cloudflare"|"aws"} provider
 * @property {string} item
 * @property {number} quantity   per month
 * @property {string} unit
 * @property {number} included   the provider's monthly allowance (0: none applied)
 * @property {number} list       cost per month before any allowance, USD
 * @property {number} cost       cost per month after the allowance, USD
 */

/**
 * Projects a window of `durationSeconds` to a month (prices.month.seconds), linearly.
 * Returns one line per billed item, and totals: `list` before allowances, `cost` after them
 * (Cloudflare's monthly allowances of the Workers Paid plan; AWS's free tier lasts 12 months
 * for new accounts and is not applied). `ratio`: AWS list price / Cloudflare list price, both
 * before allowances.
 * @param {Measured} m
 * @param {number} durationSeconds
 * @param {any} prices  bench/cost/prices.json
 * @returns {{ lines: Line[], cloudflare: { list: number, cost: number }, aws: { list: number, cost: number }, ratio: number }}
 */
export function project(m, durationSeconds, prices) {
  if (!(durationSeconds > 0)) throw new Error("durationSeconds must be > 0");
  const scale = prices.month.seconds / durationSeconds;
  const cf = prices.cloudflare;
  const aws = prices.aws;
  /** @type {Line[]} */
  const lines = [];
  const add = (provider, item, quantity, unit, included, perUnit) => {
    lines.push({ provider, item, quantity, unit, included, list: quantity * perUnit, cost: Math.max(0, quantity - included) * perUnit });
  };

  const requests = (m.websocketMessages / cf.requests.websocketMessageRatio + m.rpc + m.http + m.alarms) * scale;
  add("cloudflare", "requests", requests, "requests", cf.requests.includedPerMonth, cf.requests.perMillion / 1e6);
  const gbs = (m.awakeMs / 1000) * cf.duration.memoryGB * scale;
  add("cloudflare", "duration", gbs, "GB-s", cf.duration.includedGBsPerMonth, cf.duration.perMillionGBs / 1e6);
  add("cloudflare", "rows written", m.rowsWritten * scale, "rows", cf.rowsWritten.includedPerMonth, cf.rowsWritten.perMillion / 1e6);
  add("cloudflare", "storage", (m.storageBytes ?? 0) / 1e9, "GB-month", cf.storage.includedGBMonth, cf.storage.perGBMonth);

  add("aws", "connectivity", m.connectionMinutes * scale, "connection-minutes", 0, aws.connectivity.perMillionMinutes / 1e6);
  const messages = m.awsMessages * scale;
  lines.push({ provider: "aws", item: "messaging", quantity: messages, unit: "messages (5 KB)", included: 0, list: tiered(messages, aws.messaging.tiers), cost: tiered(messages, aws.messaging.tiers) });

  const total = (p) => ({
    list: lines.filter((l) => l.provider === p).reduce((n, l) => n + l.list, 0),
    cost: lines.filter((l) => l.provider === p).reduce((n, l) => n + l.cost, 0),
  });
  const c = total("cloudflare");
  const a = total("aws");
  return { lines, cloudflare: c, aws: a, ratio: a.list / c.list };
}

/** Cost of `n` messages over price tiers ({ upToMillions: cumulative bound or null, perMillion }). */
export function tiered(n, tiers) {
  let cost = 0;
  let from = 0;
  for (const t of tiers) {
    const to = t.upToMillions === null ? Infinity : t.upToMillions * 1e6;
    if (n <= from) break;
    cost += ((Math.min(n, to) - from) / 1e6) * t.perMillion;
    from = to;
  }
  return cost;
}

/** AWS's metered units for one MQTT message of `bytes` (topic + payload): 5 KB each, at least one. */
export function awsUnits(bytes, unitBytes = 5120) {
  return Math.max(1, Math.ceil(bytes / unitBytes));
}
