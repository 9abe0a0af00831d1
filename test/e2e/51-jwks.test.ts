// JWT_JWKS_URL end to end: a local identity provider (a Node HTTP server on a free port, counting
// its requests) serves a key set that the test rotates; the broker in workerd fetches and caches
// it. RS256, ES256 and EdDSA (Ed25519) tokens; a rotated key accepted after a refetch; refetches
// rate-limited; Cache-Control max-age honoured; the provider down or answering garbage while the
// last good set keeps working; an unknown kid then refused with 0x86 / 4 and no crash.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { createServer, type Server } from "node:http";
import type { IClientOptions } from "mqtt";
import { startBroker, connect, end, type Broker } from "./harness";
import { uncaught } from "./inspect";
import { until } from "./marker";
import { providerKey, providerToken, type ProviderKey } from "../jwks-helpers";
import { makeKeys, sign } from "../jwt-helpers";

/** A local identity provider: GET /jwks serves `keys`; `mode` makes it fail. */
class Provider {
  keys: ProviderKey[] = [];
  cacheControl: string | null = "max-age=600";
  mode: "up" | "down" | "garbage" | "500" | "slow" = "up";
  /** ms a "slow" provider takes to answer */
  delay = 0;
  requests = 0;
  private server!: Server;
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      if (req.url !== "/jwks") return void res.writeHead(404).end();
      this.requests++;
      if (this.mode === "down") return void req.socket.destroy();
      if (this.mode === "500") return void res.writeHead(500).end("internal error");
      if (this.mode === "garbage") return void res.writeHead(200, { "content-type": "text/html" }).end("<html>maintenance</html>");
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (this.cacheControl) headers["cache-control"] = this.cacheControl;
      const body = JSON.stringify({ keys: this.keys.map((k) => k.jwk) });
      if (this.mode === "slow") setTimeout(() => res.writeHead(200, headers).end(body), this.delay);
      else res.writeHead(200, headers).end(body);
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as { port: number }).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/jwks`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

const nowS = () => Math.floor(Date.now() / 1000);
const claims = () => ({ ns: "default", sub: "device", exp: nowS() + 300 });

/** The CONNACK refusal code, or 0 when accepted. */
async function verdict(broker: Broker, password: string, opts: IClientOptions = {}): Promise<number> {
  try {
    const c = await connect(broker.url(), { protocolVersion: 5, username: "x", password, ...opts });
    await end(c);
    return 0;
  } catch (e) {
    return (e as { code?: number }).code ?? -1;
  }
}

/** Tries until accepted (each try may be the one that is due a refetch); returns when (ms). */
async function acceptedWithin(broker: Broker, password: string, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  for (;;) {
    if ((await verdict(broker, password)) === 0) return Date.now();
    if (Date.now() > deadline) throw new Error(`not accepted within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let provider: Provider;
let broker: Broker | null = null;
beforeAll(async () => {
  provider = new Provider();
  await provider.start();
});
afterEach(async () => {
  if (broker) expect(uncaught(broker)).toEqual([]);
  await broker?.close();
  broker = null;
  provider.keys = [];
  provider.mode = "up";
  provider.delay = 0;
  provider.cacheControl = "max-age=600";
  provider.requests = 0;
});
afterAll(() => provider.close());

const jwksBroker = async (vars: Record<string, string> = {}) =>
  (broker = await startBroker({ AUTH_MODE: "jwt", JWT_JWKS_URL: provider.url, JWT_JWKS_MIN_INTERVAL: "2", ...vars }));

test("RS256, ES256 and EdDSA (Ed25519) tokens verify against the fetched set, fetched once", async () => {
  const keys = [providerKey("RS256", "r1"), providerKey("ES256", "e1"), providerKey("EdDSA", "d1")];
  provider.keys = keys;
  const b = await jwksBroker();
  for (const key of keys) {
    expect(await verdict(b, providerToken(key, claims()), { protocolVersion: 5 })).toBe(0);
    expect(await verdict(b, providerToken(key, claims()), { protocolVersion: 4 })).toBe(0);
  }
  expect(provider.requests).toBe(1);
  // a key the provider does not hold, a forged signature, alg none: refused
  const stranger = providerKey("RS256", "r1");
  expect(await verdict(b, providerToken(stranger, claims()))).toBe(0x86);
  expect(await verdict(b, providerToken(stranger, claims()), { protocolVersion: 4 })).toBe(4);
  const none = providerToken(keys[0]!, claims(), { alg: "none" }).split(".").slice(0, 2).join(".") + ".";
  expect(await verdict(b, none)).toBe(0x86);
  // algorithm confusion: an ES256 token naming the RSA key's kid
  expect(await verdict(b, providerToken(keys[1]!, claims(), { kid: "r1" }))).toBe(0x86);
});

