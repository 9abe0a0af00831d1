// The identity provider's key set (JWKS, RFC 7517) fetched from JWT_JWKS_URL, cached at module
// level: one entry per URL, shared by every namespace object of the isolate, so a hundred
// namespaces do not fetch it a hundred times. Verification awaits it asynchronously (the
// connection's later packets wait in conn.authQueue); other clients are served meanwhile.
//
// When it fetches: on first use; when the set is stale (Cache-Control max-age, JWKS_DEFAULT_TTL
// without one; no-store/no-cache: at once; the stale set serves while the new one is fetched);
// and when a token names a kid the set lacks (keys rotated: that token waits for the fetch). Past the first load, fetches are at least `minInterval` apart whatever the reason,
// so tokens with made-up kids cannot make the broker hammer the provider. A fetch that fails
// (down, timeout, not 200, not a JWKS, no usable key) keeps the last good set in service.
import { importJwksKey, type JwtKey } from "./jwt";

type Log = (level: "info" | "warn" | "error", message: string) => void;

export interface JwksOptions {
  /** least ms between two fetches once a set was loaded (unknown kid, stale set, after a failure) */
  minInterval: number;
  /** ms a fetch may take */
  timeout: number;
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
  now?: () => number;
  log?: Log;
}

/** a set's lifetime when the provider says nothing (Cache-Control without max-age) */
export const JWKS_DEFAULT_TTL = 5 * 60_000;
/** a set is fetched again after a day at the latest, whatever max-age says */
export const JWKS_MAX_TTL = 24 * 3600_000;
/** without any set yet, a failed first load is retried this soon (at the latest after minInterval) */
export const JWKS_FIRST_RETRY = 5_000;
/** larger answers are refused unread; keys beyond the count are ignored */
export const MAX_JWKS_BYTES = 256 * 1024;
export const MAX_JWKS_KEYS = 64;
/** distinct URLs cached in one isolate (oldest dropped first) */
const MAX_URLS = 16;

/**
 * The lifetime (ms) a Cache-Control header gives: max-age (s-maxage for a shared cache wins),
 * 0 for no-store / no-cache, null when it says nothing about it.
 */
export function cacheLifetime(header: string | null): number | null {
  if (!header) return null;
  let maxAge: number | null = null;
  let shared: number | null = null;
  for (const part of header.split(",")) {
    const [rawName, rawValue] = part.split("=", 2) as [string, string | undefined];
    const name = rawName.trim().toLowerCase();
    if (name === "no-store" || name === "no-cache") return 0;
    if (name !== "max-age" && name !== "s-maxage") continue;
    const value = rawValue?.trim().replace(/^"(.*)"$/, "$1");
    if (value === undefined || !/^\d+$/.test(value)) continue; // malformed: ignored
    const seconds = Number(value);
    if (name === "max-age") maxAge = seconds;
    else shared = seconds;
  }
  const seconds = shared ?? maxAge;
  return seconds === null ? null : seconds * 1000;
}

/** Why there is no key set to verify with (the CONNECT is refused with 0x88 / 3). */
export class JwksUnavailable extends Error {
  override name = "JwksUnavailable";
}

export class JwksCache {
  private set: JwtKey[] | null = null;
  private expiresAt = 0;
  private lastAttempt = -Infinity;
  private inflight: Promise<void> | null = null;
  /** fetches started (for tests and the log) */
  fetches = 0;
  private readonly fetchFn: NonNullable<JwksOptions["fetch"]>;
  private readonly now: () => number;
  private readonly log: Log;

  constructor(
    readonly url: string,
    private readonly options: JwksOptions,
  ) {
    this.fetchFn = options.fetch ?? ((url, init) => fetch(url, init));
    this.now = options.now ?? (() => Date.now());
    this.log = options.log ?? (() => {});
  }

  /**
   * The current key set. The first one is awaited; a stale one is served while a fresh one is
   * fetched (when due) in the background, so a slow provider slows nobody down.
   */
  async keys(): Promise<readonly JwtKey[]> {
    if (this.set === null) await this.refresh();
    else if (this.now() >= this.expiresAt) void this.refresh();
    if (this.set === null) throw new JwksUnavailable(`no key set from ${this.url} yet`);
    return this.set;
  }

  /**
   * The set as it is now, without waiting (empty before the first load, which this starts):
   * tokens that other keys verify (JWT_SECRET, JWT_PUBLIC_KEY) never wait for the provider.
   * A stale set starts a refresh in the background, when one is due.
   */
  current(): readonly JwtKey[] {
    if (this.set === null || this.now() >= this.expiresAt) void this.refresh();
    return this.set ?? [];
  }

