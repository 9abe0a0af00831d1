// Throttles password verification, the one expensive step a stranger can trigger (a PBKDF2 of
// 100,000 iterations, ~20-50 ms of the namespace's single thread, per CONNECT):
// - per namespace, every hash takes a token (AUTH_RATE / AUTH_BURST): the CPU spent on
//   verification is bounded, so logged-in clients keep being served;
// - per source address, every failed verification keeps a token (AUTH_FAILURE_RATE /
//   AUTH_FAILURE_BURST; reserved before hashing, given back on success): online guessing is slow;
// - a credential verified in the last AUTH_CACHE_SECONDS is accepted again without hashing (and
//   without tokens), so a reconnect storm of legitimate clients is cheap. The cache holds an HMAC
//   (random key per object, never exported) of user name and password, never the password.
// Beyond a limit the CONNECT is refused at once, without hashing: CONNACK 0x9F (3.1.1: 3).
import type { BrokerConfig } from "../config";
import { TokenBucket } from "../limits/token-bucket";
import { ConnectRefused } from "../protocol/errors";
import { RC } from "../protocol/reason-codes";

/** most verified credentials remembered, and source addresses tracked (oldest forgotten first) */
const MAX_CACHED = 1000;
const MAX_ADDRESSES = 10_000;

export type AuthLimits = Pick<BrokerConfig, "AUTH_RATE" | "AUTH_BURST" | "AUTH_FAILURE_RATE" | "AUTH_FAILURE_BURST" | "AUTH_CACHE_SECONDS">;

export class PasswordThrottle {
  private readonly namespace: TokenBucket;
  private readonly addresses = new Map<string, TokenBucket>();
  /** HMAC of (user, password) → when the entry expires (ms) */
  private readonly verified = new Map<string, number>();
  private key: Promise<CryptoKey> | null = null;

  constructor(
    private readonly limits: AuthLimits,
    private readonly now: () => number,
  ) {
    this.namespace = new TokenBucket(limits.AUTH_RATE, limits.AUTH_BURST);
  }

  /**
   * Runs `verify` (the hash) unless a limit says no; a credential verified recently is accepted
   * without it. `address` is the client's source address (CF-Connecting-IP), if known.
   */
  async check(username: string | undefined, password: Uint8Array, address: string | undefined, verify: () => Promise<boolean>): Promise<boolean> {
    const ttl = this.limits.AUTH_CACHE_SECONDS * 1000;
    const id = ttl > 0 && username !== undefined && password.byteLength > 0 ? await this.fingerprint(username, password) : null;
    const now = this.now();
    if (id !== null) {
      const until = this.verified.get(id);
      if (until !== undefined && until > now) return true;
      if (until !== undefined) this.verified.delete(id);
    }
    const perAddress = address ? this.bucketOf(addressKey(address)) : null;
    if (perAddress && !perAddress.take(now)) throw new ConnectRefused(RC.CONNECTION_RATE_EXCEEDED, "too many failed logins from this address");
    if (!this.namespace.take(now)) {
      perAddress?.refund();
      throw new ConnectRefused(RC.CONNECTION_RATE_EXCEEDED, "too many logins being verified");
    }
    const ok = await verify();
    if (ok) {
      perAddress?.refund(); // only failures count against an address
      if (id !== null) {
        if (this.verified.size >= MAX_CACHED) this.verified.delete(this.verified.keys().next().value!);
        this.verified.set(id, this.now() + ttl);
      }
    }
    return ok;
  }

  private bucketOf(key: string): TokenBucket {
    let b = this.addresses.get(key);
    if (!b) {
      if (this.addresses.size >= MAX_ADDRESSES) this.addresses.delete(this.addresses.keys().next().value!);
      b = new TokenBucket(this.limits.AUTH_FAILURE_RATE, this.limits.AUTH_FAILURE_BURST);
      this.addresses.set(key, b);
    }
    return b;
  }

  private async fingerprint(username: string, password: Uint8Array): Promise<string> {
    this.key ??= crypto.subtle.importKey("raw", crypto.getRandomValues(new Uint8Array(32)), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const name = new TextEncoder().encode(username);
    const input = new Uint8Array(4 + name.byteLength + password.byteLength);
    new DataView(input.buffer).setUint32(0, name.byteLength);
    input.set(name, 4);
    input.set(password, 4 + name.byteLength);
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await this.key, input));
    let s = "";
    for (let i = 0; i < mac.length; i++) s += String.fromCharCode(mac[i]!);
    return s;
  }
}

/** The throttled unit of a source address: IPv4 as it is, IPv6 by its /64 (one subscriber's network). */
export function addressKey(address: string): string {
  if (!address.includes(":")) return address;
  if (address.includes(".")) return address.slice(address.lastIndexOf(":") + 1); // IPv4-mapped
  const [head, tail] = address.toLowerCase().split("::", 2) as [string, string | undefined];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":");
}
