// The JWKS cache (auth/jwks.ts) with an injected fetch and clock: when it fetches, what it keeps
// when the provider fails, Cache-Control, key selection (kid, alg, kty, use), and the URL rule.
import { describe, expect, test } from "vitest";
import { JwksCache, JwksUnavailable, cacheLifetime, jwksUrlProblem, JWKS_DEFAULT_TTL, JWKS_FIRST_RETRY, MAX_JWKS_BYTES } from "../../src/auth/jwks";
import { importJwksKey, verifyJwt, JwtError } from "../../src/auth/jwt";
import { loadAuthConfig } from "../../src/auth/config";
import { providerKey, providerToken, type ProviderKey } from "../jwks-helpers";

const rsa1 = providerKey("RS256", "rsa-1");
const rsa2 = providerKey("RS256", "rsa-2");
const ec = providerKey("ES256", "ec-1");
const ed = providerKey("EdDSA", "ed-1");

/** A provider in memory: its keys, its Cache-Control, whether it is up; counts requests. */
class FakeProvider {
  keys: ProviderKey[] = [rsa1];
  cacheControl: string | null = "max-age=600";
  mode: "up" | "down" | "garbage" | "500" | "hang" | "body" = "up";
  /** mode "body": the answer */
  body: (() => Response) | null = null;
  requests = 0;
  fetch = async (_url: string, init: RequestInit): Promise<Response> => {
    this.requests++;
    if (this.mode === "body") return this.body!();
    if (this.mode === "down") throw new TypeError("Network connection lost.");
    if (this.mode === "500") return new Response("oops", { status: 500 });
    if (this.mode === "garbage") return new Response("<html>not json</html>", { status: 200 });
    if (this.mode === "hang") {
      return new Promise((_, reject) => init.signal?.addEventListener("abort", () => reject(init.signal!.reason)));
    }
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.cacheControl) headers["cache-control"] = this.cacheControl;
    return new Response(JSON.stringify({ keys: this.keys.map((k) => k.jwk) }), { status: 200, headers });
  };
}

function setup(minInterval = 60_000) {
  const provider = new FakeProvider();
  let t = 1_000_000;
  const clock = { advance: (ms: number) => (t += ms) };
  const logs: string[] = [];
  const cache = new JwksCache("https://idp.test/jwks", { minInterval, timeout: 50, fetch: provider.fetch, now: () => t, log: (_l, m) => logs.push(m) });
  return { provider, clock, cache, logs };
}
const kids = async (p: Promise<readonly { kid?: string }[]>) => (await p).map((k) => k.kid);

describe("cacheLifetime (Cache-Control)", () => {
  test.each([
    [null, null],
    ["", null],
    ["public", null],
    ["max-age=300", 300_000],
    ["public, max-age=60, must-revalidate", 60_000],
    ['max-age="30"', 30_000],
    ["max-age=abc", null],
    ["max-age=-5", null],
    ["no-store", 0],
    ["no-cache, max-age=600", 0],
    ["max-age=600, s-maxage=100", 100_000],
    ["MAX-AGE=10", 10_000],
  ])("%j → %j ms", (header, ms) => {
    expect(cacheLifetime(header)).toBe(ms);
  });
});

