// Password hashes: PBKDF2-HMAC-SHA-256 through WebCrypto, stored as
//   pbkdf2-sha256$<iterations>$<salt, base64>$<derived key, base64>
// Cloudflare Workers refuse PBKDF2 above 100,000 iterations (workerd enforces it in production,
// not locally), so that is both the default and the ceiling: a hash above it could never verify
// once deployed. scripts/hash-password.mjs writes the same format.

export const PBKDF2_ITERATIONS = 100_000;
const SALT_BYTES = 16;
const KEY_BITS = 256;

export interface PasswordHash {
  iterations: number;
  salt: Uint8Array;
  key: Uint8Array;
}

/** Parses a stored hash; null if it is not one we can verify. */
export function parsePasswordHash(text: string): PasswordHash | null {
  const parts = text.split("$");
  if (parts.length !== 4 || parts[0] !== "pbkdf2-sha256") return null;
  const iterations = Number(parts[1]);
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > PBKDF2_ITERATIONS) return null;
  const salt = fromBase64(parts[2]!);
  const key = fromBase64(parts[3]!);
  if (!salt || !key || salt.length < 8 || key.length !== KEY_BITS / 8) return null;
  return { iterations, salt, key };
}

export async function hashPassword(password: string, iterations = PBKDF2_ITERATIONS, salt?: Uint8Array): Promise<string> {
  const s = salt ?? crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  const key = await derive(new TextEncoder().encode(password), s, iterations);
  return `pbkdf2-sha256$${iterations}$${toBase64(s)}$${toBase64(key)}`;
}

/** Derives the key for `password` and compares it in constant time. */
export async function verifyPassword(password: Uint8Array, hash: PasswordHash): Promise<boolean> {
  const key = await derive(password, hash.salt, hash.iterations);
  let diff = key.length ^ hash.key.length;
  for (let i = 0; i < key.length && i < hash.key.length; i++) diff |= key[i]! ^ hash.key[i]!;
  return diff === 0;
}

async function derive(password: Uint8Array, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const material = await crypto.subtle.importKey("raw", password, "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations }, material, KEY_BITS);
  return new Uint8Array(bits);
}

export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return btoa(s);
}

/**
 * Standard or URL-safe base64, padding optional (but complete when present); null when it is not
 * base64 or not its canonical spelling: unused trailing bits must be zero, so that one byte
 * string has one spelling per alphabet (a token cannot be re-spelt into another string).
 */
export function fromBase64(text: string): Uint8Array | null {
  const std = text.replace(/-/g, "+").replace(/_/g, "/");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(std)) return null;
  const body = std.replace(/=+$/, "");
  if (body.length !== std.length && std.length % 4 !== 0) return null; // partial padding
  let bin: string;
  try {
    bin = atob(body.padEnd(Math.ceil(body.length / 4) * 4, "="));
  } catch {
    return null;
  }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  if (toBase64(out).replace(/=+$/, "") !== body) return null; // unused bits set
  return out;
}

/** base64url as JWS writes it (RFC 7515 §2): the URL-safe alphabet, no padding, canonical. */
export function fromBase64Url(text: string): Uint8Array | null {
  return /^[A-Za-z0-9_-]*$/.test(text) ? fromBase64(text) : null;
}
