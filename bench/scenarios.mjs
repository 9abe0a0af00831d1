// Benchmark scenarios. Each returns figures and verifies counts: no loss at QoS ≥ 1, no
// duplicates, per-publisher order kept.
import { LiteClient, publishBytes, backpressure } from "./lite-client.mjs";
import { cpuMicros, rssBytes } from "./proc.mjs";

const PAYLOAD = 64;

function payload(pub, seq, stamp = 0) {
  const b = Buffer.alloc(PAYLOAD);
  b.writeUInt16BE(pub, 0);
  b.writeUInt32BE(seq, 2);
  b.writeDoubleBE(stamp, 6);
  return b;
}

/** A publisher's message stream: one encoded template, seq (and packet id) patched per message. */
function template(topic, qos, pub) {
  const t = publishBytes(topic, payload(pub, 0), qos);
  const payloadOffset = t.bytes.length - PAYLOAD;
  return (seq, id, stamp) => {
    const b = qos ? t.withId(id) : Buffer.from(t.bytes);
    b.writeUInt32BE(seq, payloadOffset + 2);
    if (stamp !== undefined) b.writeDoubleBE(stamp, payloadOffset + 6);
    return b;
  };
}

/** Sends `count` messages; QoS 1 keeps at most `window` unacknowledged. */
export async function pump(client, pub, count, qos, topic, window = 500) {
  const make = template(topic, qos, pub);
  if (qos === 0) {
    for (let seq = 0; seq < count; seq++) {
      client.send(make(seq));
      if ((seq & 255) === 255) await backpressure(client.ws);
    }
    return;
  }
  let outstanding = 0;
  let wake = null;
  let acked = 0;
  client.onAck = () => {
    outstanding--;
    acked++;
    if (wake) {
      const w = wake;
      wake = null;
      w();
    }
  };
  for (let seq = 0; seq < count; seq++) {
    while (outstanding >= window) await new Promise((r) => (wake = r));
    outstanding++;
    client.send(make(seq, (seq % 65535) + 1));
  }
  while (acked < count) await new Promise((r) => (wake = r));
}

/** Counts deliveries on a subscriber: exact per (publisher, seq), so loss, duplicates and order show. */
export function counter(client, pubs, perPub, expected) {
  const seen = Array.from({ length: pubs }, () => new Uint8Array(perPub));
  const last = new Int32Array(pubs).fill(-1);
  const stats = { received: 0, duplicates: 0, outOfOrder: 0, latencies: null };
  const done = new Promise((resolve) => {
    client.onPublish = (buf, start, end) => {
      const p = end - PAYLOAD;
      const pub = buf.readUInt16BE(p);
      const seq = buf.readUInt32BE(p + 2);
      if (stats.latencies) stats.latencies.push(performance.now() - buf.readDoubleBE(p + 6));
      if (seen[pub][seq]) stats.duplicates++;
      else {
        seen[pub][seq] = 1;
        if (seq < last[pub]) stats.outOfOrder++;
        last[pub] = seq;
      }
      if (++stats.received === expected) resolve();
    };
  });
  return { stats, done };
}

export function withTimeout(promise, ms, what) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms))]);
}

function measure(target) {
  const cpu0 = cpuMicros(target.pids());
  const gen0 = process.cpuUsage();
  const t0 = performance.now();
  return (deliveries) => {
    const seconds = (performance.now() - t0) / 1000;
    const gen = process.cpuUsage(gen0);
    return {
      seconds,
      perSecond: deliveries / seconds,
      brokerCpuUs: (cpuMicros(target.pids()) - cpu0) / deliveries,
      generatorCpuUs: (gen.user + gen.system) / deliveries,
    };
  };
}

let uniq = 0;
const id = (name) => `${name}-${process.pid}-${++uniq}`;

