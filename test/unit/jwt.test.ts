import { describe, expect, test } from "vitest";
import { importJwtKeys, verifyJwt, JwtError, looksLikeJwt } from "../../src/auth/jwt";
import { makeKeys, sign, type TestKeys } from "../jwt-helpers";

const now = 1_700_000_000;
let keys: TestKeys;

describe("JWT verification", async () => {
  keys = await makeKeys();
  const verifier = await importJwtKeys(keys.secret, JSON.stringify({ keys: [keys.rsaPublic, keys.ecPublic] }));

  test.each(["HS256", "RS256", "ES256"] as const)("accepts a valid %s token", async (alg) => {
    const token = await sign(keys, alg, { sub: "alice", exp: now + 60 });
    expect(looksLikeJwt(token)).toBe(true);
    const claims = await verifyJwt(token, verifier, { now });
    expect(claims.sub).toBe("alice");
  });

  const refused = async (token: string, check: Partial<{ audience: string; issuer: string }> = {}) =>
    verifyJwt(token, verifier, { now, ...check }).then(
      () => "accepted",
      (e: unknown) => (e instanceof JwtError ? e.message : `other: ${String(e)}`),
    );

  test("time claims: exp and nbf", async () => {
    expect(await refused(await sign(keys, "HS256", { exp: now }))).toBe("token expired");
    expect(await refused(await sign(keys, "HS256", { exp: "tomorrow" }))).toBe("token expired");
    expect(await refused(await sign(keys, "HS256", { nbf: now + 1 }))).toBe("token not yet valid");
    expect(await refused(await sign(keys, "HS256", { nbf: now, exp: now + 1 }))).toBe("accepted");
  });

  test("maxAge: a token needs iat, not in the future, and is refused once older (with or without exp)", async () => {
    const maxAge = async (claims: Record<string, unknown>) =>
      verifyJwt(await sign(keys, "HS256", claims), verifier, { now, maxAge: 3600 }).then(
        () => "accepted",
        (e: unknown) => (e instanceof JwtError ? e.message : `other: ${String(e)}`),
      );
    expect(await maxAge({ iat: now - 3599 })).toBe("accepted");
    expect(await maxAge({ iat: now - 3600 })).toBe("token too old");
    expect(await maxAge({ iat: now - 7200, exp: now + 60 })).toBe("token too old");
    expect(await maxAge({})).toBe("token has no iat");
    expect(await maxAge({ iat: "yesterday" })).toBe("token has no iat");
    expect(await maxAge({ iat: now + 5 })).toBe("token issued in the future");
    // without maxAge, a token without exp does not expire (as documented)
    expect(await refused(await sign(keys, "HS256", {}))).toBe("accepted");
  });

  test("aud and iss when configured", async () => {
    const t = await sign(keys, "ES256", { aud: ["mqtt", "other"], iss: "https://issuer" });
    expect(await refused(t, { audience: "mqtt", issuer: "https://issuer" })).toBe("accepted");
    expect(await refused(t, { audience: "web" })).toBe("wrong audience");
    expect(await refused(t, { issuer: "https://evil" })).toBe("wrong issuer");
  });

  test("tampering, alg none and algorithm confusion are refused", async () => {
    const t = await sign(keys, "RS256", { sub: "alice" });
    const [h, , s] = t.split(".");
    const forged = `${h}.${b64url(JSON.stringify({ sub: "admin" }))}.${s}`;
    expect(await refused(forged)).toBe("bad signature");
    const none = `${b64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${b64url(JSON.stringify({ sub: "admin" }))}.`;
    expect(await refused(none)).toMatch(/no key for alg "none"/);
    // HS256 signed with the RSA public key as the secret: only verifies if alg picks the key.
    const onlyRsa = await importJwtKeys(undefined, JSON.stringify(keys.rsaPublic));
    const confused = await sign({ ...keys, secret: JSON.stringify(keys.rsaPublic) }, "HS256", { sub: "admin" });
    await expect(verifyJwt(confused, onlyRsa, { now })).rejects.toThrow(/no key for alg "HS256"/);
    expect(await refused("eyJhbGciOiJIUzI1NiJ9.e30")).toBe("not a JWT");
    expect(await refused("eyJub3QganNvbg.e30.AAAA")).toBe("header is not JSON");
    const crit = await sign(keys, "HS256", {}, { crit: ["exp"] });
    expect(await refused(crit)).toMatch(/critical/);
  });

  // A token has exactly one spelling: a signature (or header, or claims) written with other
  // unused trailing bits, padding or the standard alphabet is another string, and is refused.
  test.each(["HS256", "RS256", "ES256"] as const)("%s: only the canonical base64url spelling is accepted", async (alg) => {
    const t = await sign(keys, alg, { sub: "alice" });
    expect(await refused(t)).toBe("accepted");
    const [h, c, s] = t.split(".") as [string, string, string];
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const last = alphabet.indexOf(s.at(-1)!);
    const sameBytes = `${h}.${c}.${s.slice(0, -1)}${alphabet[last ^ 1]}`; // flips an unused trailing bit
    expect(Buffer.from(sameBytes.split(".")[2]!, "base64url")).toEqual(Buffer.from(s, "base64url"));
    expect(await refused(sameBytes)).toMatch(/not base64url/);
    const padded = `${h}.${c}.${s}${"=".repeat((4 - (s.length % 4)) % 4)}`;
    if (padded !== t) expect(await refused(padded)).toMatch(/not base64url/);
    const standard = `${h}.${c}.${s.replaceAll("-", "+").replaceAll("_", "/")}`;
    if (standard !== t) expect(await refused(standard)).toMatch(/not base64url/);
    const claims = Buffer.from(JSON.stringify({ sub: "alice" })).toString("base64url");
    if (claims.length % 4 !== 0) {
      const i = alphabet.indexOf(claims.at(-1)!);
      expect(await refused(`${h}.${claims.slice(0, -1)}${alphabet[i ^ 1]}.${s}`)).toMatch(/not base64url/);
    }
  });

  test("kid picks the key", async () => {
    const withKid = await importJwtKeys(undefined, JSON.stringify({ keys: [{ ...keys.ecPublic, kid: "k1" }] }));
    const good = await sign(keys, "ES256", {}, { kid: "k1" });
    const other = await sign(keys, "ES256", {}, { kid: "k2" });
    expect(await verifyJwt(good, withKid, { now })).toEqual({});
    await expect(verifyJwt(other, withKid, { now })).rejects.toThrow(/no key/);
  });

  test("configuration: a private JWK or an unsupported key is refused", async () => {
    await expect(importJwtKeys(undefined, JSON.stringify(keys.ecPrivate))).rejects.toThrow(/private key/);
    await expect(importJwtKeys(undefined, JSON.stringify({ kty: "OKP", crv: "Ed25519", x: "AA" }))).rejects.toThrow(/unsupported JWK/);
  });
});

function b64url(s: string): string {
  return Buffer.from(s).toString("base64url");
}