describe("JwksCache", () => {
  test("first use fetches once; concurrent callers share the fetch; max-age keeps it", async () => {
    const { provider, clock, cache } = setup();
    const [a, b] = await Promise.all([kids(cache.keys()), kids(cache.keys())]);
    expect(a).toEqual(["rsa-1"]);
    expect(b).toEqual(["rsa-1"]);
    expect(provider.requests).toBe(1);
    clock.advance(599_000);
    await cache.keys();
    expect(provider.requests).toBe(1);
  });

  test("current(): the set without waiting; empty before the first load, which it starts", async () => {
    const { provider, clock, cache } = setup();
    provider.cacheControl = "max-age=120";
    expect(cache.current()).toEqual([]);
    expect(provider.requests).toBe(1);
    expect(await kids(cache.rotated())).toEqual(["rsa-1"]); // joins the fetch under way
    expect(provider.requests).toBe(1);
    expect(cache.current().map((k) => k.kid)).toEqual(["rsa-1"]);
    clock.advance(120_000);
    provider.keys = [rsa2];
    expect(cache.current().map((k) => k.kid)).toEqual(["rsa-1"]); // stale: served, refreshed behind
    expect(provider.requests).toBe(2);
    await new Promise((r) => setTimeout(r, 0));
    expect(cache.current().map((k) => k.kid)).toEqual(["rsa-2"]);
  });

  test("a stale set is served while a fresh one is fetched in the background", async () => {
    const { provider, clock, cache } = setup();
    provider.cacheControl = "max-age=120";
    await cache.keys();
    provider.keys = [rsa2];
    clock.advance(121_000);
    expect(await kids(cache.keys())).toEqual(["rsa-1"]); // stale, served at once
    expect(provider.requests).toBe(2);
    await new Promise((r) => setTimeout(r, 0));
    expect(await kids(cache.keys())).toEqual(["rsa-2"]);
    expect(provider.requests).toBe(2);
  });

  test("no max-age: the default lifetime; no-store: stale at once, but fetched at most every minInterval", async () => {
    const { provider, clock, cache } = setup(60_000);
    provider.cacheControl = null;
    await cache.keys();
    clock.advance(JWKS_DEFAULT_TTL - 1);
    await cache.keys();
    expect(provider.requests).toBe(1);
    clock.advance(1);
    await cache.keys();
    expect(provider.requests).toBe(2);

    const other = setup(60_000);
    other.provider.cacheControl = "no-store";
    await other.cache.keys();
    for (let i = 0; i < 10; i++) await other.cache.keys();
    expect(other.provider.requests).toBe(1);
    other.clock.advance(60_000);
    await other.cache.keys();
    expect(other.provider.requests).toBe(2);
  });

  test("an unknown kid refetches at most once per minInterval", async () => {
    const { provider, clock, cache } = setup(60_000);
    await cache.keys();
    provider.keys = [rsa1, rsa2];
    clock.advance(60_000);
    expect(await kids(cache.rotated())).toEqual(["rsa-1", "rsa-2"]);
    expect(provider.requests).toBe(2);
    clock.advance(59_000);
    for (let i = 0; i < 20; i++) await cache.rotated(); // tokens with made-up kids
    expect(provider.requests).toBe(2);
    clock.advance(1_000);
    await cache.rotated();
    expect(provider.requests).toBe(3);
  });

  test.each(["down", "garbage", "500", "hang"] as const)("provider %s: the last good set stays in service", async (mode) => {
    const { provider, clock, cache, logs } = setup(60_000);
    provider.cacheControl = "max-age=60";
    await cache.keys();
    provider.mode = mode;
    clock.advance(61_000);
    expect(await kids(cache.rotated())).toEqual(["rsa-1"]);
    expect(provider.requests).toBe(2);
    expect(logs.at(-1)).toMatch(/failed: .*keeping the last good set of 1 key/);
    expect(await kids(cache.keys())).toEqual(["rsa-1"]); // stale, but not refetched before the interval
    expect(provider.requests).toBe(2);
  });

  test("no set yet and the provider down: unavailable; retried after a short pause, not per CONNECT", async () => {
    const { provider, clock, cache } = setup(60_000);
    provider.mode = "down";
    await expect(cache.keys()).rejects.toBeInstanceOf(JwksUnavailable);
    await expect(cache.keys()).rejects.toBeInstanceOf(JwksUnavailable);
    expect(provider.requests).toBe(1);
    provider.mode = "up";
    clock.advance(JWKS_FIRST_RETRY);
    expect(await kids(cache.keys())).toEqual(["rsa-1"]);
    expect(provider.requests).toBe(2);
  });

  test("an answer without Content-Length is read up to MAX_JWKS_BYTES, not to its end", async () => {
    // a chunked (or lying) provider: the limit must hold while reading, not after the whole body is in memory
    const { provider, clock, cache, logs } = setup(1000);
    await cache.keys();
    let pulled = 0;
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    provider.mode = "body";
    provider.body = () =>
      new Response(
        new ReadableStream<Uint8Array>({
          pull(controller) {
            if (pulled >= 16 * 1024 * 1024) return controller.close();
            pulled += chunk.byteLength;
            controller.enqueue(chunk);
          },
        }),
        { status: 200 },
      );
    clock.advance(1000);
    expect(await kids(cache.rotated())).toEqual(["rsa-1"]); // the last good set stays
    expect(logs.at(-1)).toMatch(/larger than 262144 bytes/);
    expect(pulled).toBeLessThanOrEqual(MAX_JWKS_BYTES + 2 * chunk.byteLength);
  });

  test("a set without one usable key is garbage: refused, the old one kept", async () => {
    const { provider, clock, cache, logs } = setup(1000);
    await cache.keys();
    provider.keys = [{ ...rsa2, jwk: { kty: "oct", k: "c2VjcmV0", kid: "hmac" } }];
    clock.advance(1000);
    expect(await kids(cache.rotated())).toEqual(["rsa-1"]);
    expect(logs.at(-1)).toMatch(/none of its 1 key/);
  });
});

