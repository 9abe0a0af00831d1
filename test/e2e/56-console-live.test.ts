// The console's live parts in a real browser: the message-rate chart (last 5 minutes, from the
// stats API's counters) gets points after traffic, and a click on a client opens its detail with
// its subscriptions. Leaves docs/console.png, the README's screenshot.
import { afterAll, beforeAll, expect, test } from "vitest";
import { readFileSync, statSync } from "node:fs";
import type { MqttClient } from "mqtt";
import type { Page } from "playwright-core";
import { startBroker, connect, end, type Broker } from "./harness";
import { launchBrowser, type Browser } from "./browser";

const TOKEN = "console-live-token";
const SCREENSHOT = "docs/console.png";
let broker: Broker;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];
const cspViolations: string[] = [];
const devices: MqttClient[] = [];

beforeAll(async () => {
  [broker, browser] = await Promise.all([startBroker({ API_TOKEN: TOKEN }), launchBrowser()]);
  page = await browser.context.newPage();
  page.on("pageerror", (err) => pageErrors.push(err.message));
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
}, 60000);
afterAll(async () => {
  await end(...devices);
  await browser?.close();
  await broker?.close();
});

/** The chart's in-rate line as [x, y] points (SVG units: y 120 is 0 messages/s). */
async function inPoints(): Promise<[number, number][]> {
  const attr = (await page.locator("#rate-in").getAttribute("points")) ?? "";
  return attr
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map((p) => p.split(",").map(Number) as [number, number]);
}

async function until(what: string, ok: () => Promise<boolean>, timeout = 20000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if (await ok()) return;
    await page.waitForTimeout(200);
  }
  throw new Error(`still not: ${what}`);
}

test("the rate chart gets points after traffic; a client's detail shows its subscriptions; screenshot", { timeout: 90000 }, async () => {
  const started = Date.now();
  await page.setViewportSize({ width: 1440, height: 1000 });
  await page.goto(broker.http("/"));
  await page.fill("#namespace", "live");
  await page.fill("#token", TOKEN);
  await page.click("#connect");
  await page.waitForSelector('#status[data-state="connected"]');
  await page.fill("#filter", "meters/#");
  await page.click("#subscribe");
  await page.waitForSelector("#subscriptions li");

  const meter = await connect(broker.url("live"), { clientId: "meter-7", protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } });
  devices.push(meter);
  await meter.subscribeAsync("meters/+/set", { qos: 1, nl: true, properties: { subscriptionIdentifier: 4 } });
  const quiet = await inPoints();
  expect(quiet.every(([, y]) => y === 120)).toBe(true); // nothing published yet: all at zero

  // traffic for a few overview rounds: the line rises off zero, then holds more points
  const publisher = await connect(broker.url("live"), { clientId: "meter-8" });
  devices.push(publisher);
  let sent = 0;
  let burst = 1; // a rate that grows, then the traffic stops
  const traffic = setInterval(() => {
    for (let i = 0; i < burst; i++) void publisher.publishAsync("meters/8/power", String(100 + (sent++ % 40)), { qos: 1 });
    burst = Math.min(burst + 1, 12);
  }, 250);
  try {
    await until("an in-rate above zero", async () => (await inPoints()).some(([, y]) => y < 120));
    const first = (await inPoints()).length;
    await until("three more points", async () => (await inPoints()).length >= first + 3);
  } finally {
    clearInterval(traffic);
  }
  const last = (await inPoints()).length;
  await until("a point after the traffic stopped", async () => (await inPoints()).length > last + 1);
  const points = await inPoints();
  expect(Number(await page.locator("#rate-chart").getAttribute("data-points"))).toBe(points.length);
  expect(points.every(([x, y]) => x >= 0 && x <= 600 && y >= 0 && y <= 120)).toBe(true);
  expect((await page.locator("#rate-out").getAttribute("points"))!.split(" ").length).toBe(points.length);
  expect(await page.locator("#rate-max").textContent()).toMatch(/^top \d+(\.\d)?\/s$/);
  expect(await page.locator("#rate-span").textContent()).toMatch(/^−\d+ s$/); // less than 5 minutes of samples yet

  // a click on the client opens its detail
  await page.locator('#clients button[data-client="meter-7"]').click();
  await page.waitForSelector("#client-detail:not([hidden])");
  await until("the detail's subscription", async () => ((await page.locator("#cd-subscriptions").textContent()) ?? "").includes("meters/+/set"));
  expect(await page.locator("#cd-title").textContent()).toBe("meter-7");
  expect(await page.locator("#cd-subscriptions li").first().textContent()).toContain("QoS 1 · no local · id 4");
  const facts = (await page.locator("#cd-facts").textContent()) ?? "";
  expect(facts).toContain("online");
  expect(facts).toContain("MQTT 5");
  expect(facts).toMatch(/queued0 messages · 0 bytes/);
  expect(facts).toMatch(/last seen\d/);
  expect(await page.locator("#cd-history").textContent()).toContain("connected");

  // the detail follows the client: offline after it leaves
  await end(meter);
  devices.splice(devices.indexOf(meter), 1);
  await until("the detail says offline", async () => ((await page.locator("#cd-facts").textContent()) ?? "").includes("offline"));

  await page.screenshot({ path: SCREENSHOT });
  const file = statSync(SCREENSHOT);
  expect(file.mtimeMs).toBeGreaterThanOrEqual(started - 1000);
  expect(file.size).toBeGreaterThan(30_000);
  expect(readFileSync(SCREENSHOT).subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

  await page.click("#cd-close");
  expect(await page.locator("#client-detail").isHidden()).toBe(true);
  // no BRIDGES: the Bridges card stays hidden through all those overview rounds
  expect(await page.locator("#bridges-card").isHidden()).toBe(true);
  expect(pageErrors).toEqual([]);
  expect(cspViolations).toEqual([]);
});
