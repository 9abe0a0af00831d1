// JSON Web Tokens (RFC 7519) sent as the MQTT password, verified with WebCrypto: HS256 with a
// shared secret, RS256 and ES256 with public JWKs. Only those three algorithms: never "none",
// and the algorithm must fit the key (an HS256 token is never checked against a public key).
import { fromBase64Url } from "./password";
import { quote } from "../log-safe";

export type JwtAlg = "HS256" | "RS256" | "ES256";

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

/** Verifies signature and time claims, then `aud` and `iss` when configured. Returns the claims. */
export async function verifyJwt(token: string, keys: readonly JwtKey[], check: JwtCheck): Promise<Claims> {
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
  const candidates = keys.filter((k) => k.alg === alg && (kid === undefined || k.kid === undefined || k.kid === kid));
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