describe("importJwksKey: which keys of a set are used", () => {
  test.each([
    ["RSA", rsa1.jwk, "RS256"],
    ["EC P-256", ec.jwk, "ES256"],
    ["Ed25519", ed.jwk, "EdDSA"],
    ["Ed25519 with alg Ed25519", { ...ed.jwk, alg: "Ed25519" }, "EdDSA"],
    ["no use, no alg", { kty: "EC", crv: "P-256", x: ec.jwk.x, y: ec.jwk.y }, "ES256"],
  ])("%s → %s", async (_what, jwk, alg) => {
    expect((await importJwksKey(jwk))?.alg).toBe(alg);
  });

  test.each([
    ["use enc", { ...rsa1.jwk, use: "enc" }],
    ["key_ops without verify", { ...rsa1.jwk, key_ops: ["encrypt"] }],
    ["RSA with alg PS256", { ...rsa1.jwk, alg: "PS256" }],
    ["RSA labelled ES256", { ...rsa1.jwk, alg: "ES256" }],
    ["EC P-384", { ...ec.jwk, crv: "P-384" }],
    ["HMAC (oct)", { kty: "oct", k: "c2VjcmV0" }],
    ["a private key", { ...ec.jwk, d: "AAAA" }],
    ["RSA under 2048 bits", { ...rsa1.jwk, n: (rsa1.jwk.n as string).slice(0, 200) }],
    ["garbage", "a string"],
    ["an Ed25519 key that is not one", { kty: "OKP", crv: "Ed25519", x: "AA" }],
  ])("%s: skipped", async (_what, jwk) => {
    expect(await importJwksKey(jwk)).toBeNull();
  });
});

describe("verification with a JWKS", () => {
  const now = Math.floor(Date.now() / 1000);
  const claims = { ns: "default", exp: now + 60 };
  const set = async (...ks: ProviderKey[]) => (await Promise.all(ks.map((k) => importJwksKey(k.jwk)))).filter((k) => k !== null);

  test.each([rsa1, ec, ed])("%s tokens verify by kid", async (key) => {
    const keys = await set(rsa1, rsa2, ec, ed);
    expect(await verifyJwt(providerToken(key, claims), keys, { now })).toMatchObject(claims);
  });

  test("selection by kid: a token for one key does not verify with another of the same type", async () => {
    const keys = await set(rsa1);
    const forged = providerToken(rsa2, claims, { kid: "rsa-1" }); // signed by rsa2, claims rsa1
    await expect(verifyJwt(forged, keys, { now })).rejects.toThrow(/bad signature/);
  });

  test("alg none and algorithm confusion are refused without any fetch", async () => {
    const keys = await set(rsa1, ec);
    let asked = 0;
    const refetch = async () => {
      asked++;
      return keys;
    };
    const none = providerToken(rsa1, claims, { alg: "none" }).split(".").slice(0, 2).join(".") + ".";
    await expect(verifyJwt(none, keys, { now }, refetch)).rejects.toThrow(/no key for alg "none"/);
    // an RSA key's kid, an ES256 token: the key's type decides its algorithm
    const confused = providerToken(ec, claims, { kid: "rsa-1" });
    await expect(verifyJwt(confused, await set(rsa1), { now }, refetch)).rejects.toThrow(/no key for alg "ES256"/);
    // HS256 signed with the RSA public key's text as the secret: no HS256 key at all
    const hs = providerToken(rsa1, claims, { alg: "HS256" });
    await expect(verifyJwt(hs, keys, { now }, refetch)).rejects.toThrow(/no key for alg "HS256"/);
    expect(asked).toBe(1); // only the ES256 token (an algorithm a key set can hold) asked for fresh keys
  });

  test("a key without kid (JWT_PUBLIC_KEY, say) does not stop a refetch for a token whose kid no key has (a rotation)", async () => {
    const plain = await importJwksKey({ ...providerKey("RS256", "x").jwk, kid: undefined }); // another RSA key, no kid
    let asked = 0;
    const refetch = async () => {
      asked++;
      return [plain!, ...(await set(rsa2))];
    };
    expect(await verifyJwt(providerToken(rsa2, claims), [plain!, ...(await set(rsa1))], { now }, refetch)).toMatchObject(claims);
    expect(asked).toBe(1);
    // the set unavailable: the keys at hand still verify what they can
    const down = async (): Promise<never> => {
      throw new Error("no set");
    };
    expect(await verifyJwt(providerToken(rsa1, claims), await set(rsa1), { now }, down)).toMatchObject(claims);
  });

  test("an unknown kid asks refetch once, then verifies with the new set", async () => {
    let asked = 0;
    const fresh = await set(rsa1, rsa2);
    const refetch = async () => {
      asked++;
      return fresh;
    };
    expect(await verifyJwt(providerToken(rsa2, claims), await set(rsa1), { now }, refetch)).toMatchObject(claims);
    expect(asked).toBe(1);
    const unknown = providerToken(providerKey("RS256", "rsa-9"), claims);
    await expect(verifyJwt(unknown, await set(rsa1), { now }, refetch)).rejects.toBeInstanceOf(JwtError);
    expect(asked).toBe(2);
  });
});