test("rotation: a token by a new key is accepted after a refetch; refetches are at most one per interval", async () => {
  const k1 = providerKey("ES256", "k1");
  const k2 = providerKey("ES256", "k2");
  const k3 = providerKey("EdDSA", "k3");
  provider.keys = [k1];
  const b = await jwksBroker();
  const before = Date.now(); // the first fetch starts after this
  expect(await verdict(b, providerToken(k1, claims()))).toBe(0);
  expect(provider.requests).toBe(1);
  provider.keys = [k1, k2]; // the provider rotates
  const acceptedAt = await acceptedWithin(b, providerToken(k2, claims()), 6000);
  expect(acceptedAt - before).toBeGreaterThanOrEqual(2000); // not before the interval
  expect(provider.requests).toBe(2);
  // rotates again at once: an unknown kid now does not make the broker fetch again
  provider.keys = [k2, k3];
  const t3 = providerToken(k3, claims());
  for (let i = 0; i < 5; i++) expect(await verdict(b, t3)).toBe(0x86);
  expect(provider.requests).toBe(2);
  await acceptedWithin(b, t3, 6000);
  expect(provider.requests).toBe(3);
  expect(await verdict(b, providerToken(k2, claims()))).toBe(0);
  expect(await verdict(b, providerToken(k1, claims()))).toBe(0x86); // retired
}, 20000);

