// The web console in a real browser: served by the Worker's assets, MQTT.js over WebSocket, and
// the overview from the HTTP API. Screenshots land in test-results/ (git-ignored).
import { afterAll, beforeAll, expect, test } from "vitest";
import { mkdirSync } from "node:fs";
import type { Page } from "playwright-core";
import { startBroker, connect, collect, end, type Broker } from "./harness";
import { launchBrowser, type Browser } from "./browser";

const TOKEN = "console-test-token";
let broker: Broker;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];
/** what the browser refused under the console's Content-Security-Policy (public/_headers) */
const cspViolations: string[] = [];

beforeAll(async () => {
  [broker, browser] = await Promise.all([startBroker({ API_TOKEN: TOKEN }), launchBrowser()]);
  page = await browser.context.newPage();
  page.on("pageerror", (err) => pageErrors.push(err.message));
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  mkdirSync("test-results", { recursive: true });
}, 60000);
afterAll(async () => {
  await browser?.close();
  await broker?.close();
});

/** Waits until the element's text satisfies `ok` (the overview refreshes every 2 s). */
async function textOf(selector: string, ok: (text: string) => boolean, timeout = 15000): Promise<string> {
  const deadline = Date.now() + timeout;
  let text = "";
  while (Date.now() < deadline) {
    text = (await page.locator(selector).first().textContent()) ?? "";
    if (ok(text)) return text;
    await page.waitForTimeout(100);
  }
  throw new Error(`${selector} is still "${text}"`);
}

test("connects, subscribes, receives, publishes, and the overview follows", { timeout: 90000 }, async () => {
  await page.setViewportSize({ width: 1440, height: 900 });
  await page.goto(broker.http("/"));
  expect(await page.title()).toContain("MQTT console");
  expect(await page.evaluate(() => typeof (globalThis as { mqtt?: unknown }).mqtt)).toBe("object");

  await page.fill("#namespace", "demo");
  await page.fill("#token", TOKEN);
  await page.click("#connect");
  await page.waitForSelector('#status[data-state="connected"]');
  await textOf("#stat-online", (t) => t === "1"); // the console itself
  // the API token stays with this tab (sessionStorage), never in localStorage
  expect(await page.evaluate("localStorage.getItem('mqtt-console')")).toBe(JSON.stringify({ namespace: "demo" }));
  expect(await page.evaluate("sessionStorage.getItem('mqtt-console-token')")).toBe(TOKEN);

  // A device in the same namespace: the overview counts it, with its presence
  const device = await connect(broker.url("demo"), {
    clientId: "sensor-kitchen",
    protocolVersion: 5,
    will: { topic: "status/sensor-kitchen", payload: Buffer.from("offline"), qos: 1, retain: false },
  });
  await textOf("#stat-online", (t) => t === "2");
  await textOf("#clients", (t) => t.includes("sensor-kitchen") && t.includes("online"));

  // Subscribe with a wildcard; live messages show topic, QoS and payload as text or hex
  await page.fill("#filter", "sensors/#");
  await page.selectOption("#sub-qos", "1");
  await page.click("#subscribe");
  await page.waitForSelector("#subscriptions li");
  await device.publishAsync("sensors/kitchen/temp", "21.5 °C", { qos: 1, retain: true });
  await device.publishAsync("sensors/kitchen/raw", Buffer.from([0x00, 0x01, 0xfe, 0xff]), { qos: 0 });
  await textOf("#message-count", (t) => t === "2");
  const [raw, temp] = await page.locator("#messages li").all();
  expect(await raw!.locator(".topic").textContent()).toBe("sensors/kitchen/raw");
  expect(await raw!.locator(".payload").textContent()).toBe("00 01 fe ff");
  expect(await raw!.locator(".badge.hex").isVisible()).toBe(true);
  expect(await temp!.locator(".topic").textContent()).toBe("sensors/kitchen/temp");
  expect(await temp!.locator(".payload").textContent()).toBe("21.5 °C");
  expect(await temp!.locator(".badge.qos").textContent()).toBe("QoS 1");
  expect(await temp!.locator(".badge.hex").isVisible()).toBe(false);

  // A new subscription gets the retained message, flagged RETAIN
  await page.fill("#filter", "sensors/+/temp");
  await page.click("#subscribe");
  await textOf("#message-count", (t) => t === "3");
  const retained = page.locator("#messages li").first();
  expect(await retained.locator(".topic").textContent()).toBe("sensors/kitchen/temp");
  expect(await retained.locator(".badge.retain").textContent()).toBe("RETAIN");

  // Publish from the page, retained at QoS 1: the device receives it
  await device.subscribeAsync("lights/#", { qos: 1 });
  const got = collect(device, 1);
  await page.fill("#pub-topic", "lights/kitchen");
  await page.fill("#pub-payload", "on");
  await page.selectOption("#pub-qos", "1");
  await page.check("#pub-retain");
  await page.click("#publish");
  const [light] = await got;
  expect(light!.topic).toBe("lights/kitchen");
  expect(light!.payload).toBe("on");
  expect(light!.packet.qos).toBe(1);

  // The overview follows: retained topics, subscriptions, message rates
  await textOf("#stat-retained", (t) => t === "2");
  await textOf("#retained", (t) => t.includes("lights/kitchen") && t.includes("sensors/kitchen/temp"));
  await textOf("#stat-subscriptions", (t) => t === "3");
  await textOf("#stat-in", (t) => /^\d+(\.\d)?$/.test(t));
  await textOf("#clients", (t) => t.includes("lights/# (QoS 1)"));
  await page.screenshot({ path: "test-results/console.png" });

  // Phone-sized: one column, nothing wider than the screen
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: "test-results/console-phone.png", fullPage: true });
  expect(await page.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(390);
  await page.setViewportSize({ width: 1440, height: 900 });

  // "disconnect" in the client list ends the device's connection: its will arrives
  await page.fill("#filter", "status/#");
  await page.click("#subscribe");
  await page.locator("#clients li", { hasText: "sensor-kitchen" }).getByRole("button", { name: "disconnect" }).click();
  await textOf("#messages li:first-child .topic", (t) => t === "status/sensor-kitchen");
  expect(await page.locator("#messages li").first().locator(".payload").textContent()).toBe("offline");
  await textOf("#stat-online", (t) => t === "1");

  await end(device);
  expect(pageErrors).toEqual([]);
  expect(cspViolations).toEqual([]);
});

test("without the API token the console still publishes and receives, and says how to get the overview", { timeout: 60000 }, async () => {
  const other = await browser.context.newPage();
  await other.goto(broker.http("/?namespace=tokenless"));
  await other.evaluate("localStorage.clear()");
  await other.fill("#token", "");
  await other.click("#connect");
  await other.waitForSelector('#status[data-state="connected"]');
  await other.fill("#filter", "echo/#");
  await other.click("#subscribe");
  await other.waitForSelector("#subscriptions li");
  await other.fill("#pub-topic", "echo/1");
  await other.fill("#pub-payload", "hello");
  await other.click("#publish");
  await other.waitForSelector("#messages li");
  expect(await other.locator("#messages li .payload").textContent()).toBe("hello");
  expect(await other.locator("#overview-note").textContent()).toContain("API token");
  await other.close();
});