  /**
   * A token named a key the set lacks (or there is no set yet): fetch if one is due (or join the
   * fetch under way), then the set as it is.
   */
  async rotated(): Promise<readonly JwtKey[]> {
    await this.refresh();
    if (this.set === null) throw new JwksUnavailable(`no key set from ${this.url} yet`);
    return this.set;
  }

  /** One fetch at a time; none sooner than the spacing after the last attempt. */
  private refresh(): Promise<void> {
    if (this.inflight) return this.inflight;
    const now = this.now();
    const spacing = this.set === null ? Math.min(this.options.minInterval, JWKS_FIRST_RETRY) : this.options.minInterval;
    if (now - this.lastAttempt < spacing) return Promise.resolve();
    this.lastAttempt = now;
    this.fetches++;
    this.inflight = this.load().finally(() => (this.inflight = null));
    return this.inflight;
  }

  private async load(): Promise<void> {
    try {
      const { keys, ttl } = await this.download();
      this.set = keys;
      this.expiresAt = this.now() + Math.min(ttl, JWKS_MAX_TTL);
    } catch (e) {
      const kept = this.set ? `; keeping the last good set of ${this.set.length} key(s)` : "; no key set yet: tokens that need one are refused";
      this.log("warn", `JWKS fetch from ${this.url} failed: ${(e as Error).message}${kept}`);
    }
  }

  private async download(): Promise<{ keys: JwtKey[]; ttl: number }> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error(`timed out after ${this.options.timeout} ms`)), this.options.timeout);
    let text: string;
    let res: Response;
    try {
      // redirects are not followed: a redirect could lead off https
      res = await this.fetchFn(this.url, { headers: { accept: "application/jwk-set+json, application/json" }, redirect: "manual", signal: controller.signal });
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      const length = Number(res.headers.get("content-length") ?? "0");
      if (length > MAX_JWKS_BYTES) {
        await res.body?.cancel();
        throw new Error(`the answer is larger than ${MAX_JWKS_BYTES} bytes`);
      }
      text = await readLimited(res, MAX_JWKS_BYTES);
    } catch (e) {
      if (controller.signal.aborted) throw new Error(`timed out after ${this.options.timeout} ms`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
    if (text.length > MAX_JWKS_BYTES) throw new Error(`the answer is larger than ${MAX_JWKS_BYTES} bytes`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error("the answer is not JSON");
    }
    const list = (parsed as { keys?: unknown } | null)?.keys;
    if (!Array.isArray(list)) throw new Error('the answer is not a JWKS ({"keys": [...]})');
    const keys: JwtKey[] = [];
    for (const item of list.slice(0, MAX_JWKS_KEYS)) {
      const key = await importJwksKey(item);
      if (key) keys.push(key);
    }
    if (keys.length === 0) throw new Error(`none of its ${list.length} key(s) is a usable RS256, ES256 or EdDSA signing key`);
    const lifetime = cacheLifetime(res.headers.get("cache-control"));
    return { keys, ttl: lifetime ?? JWKS_DEFAULT_TTL };
  }
}

/**
 * The body as text, read chunk by chunk: past `limit` bytes the read stops and throws, so an
 * answer without Content-Length (chunked, or lying) cannot fill the isolate's memory.
 */
async function readLimited(res: Response, limit: number): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new Error(`the answer is larger than ${limit} bytes`);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

const caches = new Map<string, JwksCache>();

/** The isolate's cache entry for a URL (made on first use; shared by all namespace objects). */
export function jwksCache(url: string, options: JwksOptions): JwksCache {
  let cache = caches.get(url);
  if (!cache) {
    if (caches.size >= MAX_URLS) caches.delete(caches.keys().next().value!);
    cache = new JwksCache(url, options);
    caches.set(url, cache);
  }
  return cache;
}

/**
 * Whether a JWT_JWKS_URL may be used: https, or plain http to this machine only (tests, a local
 * provider). Returns the problem, or null.
 */
export function jwksUrlProblem(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `JWT_JWKS_URL is not a URL ("${text}")`;
  }
  if (url.protocol === "https:") return null;
  const local = url.hostname === "localhost" || url.hostname === "127.0.0.1" || url.hostname === "[::1]";
  if (url.protocol === "http:" && local) return null;
  return `JWT_JWKS_URL must be an https:// URL (plain http:// is allowed for localhost, 127.0.0.1 and [::1] only); got "${text}"`;
}
