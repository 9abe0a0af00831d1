// What a web page can do to the broker: open WebSockets from another origin (refused unless
// ALLOWED_ORIGINS lets it), and frame the console (refused by its CSP and X-Frame-Options).
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { startBroker, connect, end, type Broker } from "./harness";

let open: Broker; // AUTH_MODE=none, no ALLOWED_ORIGINS: the local default
let any: Broker; // ALLOWED_ORIGINS="*"
beforeAll(async () => {
  [open, any] = await Promise.all([startBroker(), startBroker({ ALLOWED_ORIGINS: "*" })]);
});
afterAll(async () => {
  await Promise.all([open?.close(), any?.close()]);
});

const get = (broker: Broker, origin?: string) =>
  fetch(broker.http("/mqtt"), { headers: origin ? { Origin: origin } : {} }).then(async (r) => ({ status: r.status, body: await r.text() }));

const openWithOrigin = (broker: Broker, origin: string) =>
  new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(broker.url(), "mqtt", { headers: { Origin: origin } });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });

describe("Origin: same-origin by default", () => {
  test("a page from another origin cannot open a socket to a broker without ALLOWED_ORIGINS", async () => {
    const r = await get(open, "https://evil.example.net");
    expect(r.status).toBe(403);
    expect(r.body).toMatch(/origin not allowed/);
    await expect(openWithOrigin(open, "https://evil.example.net")).rejects.toThrow(/403/);
    await expect(openWithOrigin(open, "http://localhost:1")).rejects.toThrow(/403/);
    await expect(openWithOrigin(open, "null")).rejects.toThrow(/403/); // sandboxed frames, file: pages
  });

  test("the broker's own origin (its console) and clients without Origin connect", async () => {
    expect((await get(open, open.http("").replace(/\/$/, ""))).status).toBe(426); // allowed, then asks for the upgrade
    const ws = await openWithOrigin(open, `http://127.0.0.1:${open.port}`);
    ws.terminate();
    const plain = await connect(open.url());
    await end(plain);
  });

  test('ALLOWED_ORIGINS="*" lets every origin in, explicitly', async () => {
    expect((await get(any, "https://evil.example.net")).status).toBe(426);
  });
});

describe("the console cannot be framed", () => {
  test.each(["/", "/index.html", "/console.js"])("%s: CSP frame-ancestors 'none' and X-Frame-Options DENY", async (path) => {
    const r = await fetch(open.http(path));
    expect(r.status).toBe(200);
    const csp = r.headers.get("content-security-policy") ?? "";
    expect(csp).toMatch(/frame-ancestors 'none'/);
    expect(csp).toMatch(/script-src 'self'/);
    expect(r.headers.get("x-frame-options")).toBe("DENY");
    expect(r.headers.get("x-content-type-options")).toBe("nosniff");
    expect(r.headers.get("referrer-policy")).toBe("no-referrer");
  });

  test("the headers file itself is not served", async () => {
    expect((await fetch(open.http("/_headers"))).status).not.toBe(200);
  });
});
