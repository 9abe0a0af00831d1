// JSON Web Tokens (RFC 7519) sent as the MQTT password, verified with WebCrypto: HS256 with a
// shared secret, RS256 and ES256 with public JWKs, and EdDSA (Ed25519) with keys from a JWKS URL
// (jwks.ts). Only those: never "none", and the algorithm must fit the key, whose algorithm
// follows from its type (an HS256 token is never checked against a public key, an RS256 token
// never against an EC key).
import { fromBase64Url } from "./password";
import { quote } from "../log-safe";

export type JwtAlg = "HS256" | "RS256" | "ES256" | "EdDSA";

export interface JwtKey {
  alg: JwtAlg;
  kid?: string;
  key: CryptoKey;
}

export type Claims = Record<string, unknown>;

export interface JwtCheck {
  /** seconds since the epoch */
  now: number;
  audience?: string;
  issuer?: string;
  /** seconds: tokens need `iat` and are refused once this old (exp or not) */
  maxAge?: number;
}

/** Why a token was refused (goes to the log, never to the client). */
export class JwtError extends Error {
  override name = "JwtError";
}

/** Tokens longer than this are refused before any work is done. */
export const MAX_TOKEN_LENGTH = 8192;

/** A quick look: three base64url parts, the first a JSON object. */
export function looksLikeJwt(text: string): boolean {
  return text.startsWith("eyJ") && /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(text);
}

/** Imports the verification keys: `secret` for HS256, `jwks` (a JWK or {"keys": [...]}) for RS256/ES256. */
export async function importJwtKeys(secret: string | undefined, jwks: string | undefined): Promise<JwtKey[]> {
  const keys: JwtKey[] = [];
  if (secret) {
    const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
    keys.push({ alg: "HS256", key });
  }
  if (jwks) {
    const parsed = JSON.parse(jwks) as { keys?: unknown[] } & Record<string, unknown>;
    const list = Array.isArray(parsed.keys) ? parsed.keys : [parsed];
    for (const item of list) keys.push(await importPublicJwk(item as JsonWebKey & { kid?: string }));
  }
  return keys;
}

async function importPublicJwk(jwk: JsonWebKey & { kid?: string }): Promise<JwtKey> {
  if (!jwk || typeof jwk !== "object") throw new Error("a JWK must be an object");
  if ("d" in jwk) throw new Error("JWT_PUBLIC_KEY holds a private key: configure the public part only");
  const { kid, key_ops: _ops, use: _use, ...material } = jwk as JsonWebKey & { kid?: string; use?: string };
  let alg: JwtAlg;
  let algorithm: SubtleCryptoImportKeyAlgorithm;
  if (material.kty === "RSA") {
    alg = "RS256";
    algorithm = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  } else if (material.kty === "EC" && material.crv === "P-256") {
    alg = "ES256";
    algorithm = { name: "ECDSA", namedCurve: "P-256" };
  } else {
    throw new Error(`unsupported JWK (kty ${String(material.kty)}): use RSA (RS256) or EC P-256 (ES256)`);
  }
  if (material.alg !== undefined && material.alg !== alg) throw new Error(`JWK alg ${material.alg} does not fit its key type`);
  const key = await crypto.subtle.importKey("jwk", material, algorithm, false, ["verify"]);
  return kid === undefined ? { alg, key } : { alg, kid, key };
}

/**
 * A key of a JWKS fetched from the provider, or null when it is not one we use (another `use`, an
 * algorithm we do not verify, a private or too short key): a provider's set may hold keys for
 * others, so those are skipped, not errors. RSA → RS256 (≥ 2048 bits), EC P-256 → ES256,
 * OKP Ed25519 → EdDSA; a JWK `alg` must name that algorithm.
 */
export async function importJwksKey(value: unknown): Promise<JwtKey | null> {
  if (!value || typeof value !== "object" || Array.isArray(value)) return null;
  const jwk = value as Record<string, unknown>;
  if (jwk.use !== undefined && jwk.use !== "sig") return null;
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes("verify"))) return null;
  if ("d" in jwk) return null; // a private key has no business in a published set
  let alg: JwtAlg;
  let algorithm: SubtleCryptoImportKeyAlgorithm;
  let material: JsonWebKey;
  if (jwk.kty === "RSA" && typeof jwk.n === "string" && typeof jwk.e === "string") {
    if (jwk.n.replace(/=+$/, "").length < 342) return null; // under 2048 bits
    alg = "RS256";
    algorithm = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    material = { kty: "RSA", n: jwk.n, e: jwk.e };
  } else if (jwk.kty === "EC" && jwk.crv === "P-256" && typeof jwk.x === "string" && typeof jwk.y === "string") {
    alg = "ES256";
    algorithm = { name: "ECDSA", namedCurve: "P-256" };
    material = { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y };
  } else if (jwk.kty === "OKP" && jwk.crv === "Ed25519" && typeof jwk.x === "string") {
    alg = "EdDSA";
    algorithm = { name: "Ed25519" };
    material = { kty: "OKP", crv: "Ed25519", x: jwk.x };
  } else return null;
  if (jwk.alg !== undefined && jwk.alg !== alg && !(alg === "EdDSA" && jwk.alg === "Ed25519")) return null;
  let key: CryptoKey;
  try {
    key = await crypto.subtle.importKey("jwk", material, algorithm, false, ["verify"]);
  } catch {
    return null; // not a valid key of its type
  }
  return typeof jwk.kid === "string" ? { alg, kid: jwk.kid, key } : { alg, key };
}

