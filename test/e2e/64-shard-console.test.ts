// The console of a namespace over 4 shards, in Chromium: the overview shows the namespace as one
// (every shard's clients, and the console's own connection) and a Shards card with each shard's own figures (issue 13).
import { afterAll, beforeAll, expect, test } from "vitest";
import type { MqttClient } from "mqtt";
import type { Page } from "playwright-core";
import { startBroker, connect, end, type Broker } from "./harness";
import { launchBrowser, type Browser } from "./browser";
import { home } from "../../src/shards/layout";

const TOKEN = "shard-console-token";
const K = 4;
let broker: Broker;
let browser: Browser;
let page: Page;
const devices: MqttClient[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  [broker, browser] = await Promise.all([startBroker({ API_TOKEN: TOKEN, SHARDS: String(K) }), launchBrowser()]);
  page = await browser.context.newPage();
  page.on("pageerror", (err) => pageErrors.push(err.message));
}, 60000);
afterAll(async () => {
  await end(...devices);
  await browser?.close();
  await broker?.close();
});

/** waits until the element's text is `text` (the console refreshes every few seconds) */
async function expectText(selector: string, text: string, timeout = 15000): Promise<void> {
  const deadline = Date.now() + timeout;
  let last: string | null = null;
  while (Date.now() < deadline) {
    last = await page.locator(selector).textContent();
    if (last === text) return;
    await page.waitForTimeout(200);
  }
  throw new Error(`${selector} says ${last}, not ${text}`);
}

function idOn(shard: number, prefix: string): string {
  for (let i = 0; ; i++) if (home(`${prefix}${i}`, K) === shard) return `${prefix}${i}`;
}

test("the overview counts the clients of every shard, and the Shards card shows each shard", { timeout: 60000 }, async () => {
  // two clients on shard 1, one on shard 3, one tunnelled to shard 2 from shard 0
  for (const [shard, via] of [[1, 1], [1, 1], [3, 3], [2, 0]] as const) {
    const id = idOn(shard, `dev-${devices.length}-`);
    const c = await connect(`${broker.url("sharded")}?client=${encodeURIComponent(idOn(via, "placer"))}`, { clientId: id });
    await c.subscribeAsync(`cmd/${id}`, { qos: 1 });
    devices.push(c);
  }
  await page.goto(broker.http("/"));
  await page.fill("#namespace", "sharded");
  await page.fill("#token", TOKEN);
  await page.click("#connect");
  await page.waitForSelector('#status[data-state="connected"]');
  // the four devices and the console's own MQTT connection
  await expectText("#stat-online", "5");
  await page.waitForSelector("#shards-card:not([hidden])");
  const rows = await page.locator("#shards li").evaluateAll((lis) => lis.map((li) => [li.getAttribute("data-shard"), li.querySelector(".presence")?.textContent ?? ""]));
  expect(rows.map(([shard]) => shard)).toEqual(["0", "1", "2", "3"]);
  const online = rows.map(([, presence]) => Number(/^(\d+) online/.exec(presence)![1]));
  // the devices where they were placed, and the console's own connection on some shard
  const extra = online.map((n, i) => n - [0, 2, 1, 1][i]!);
  expect(extra.every((n) => n === 0 || n === 1)).toBe(true);
  expect(extra.reduce((a, b) => a + b, 0)).toBe(1);
  expect(pageErrors).toEqual([]);
});