test("Cache-Control max-age is honoured: no fetch before it, one after it", async () => {
  const k1 = providerKey("RS256", "m1");
  provider.keys = [k1];
  provider.cacheControl = "public, max-age=3";
  const b = await jwksBroker({ JWT_JWKS_MIN_INTERVAL: "1" });
  const t = providerToken(k1, claims());
  expect(await verdict(b, t)).toBe(0);
  const fetchedAt = Date.now();
  while (Date.now() - fetchedAt < 2000) expect(await verdict(b, t)).toBe(0);
  expect(provider.requests).toBe(1); // within max-age: cached
  await new Promise((r) => setTimeout(r, 3100 - (Date.now() - fetchedAt))); // past max-age (the thing under test is time)
  expect(await verdict(b, t)).toBe(0); // served from the stale set while it refreshes
  const until = Date.now() + 2000;
  while (provider.requests < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  expect(provider.requests).toBe(2);
}, 15000);

test.each(["down", "garbage", "500"] as const)("provider %s: the last good set keeps working; an unknown kid is refused, no crash", async (mode) => {
  const k1 = providerKey("ES256", "g1");
  provider.keys = [k1];
  provider.cacheControl = "max-age=1";
  const b = await jwksBroker({ JWT_JWKS_MIN_INTERVAL: "1" });
  expect(await verdict(b, providerToken(k1, claims()))).toBe(0);
  provider.mode = mode;
  const unknown = providerToken(providerKey("ES256", "g2"), claims());
  const start = Date.now();
  // for a few seconds, with the set stale and refetches due and failing
  while (Date.now() - start < 2500) {
    expect(await verdict(b, providerToken(k1, claims()))).toBe(0);
    expect(await verdict(b, unknown)).toBe(0x86);
    expect(await verdict(b, unknown, { protocolVersion: 4 })).toBe(4);
  }
  const elapsed = Date.now() - start;
  expect(provider.requests).toBeGreaterThanOrEqual(2); // it did try again
  expect(provider.requests).toBeLessThanOrEqual(2 + Math.ceil(elapsed / 1000)); // once a second at most, not per CONNECT
  expect(b.logs.join("")).toMatch(/JWKS fetch from .* failed: .*keeping the last good set of 1 key/);
}, 15000);

test("no set yet (the provider down from the start): 0x88 server unavailable, then fine once it answers", async () => {
  const k1 = providerKey("RS256", "s1");
  provider.keys = [k1];
  provider.mode = "down";
  const b = await jwksBroker({ JWT_JWKS_MIN_INTERVAL: "1" });
  const t = providerToken(k1, claims());
  expect(await verdict(b, t)).toBe(0x88);
  expect(await verdict(b, t, { protocolVersion: 4 })).toBe(3);
  provider.mode = "up";
  await acceptedWithin(b, t, 5000);
});

test("JWKS together with JWT_SECRET: both kinds of token", async () => {
  const keys = await makeKeys();
  const k1 = providerKey("EdDSA", "c1");
  provider.keys = [k1];
  const b = await jwksBroker({ JWT_SECRET: keys.secret });
  expect(await verdict(b, providerToken(k1, claims()))).toBe(0);
  expect(await verdict(b, await sign(keys, "HS256", claims()))).toBe(0);
  // an HS256 token naming the provider key's kid is checked against the secret only
  expect(await verdict(b, await sign({ ...keys, secret: "wrong-secret-wrong-secret-wrong-secret" }, "HS256", claims(), { kid: "c1" }))).toBe(0x86);
});

test("a CONNECT waiting for the first fetch does not hold up other clients", async () => {
  const keys = await makeKeys();
  const k1 = providerKey("RS256", "w1");
  provider.keys = [k1];
  provider.mode = "slow";
  provider.delay = 1500;
  const b = await jwksBroker({ JWT_SECRET: keys.secret, JWT_JWKS_TIMEOUT: "5" });
  const start = Date.now();
  let firstDone = false;
  const waiting = verdict(b, providerToken(k1, claims())).then((code) => {
    firstDone = true;
    return { code, at: Date.now() - start };
  });
  await until(() => provider.requests === 1, "the first CONNECT's fetch to start"); // the provider holds it 1.5 s
  expect(await verdict(b, await sign(keys, "HS256", claims()))).toBe(0);
  expect(firstDone).toBe(false); // served while the first fetch was pending
  const first = await waiting;
  expect(first.code).toBe(0);
  expect(first.at).toBeGreaterThanOrEqual(1400);
  expect(provider.requests).toBe(1);
});

test("a provider slower than JWT_JWKS_TIMEOUT: the fetch is abandoned, 0x88", async () => {
  const k1 = providerKey("RS256", "h1");
  provider.keys = [k1];
  provider.mode = "slow";
  provider.delay = 4000;
  const b = await jwksBroker({ JWT_JWKS_TIMEOUT: "1" });
  const start = Date.now();
  expect(await verdict(b, providerToken(k1, claims()))).toBe(0x88);
  expect(Date.now() - start).toBeLessThan(3000);
  expect(b.logs.join("")).toMatch(/JWKS fetch from .* failed: timed out after 1000 ms/);
});

describe("configuration", () => {
  test("a plain http URL to another host is refused: every CONNECT gets 0x88 and the log says why", async () => {
    const b = await (broker = await startBroker({ AUTH_MODE: "jwt", JWT_JWKS_URL: "http://idp.example.com/jwks" }));
    expect(await verdict(b, "eyJhbGciOiJub25lIn0.e30.")).toBe(0x88);
    expect(b.logs.join("")).toMatch(/JWT_JWKS_URL must be an https:\/\/ URL/);
  });
});

test("two namespaces share the isolate's one fetch: a CONNECT in the second joins the first's fetch, also when the first client left", async () => {
  const k1 = providerKey("RS256", "shared-1");
  provider.keys = [k1];
  provider.mode = "slow";
  provider.delay = 1500;
  const b = await jwksBroker({ JWT_JWKS_TIMEOUT: "5" });
  const any = { ns: "*", sub: "device", exp: nowS() + 300 };
  // namespace a's client starts the fetch, then goes away (600 ms) before it ends (1500 ms): the
  // promise namespace b awaits was made in another object's event (workerd's cross-request rules)
  const raw = connect(b.url("ns-a"), { protocolVersion: 5, username: "x", password: providerToken(k1, any), connectTimeout: 600, reconnectPeriod: 0 }).catch(() => null);
  await until(() => provider.requests >= 1, "the first fetch to start");
  const inB = (async () => {
    try {
      const c = await connect(b.url("ns-b"), { protocolVersion: 5, username: "x", password: providerToken(k1, any) });
      await end(c);
      return 0;
    } catch (e) {
      return (e as { code?: number }).code ?? -1;
    }
  })();
  expect(await inB).toBe(0);
  await raw;
  expect(provider.requests).toBe(1);
  expect(b.logs.join("\n")).not.toMatch(/different request|never generate a response/i);
}, 15000);
