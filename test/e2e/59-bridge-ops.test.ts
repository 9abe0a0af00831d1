// A bridge's status where operators look: /metrics (the mqtt_bridge_* families, read by a real
// Prometheus text parser) and the console's Bridges card (real Chromium), against a real
// Mosquitto (test/e2e/mosquitto.ts) and a closed port (a bridge that cannot connect, with its
// last error), plus an invalid BRIDGES entry (the configuration errors).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import parsePrometheusTextFormat, { type ParsedFamily } from "parse-prometheus-text-format";
import type { MqttClient } from "mqtt";
import type { Page } from "playwright-core";
import { TEST_API_TOKEN, collect, connect, end, freePort, startBroker, type Broker } from "./harness";
import { until } from "./marker";
import { startMosquitto, type Mosquitto } from "./mosquitto";
import { launchBrowser, type Browser } from "./browser";

let mosq: Mosquitto;
let broker: Broker;
let browser: Browser;
const clients: MqttClient[] = [];
const fast = { reconnectMin: 0.1, reconnectMax: 0.5 };

beforeAll(async () => {
  mosq = await startMosquitto();
  const closedPort = await freePort();
  [broker, browser] = await Promise.all([
    startBroker({
      API_TOKEN: TEST_API_TOKEN,
      BRIDGES: JSON.stringify([
        { name: "cloud", namespace: "ops", url: mosq.url, version: 5, ...fast, out: [{ filter: "ops/#", prefix: "from-ops/", qos: 1 }] },
        { name: "dead", namespace: "ops-dead", url: `mqtt://127.0.0.1:${closedPort}`, ...fast, out: [{ filter: "x/#" }] },
        { name: "broken", namespace: "ops-dead", url: "http://nope", out: [{ filter: "x/#" }] },
      ]),
    }),
    launchBrowser(),
  ]);
}, 60_000);

afterAll(async () => {
  await end(...clients);
  await browser?.close();
  await broker?.close();
  await mosq?.close();
});