export async function fanIn(target, qos, total = 50_000, pubs = 4) {
  const perPub = total / pubs;
  const sub = await LiteClient.connect(target.url(), { clientId: id("fi-sub") });
  await sub.subscribe("bench/in/#", qos);
  const { stats, done } = counter(sub, pubs, perPub, total);
  const publishers = await Promise.all(Array.from({ length: pubs }, () => LiteClient.connect(target.url("?role=pub"), { clientId: id("fi-pub") })));
  const stop = measure(target);
  await Promise.all(publishers.map((c, i) => pump(c, i, perPub, qos, `bench/in/${i}`)));
  await withTimeout(done, 180_000, "fan-in");
  const result = { ...stop(total), ...stats };
  await Promise.all([sub, ...publishers].map((c) => c.disconnect()));
  return result;
}

export async function fanOut(target, qos, messages = 10_000, subs = 50) {
  const subscribers = await Promise.all(Array.from({ length: subs }, () => LiteClient.connect(target.url(), { clientId: id("fo-sub") })));
  await Promise.all(subscribers.map((s) => s.subscribe("bench/out", qos)));
  const counters = subscribers.map((s) => counter(s, 1, messages, messages));
  const pub = await LiteClient.connect(target.url("?role=pub"), { clientId: id("fo-pub") });
  const stop = measure(target);
  await pump(pub, 0, messages, qos, "bench/out");
  await withTimeout(Promise.all(counters.map((c) => c.done)), 300_000, "fan-out");
  const result = stop(messages * subs);
  result.received = counters.reduce((a, c) => a + c.stats.received, 0);
  result.duplicates = counters.reduce((a, c) => a + c.stats.duplicates, 0);
  result.outOfOrder = counters.reduce((a, c) => a + c.stats.outOfOrder, 0);
  await Promise.all([pub, ...subscribers].map((c) => c.disconnect()));
  return result;
}

/**
 * p50/p99 publish→deliver latency at a steady 1,000 msg/s (QoS 0). The first `warmup` seconds
 * are not recorded: they measure the JIT compiling the path, not the path.
 */
export async function latency(target, rate = 1000, seconds = 5, warmup = 1) {
  const skip = rate * warmup;
  const total = rate * (seconds + warmup);
  const sub = await LiteClient.connect(target.url(), { clientId: id("lat-sub") });
  await sub.subscribe("bench/lat", 0);
  const { stats, done } = counter(sub, 1, total, total);
  stats.latencies = [];
  const pub = await LiteClient.connect(target.url("?role=pub"), { clientId: id("lat-pub") });
  const make = template("bench/lat", 0, 0);
  const start = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000));
    while (sent < due) pub.send(make(sent++, 0, performance.now()));
    await new Promise((r) => setTimeout(r, 1));
  }
  await withTimeout(done, 30_000, "latency");
  const l = stats.latencies.slice(skip).sort((a, b) => a - b);
  await Promise.all([sub.disconnect(), pub.disconnect()]);
  const at = (q) => l[Math.floor(l.length * q)];
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), received: stats.received, measured: l.length };
}

/**
 * Connect `n` idle clients: time to connect them and memory per connection. Memory is the
 * marginal cost: measured from after `warmup` connections (so one-time growth of the process,
 * such as the JIT and the heap's first reservations, is not spread over the connections).
 */
export async function idleConnections(target, n = 2000, concurrency = 50, warmup = 1000) {
  const open = async (count) => {
    const out = [];
    for (let i = 0; i < count; i += concurrency) {
      out.push(...(await Promise.all(Array.from({ length: Math.min(concurrency, count - i) }, () => LiteClient.connect(target.url(), { clientId: id("idle"), keepalive: 60 })))));
    }
    return out;
  };
  const warm = await open(warmup);
  await new Promise((r) => setTimeout(r, 1000));
  const rss0 = rssBytes(target.pids());
  const t0 = performance.now();
  const clients = await open(n);
  const seconds = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 1000));
  const rss1 = rssBytes(target.pids());
  const result = { connections: clients.length, seconds, bytesPerConnection: (rss1 - rss0) / n };
  await Promise.all([...warm, ...clients].map((c) => c.terminate()));
  return result;
}