/**
 * Verifies signature and time claims, then `aud` and `iss` when configured. Returns the claims.
 * `refetch`, when given, is asked once for more keys when none fits the token's alg and kid, or
 * only keys without a kid do (a key set that rotated); it may throw to refuse the token when no
 * key fits otherwise (the set is unavailable).
 */
export async function verifyJwt(token: string, keys: readonly JwtKey[], check: JwtCheck, refetch?: () => Promise<readonly JwtKey[]>): Promise<Claims> {
  if (token.length > MAX_TOKEN_LENGTH) throw new JwtError("token too long");
  const parts = token.split(".");
  if (parts.length !== 3) throw new JwtError("not a JWT");
  const header = jsonPart(parts[0]!, "header");
  const claims = jsonPart(parts[1]!, "claims");
  const signature = fromBase64Url(parts[2]!);
  if (!signature) throw new JwtError("signature is not base64url");
  // Extensions we do not understand must not be ignored (RFC 7515 §4.1.11).
  if (header.crit !== undefined) throw new JwtError("critical header parameters are not supported");
  const alg = header.alg;
  const kid = typeof header.kid === "string" ? header.kid : undefined;
  const fits = (k: JwtKey) => k.alg === alg && (kid === undefined || k.kid === undefined || k.kid === kid);
  let candidates = keys.filter(fits);
  if (refetch && PUBLISHED_ALGS.has(alg as string)) {
    if (candidates.length === 0) candidates = (await refetch()).filter(fits);
    else if (kid !== undefined && !candidates.some((k) => k.kid === kid)) {
      // only keys without a kid fit (JWT_PUBLIC_KEY, say): the token's key may be a rotated one
      // of the provider's; those at hand still count should the set be unavailable
      try {
        const more = (await refetch()).filter((k) => fits(k) && !candidates.includes(k));
        candidates = candidates.concat(more);
      } catch {
        // keep the keys at hand
      }
    }
  }
  if (candidates.length === 0) throw new JwtError(`no key for alg ${quote(alg, 16)}${kid !== undefined ? ` kid ${quote(kid, 64)}` : ""}`);
  const signed = new TextEncoder().encode(`${parts[0]}.${parts[1]}`);
  let valid = false;
  for (const k of candidates) {
    if (await verifySignature(k, signature, signed)) {
      valid = true;
      break;
    }
  }
  if (!valid) throw new JwtError("bad signature");

  const { now } = check;
  if (claims.exp !== undefined && !(typeof claims.exp === "number" && now < claims.exp)) throw new JwtError("token expired");
  if (claims.nbf !== undefined && !(typeof claims.nbf === "number" && now >= claims.nbf)) throw new JwtError("token not yet valid");
  if (check.maxAge !== undefined) {
    if (typeof claims.iat !== "number" || !Number.isFinite(claims.iat)) throw new JwtError("token has no iat");
    if (claims.iat > now) throw new JwtError("token issued in the future");
    if (now - claims.iat >= check.maxAge) throw new JwtError("token too old");
  }
  if (check.audience !== undefined) {
    const aud = claims.aud;
    const ok = aud === check.audience || (Array.isArray(aud) && aud.includes(check.audience));
    if (!ok) throw new JwtError("wrong audience");
  }
  if (check.issuer !== undefined && claims.iss !== check.issuer) throw new JwtError("wrong issuer");
  return claims;
}

/** algorithms a provider's key set can hold: only these are worth a fetch (never HS256, never "none") */
const PUBLISHED_ALGS: ReadonlySet<string> = new Set<JwtAlg>(["RS256", "ES256", "EdDSA"]);

function verifySignature(k: JwtKey, signature: Uint8Array, data: Uint8Array): Promise<boolean> {
  switch (k.alg) {
    case "HS256":
      return crypto.subtle.verify("HMAC", k.key, signature, data);
    case "RS256":
      return crypto.subtle.verify("RSASSA-PKCS1-v1_5", k.key, signature, data);
    case "ES256":
      // JWS carries ECDSA signatures as r‖s (64 bytes), the format WebCrypto expects.
      if (signature.length !== 64) return Promise.resolve(false);
      return crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, k.key, signature, data);
    case "EdDSA":
      if (signature.length !== 64) return Promise.resolve(false);
      return crypto.subtle.verify("Ed25519", k.key, signature, data);
  }
}

function jsonPart(part: string, what: string): Record<string, unknown> {
  const bytes = fromBase64Url(part);
  if (!bytes) throw new JwtError(`${what} is not base64url`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes));
  } catch {
    throw new JwtError(`${what} is not JSON`);
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new JwtError(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}