describe("JWT_JWKS_URL", () => {
  test.each([
    ["https://idp.example.com/.well-known/jwks.json", null],
    ["http://localhost:8080/jwks", null],
    ["http://127.0.0.1:1234/jwks", null],
    ["http://[::1]:1234/jwks", null],
    ["http://idp.example.com/jwks", /must be an https:\/\/ URL/],
    ["http://127.0.0.2/jwks", /must be an https/],
    ["ftp://localhost/jwks", /must be an https/],
    ["not a url", /not a URL/],
  ])("%s", (url, problem) => {
    const p = jwksUrlProblem(url);
    if (problem === null) expect(p).toBeNull();
    else expect(p).toMatch(problem);
  });

  test("configuration: errors are reported, the knobs parsed; a JWKS alone satisfies jwt mode", () => {
    const ok = loadAuthConfig({ AUTH_MODE: "jwt", JWT_JWKS_URL: "https://idp.test/jwks", JWT_JWKS_MIN_INTERVAL: "30", JWT_JWKS_TIMEOUT: "2.5" });
    expect(ok.errors).toEqual([]);
    expect(ok.jwksMinInterval).toBe(30_000);
    expect(ok.jwksTimeout).toBe(2500);
    expect(loadAuthConfig({ AUTH_MODE: "jwt" }).jwksMinInterval).toBe(60_000);
    expect(loadAuthConfig({ AUTH_MODE: "jwt", JWT_JWKS_URL: "http://idp.test/jwks" }).errors).toEqual([expect.stringMatching(/https/)]);
    expect(loadAuthConfig({ AUTH_MODE: "jwt", JWT_JWKS_URL: "https://idp.test/jwks", JWT_JWKS_TIMEOUT: "0" }).errors).toEqual([expect.stringMatching(/JWT_JWKS_TIMEOUT/)]);
  });

  test("a provider's key set without JWT_AUDIENCE: a warning at start-up (the provider's tokens for other applications would do)", () => {
    const open = loadAuthConfig({ AUTH_MODE: "jwt", JWT_JWKS_URL: "https://idp.test/jwks" });
    expect(open.errors).toEqual([]);
    expect(open.warnings).toEqual([expect.stringMatching(/JWT_JWKS_URL without JWT_AUDIENCE/)]);
    expect(loadAuthConfig({ AUTH_MODE: "jwt", JWT_JWKS_URL: "https://idp.test/jwks", JWT_AUDIENCE: "mqtt" }).warnings).toEqual([]);
  });
});