/** 5,000 retained messages, then a new `#` subscriber: time until it has them all. */
export async function retained(target, n = 5000) {
  const pub = await LiteClient.connect(target.url(), { clientId: id("ret-pub") });
  for (let i = 0; i < n; i++) {
    pub.send(publishBytes(`ret/${i}`, payload(0, i), 0, true).bytes);
    if ((i & 255) === 255) await backpressure(pub.ws);
  }
  // A QoS 1 publish after them: its PUBACK means the broker has handled every retained one.
  const acked = pub.wait(4);
  pub.send(publishBytes("ret-done", "x", 1).withId(1));
  await acked;
  const sub = await LiteClient.connect(target.url(), { clientId: id("ret-sub") });
  const { stats, done } = counter(sub, 1, n, n);
  const t0 = performance.now();
  await sub.subscribe("ret/#", 0);
  await withTimeout(done, 60_000, "retained");
  const seconds = (performance.now() - t0) / 1000;
  await sub.disconnect();
  // clear them again
  for (let i = 0; i < n; i++) pub.send(publishBytes(`ret/${i}`, Buffer.alloc(0), 0, true).bytes);
  await pub.disconnect();
  return { messages: stats.received, seconds, duplicates: stats.duplicates };
}

/** Time from the cause to the will's arrival: socket loss, and keep-alive expiry (expect 1.5 × KA). */
export async function will(target, keepalive = 2) {
  const out = {};
  const watcher = await LiteClient.connect(target.url(), { clientId: id("will-watch") });
  await watcher.subscribe("bench/will/#", 0);
  const arrival = () => new Promise((resolve) => (watcher.onPublish = () => resolve(performance.now())));

  const lost = await LiteClient.connect(target.url(), { clientId: id("will-loss"), will: { topic: "bench/will/loss", payload: Buffer.from("gone"), qos: 0, retain: false } });
  let got = arrival();
  const t0 = performance.now();
  lost.terminate();
  out.socketLossMs = (await withTimeout(got, 10_000, "will after socket loss")) - t0;

  got = arrival();
  await LiteClient.connect(target.url(), { clientId: id("will-ka"), keepalive, will: { topic: "bench/will/ka", payload: Buffer.from("silent"), qos: 0, retain: false } });
  const t1 = performance.now(); // CONNACK received: the client's last packet was just before
  out.keepAliveMs = (await withTimeout(got, keepalive * 3000, "will after keep-alive")) - t1;
  out.keepAliveOvershootMs = out.keepAliveMs - keepalive * 1500;
  await watcher.disconnect();
  return out;
}

/** 100 offline persistent subscribers, 10,000 QoS 1 messages, then reconnect: none lost. */
export async function persistentSessions(target, subs = 100, messages = 10_000) {
  const ids = Array.from({ length: subs }, () => id("ps"));
  for (const clientId of ids) {
    const c = await LiteClient.connect(target.url(), { clientId, clean: false });
    await c.subscribe("bench/ps", 1);
    await c.disconnect();
  }
  const pub = await LiteClient.connect(target.url("?role=pub"), { clientId: id("ps-pub") });
  const t0 = performance.now();
  await pump(pub, 0, messages, 1, "bench/ps");
  const publishSeconds = (performance.now() - t0) / 1000;
  const storageBytes = target.storageBytes?.() ?? null;
  const stop = measure(target);
  const clients = [];
  const counters = [];
  for (const clientId of ids) {
    // queued messages follow CONNACK at once: count from before CONNECT
    clients.push(await LiteClient.connect(target.url(), { clientId, clean: false }, (c) => counters.push(counter(c, 1, messages, messages))));
  }
  await withTimeout(Promise.all(counters.map((c) => c.done)), 600_000, "persistent drain");
  const drain = stop(subs * messages);
  const result = {
    publishSeconds,
    drainSeconds: drain.seconds,
    deliveriesPerSecond: drain.perSecond,
    received: counters.reduce((a, c) => a + c.stats.received, 0),
    expected: subs * messages,
    duplicates: counters.reduce((a, c) => a + c.stats.duplicates, 0),
    storageBytes,
  };
  await Promise.all([pub, ...clients].map((c) => c.disconnect()));
  return result;
}