async function metrics(path: string): Promise<ParsedFamily[]> {
  const res = await fetch(broker.http(path), { headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return parsePrometheusTextFormat(text);
}

/** the sample's value, or undefined when there is none */
function sample(parsed: ParsedFamily[], name: string, labels: Record<string, string>): number | undefined {
  const m = parsed.find((f) => f.name === name)?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  return m === undefined ? undefined : Number(m.value);
}

async function bridgeStatus(ns: string, name: string): Promise<Record<string, any>> {
  const res = await fetch(broker.http(`/api/${ns}/bridges`), { headers: { Authorization: `Bearer ${TEST_API_TOKEN}` } });
  const body = (await res.json()) as { bridges: Record<string, any>[] };
  return body.bridges.find((b) => b.name === name) ?? {};
}

describe("/metrics: the bridges' families", () => {
  it("after a message crossed: up on both sides and the out counter ≥ 1, labelled with namespace and bridge; a down bridge's last error; none for a namespace without bridges", async () => {
    await until(async () => (await bridgeStatus("ops", "cloud")).connected?.remote === true && (await bridgeStatus("ops", "cloud")).connected?.local === true, "bridge cloud linked", 15_000);
    const sub = await connect(mosq.url, { protocolVersion: 5 });
    clients.push(sub);
    await sub.subscribeAsync("from-ops/#", { qos: 1 });
    const pub = await connect(broker.url("ops"), { protocolVersion: 5 });
    clients.push(pub);
    const got = collect(sub, 1);
    await pub.publishAsync("ops/t1", "crossed", { qos: 1 });
    expect((await got).map((m) => m.topic)).toEqual(["from-ops/ops/t1"]);
    // the bridge counts the message once the remote acknowledged it
    await until(async () => ((await bridgeStatus("ops", "cloud")).sent ?? 0) >= 1, "cloud's sent count", 5_000);

    for (const path of ["/metrics?namespaces=ops,ops-dead,plain", "/api/ops/metrics"]) {
      const p = await metrics(path);
      const cloud = { namespace: "ops", bridge: "cloud" };
      expect(sample(p, "mqtt_bridge_up", { ...cloud, side: "remote" }), path).toBe(1);
      expect(sample(p, "mqtt_bridge_up", { ...cloud, side: "local" })).toBe(1);
      expect(sample(p, "mqtt_bridge_messages_total", { ...cloud, direction: "out" })).toBeGreaterThanOrEqual(1);
      expect(sample(p, "mqtt_bridge_messages_total", { ...cloud, direction: "in" })).toBe(0);
      expect(sample(p, "mqtt_bridge_inflight", cloud)).toBe(0);
      expect(sample(p, "mqtt_bridge_dropped_total", cloud)).toBe(0);
      expect(sample(p, "mqtt_bridge_reconnects_total", cloud)).toBe(0);
      expect(sample(p, "mqtt_bridge_last_error_timestamp_seconds", cloud)).toBeUndefined();
      // the invalid entry ("broken") counts in every namespace read with bridges or not
      expect(sample(p, "mqtt_bridge_config_errors", { namespace: "ops" })).toBe(1);
      // the namespace's own families are still there
      expect(sample(p, "mqtt_connections", { namespace: "ops" })).toBeGreaterThanOrEqual(1);
    }

    const dead = { namespace: "ops-dead", bridge: "dead" };
    let p: ParsedFamily[] = [];
    await until(async () => {
      p = await metrics("/metrics?namespaces=ops,ops-dead,plain");
      return sample(p, "mqtt_bridge_last_error_timestamp_seconds", dead) !== undefined;
    }, "dead's last error in /metrics", 10_000);
    const at = sample(p, "mqtt_bridge_last_error_timestamp_seconds", dead)!;
    expect(Math.abs(at - Date.now() / 1000)).toBeLessThan(60);
    expect(sample(p, "mqtt_bridge_up", { ...dead, side: "remote" })).toBe(0);
    expect(sample(p, "mqtt_bridge_up", { ...dead, side: "local" })).toBe(0);
    expect(sample(p, "mqtt_bridge_messages_total", { ...dead, direction: "out" })).toBe(0);
    // "plain" has no bridge: no per-bridge samples (the configuration's error count only)
    const plainNames = p.filter((f) => f.name.startsWith("mqtt_bridge_") && f.metrics.some((m) => m.labels?.namespace === "plain")).map((f) => f.name);
    expect(plainNames).toEqual(["mqtt_bridge_config_errors"]);
    expect(p.find((f) => f.name === "mqtt_bridge_up")!.metrics.map((m) => `${m.labels?.namespace}/${m.labels?.bridge}/${m.labels?.side}`).sort()).toEqual([
      "ops-dead/dead/local", "ops-dead/dead/remote", "ops/cloud/local", "ops/cloud/remote",
    ]);
  });
});

describe("console: the Bridges card", () => {
  let page: Page;
  const pageErrors: string[] = [];

  async function open(ns: string): Promise<void> {
    if (!page) {
      page = await browser.context.newPage();
      page.on("pageerror", (err) => pageErrors.push(err.message));
      await page.goto(broker.http("/"));
    } else if ((await page.locator("#connect").textContent()) === "Disconnect") {
      await page.click("#connect");
      await page.waitForSelector('#status[data-state="offline"]');
    }
    await page.fill("#namespace", ns);
    await page.fill("#token", TEST_API_TOKEN);
    await page.click("#connect");
    await page.waitForSelector('#status[data-state="connected"]');
  }

  const text = async (selector: string): Promise<string> => (await page.locator(selector).textContent()) ?? "";

  it("a bridge that cannot connect: its name, remote down, its last error and when; the configuration errors above", { timeout: 60_000 }, async () => {
    await open("ops-dead");
    await page.waitForSelector("#bridges-card:not([hidden])", { timeout: 15_000 });
    const item = '#bridges li[data-bridge="dead"]';
    await until(async () => (await text(item)).includes("last error"), "the dead bridge's last error", 15_000);
    expect(await page.locator(item).getAttribute("data-state")).toBe("down");
    const shown = await text(item);
    expect(shown).toContain("dead");
    expect(shown).toContain("remote down · local down");
    expect(shown).toMatch(/→ mqtt:\/\/127\.0\.0\.1:\d+/);
    expect(shown).toMatch(/queued 0 · sent 0 · received 0 · dropped 0 · reconnects 0/);
    // the error with its time, as the status API gives it
    const status = await bridgeStatus("ops-dead", "dead");
    expect(status.lastError).toBeTruthy();
    expect(await text(`${item} .last-error`)).toMatch(/^last error \S.*: \S/);
    expect(await page.locator(`${item} .last-error.error`).count()).toBe(1); // red while down
    expect(await text("#bridge-errors")).toContain('BRIDGES[2] ("broken"): url: use mqtt://');
    expect(pageErrors).toEqual([]);
  });

  it("a linked bridge: remote up · local up, and its sent count after a message crossed", { timeout: 60_000 }, async () => {
    await open("ops");
    const item = '#bridges li[data-bridge="cloud"]';
    await page.waitForSelector(`${item}[data-state="linked"]`, { timeout: 15_000 });
    const sentOnCard = async (): Promise<number> => Number(/sent (\d+)/.exec(await text(item))?.[1] ?? NaN);
    const before = await sentOnCard();
    expect(before).toBeGreaterThanOrEqual(1); // the message of the /metrics test
    const pub = await connect(broker.url("ops"), { protocolVersion: 5 });
    clients.push(pub);
    await pub.publishAsync("ops/t2", "again", { qos: 1 });
    await until(async () => (await sentOnCard()) > before, "the card's sent count to grow", 15_000);
    const shown = await text(item);
    expect(shown).toContain("cloud");
    expect(shown).toContain("remote up · local up");
    expect(shown).toContain(`→ ${mosq.url}`);
    expect(shown).toContain("linked since");
    // the previous namespace's bridge is gone from the card
    expect(await page.locator('#bridges li[data-bridge="dead"]').count()).toBe(0);
    expect(pageErrors).toEqual([]);
  });
});
