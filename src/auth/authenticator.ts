// Who may connect, and with which topic rights. Runs once per CONNECT, before any session logic:
// a refused client leaves nothing behind (no session, no will, no takeover). Password hashes and
// JWT signatures are checked with crypto.subtle, which is asynchronous: the dispatcher holds the
// connection's later packets until the verdict (see dispatcher.ts). AUTH_MODE=none stays synchronous.
import type { ConnectPacket } from "../protocol/codec";
import { ConnectRefused } from "../protocol/errors";
import { RC } from "../protocol/reason-codes";
import { TopicAcl, isPattern } from "./acl";
import { loadAuthConfig, stringList, type AclLists, type AuthConfig } from "./config";
import { JwtError, importJwtKeys, looksLikeJwt, verifyJwt, type Claims, type JwtKey } from "./jwt";
import { JwksUnavailable, jwksCache, type JwksCache } from "./jwks";
import { PBKDF2_ITERATIONS, verifyPassword, type PasswordHash } from "./password";
import { quote } from "../log-safe";
import type { PasswordThrottle } from "./throttle";
import type { Grant } from "./grant";

export type { Grant };

/** The compiled rights of one connection; null means unrestricted. */
export interface Rights {
  publish: TopicAcl | null;
  read: TopicAcl | null;
}

type Log = (level: "info" | "warn" | "error", message: string) => void;

/** Grants from tokens are kept in the socket attachment (16 KiB): their patterns are bounded. */
const MAX_GRANT_CHARS = 4096;

export class Authenticator {
  private keys: Promise<JwtKey[]> | null = null;
  /**
   * Verified when the user is unknown, so a wrong name costs as long as a wrong password: with
   * the configured users' iteration count (the highest, should they differ; config.ts warns).
   */
  private readonly dummyHash: PasswordHash;
  /** limits on password verification (per namespace, per address) and its cache; null: none */
  throttle: PasswordThrottle | null = null;

  constructor(
    readonly config: AuthConfig,
    /** this object's namespace (null if unknown: tokens pinned to a namespace are then refused) */
    readonly namespace: string | null,
    private readonly log: Log,
    private readonly now: () => number = () => Date.now(),
  ) {
    let iterations = 0;
    for (const user of config.users.values()) iterations = Math.max(iterations, user.hash.iterations);
    this.dummyHash = { iterations: iterations || PBKDF2_ITERATIONS, salt: new Uint8Array(16), key: new Uint8Array(32) };
  }

  /** The iteration count an unknown user's (dummy) verification costs. */
  get dummyIterations(): number {
    return this.dummyHash.iterations;
  }

  /** Anyone may connect (AUTH_MODE=none, the local default). */
  static open(): Authenticator {
    return new Authenticator(loadAuthConfig({}), null, () => {});
  }

  /** Says at start-up what protects this broker — loudly when nothing does. */
  announce(): void {
    for (const e of this.config.errors) this.log("error", `auth configuration: ${e} — refusing every connection until fixed`);
    for (const w of this.config.warnings) this.log("warn", `auth configuration: ${w}`);
    if (this.config.modes.size === 0 && this.config.errors.length === 0) {
      this.log("warn", "AUTH_MODE=none: ANY client may connect, publish and subscribe. Set AUTH_MODE to password or jwt before exposing this broker.");
    }
  }

  /**
   * The verdict on a CONNECT: a Grant (synchronously when AUTH_MODE=none), or a ConnectRefused
   * (thrown, or the promise rejects) that becomes CONNACK 0x86/0x87/0x8C (3.1.1: 4/5).
   */
  authenticate(p: ConnectPacket, address?: string): Grant | Promise<Grant> {
    // [MQTT-4.12.0-1] enhanced authentication is not offered
    if (p.protocolVersion === 5 && p.properties?.authenticationMethod) {
      throw new ConnectRefused(RC.BAD_AUTHENTICATION_METHOD, "enhanced authentication is not configured");
    }
    if (this.config.errors.length) throw new ConnectRefused(RC.SERVER_UNAVAILABLE, "authentication is misconfigured");
    if (this.config.modes.size === 0) return p.username === undefined ? {} : { username: p.username };
    return this.verify(p, address);
  }

  private async verify(p: ConnectPacket, address: string | undefined): Promise<Grant> {
    const password = p.password;
    const modes = this.config.modes;
    if (password && modes.has("jwt")) {
      const text = asText(password);
      if (text !== null && looksLikeJwt(text)) return this.verifyToken(p, text);
    }
    if (modes.has("password")) return this.verifyUser(p, password, address);
    throw this.refuse(RC.BAD_USERNAME_OR_PASSWORD, p, "no JWT in the password field");
  }

  private async verifyUser(p: ConnectPacket, password: Uint8Array | undefined, address: string | undefined): Promise<Grant> {
    const name = p.username;
    const user = name === undefined ? undefined : this.config.users.get(name);
    const given = password ?? new Uint8Array(0);
    const hash = () => verifyPassword(given, user?.hash ?? this.dummyHash);
    const ok = this.throttle ? await this.throttle.check(name, given, address, hash) : await hash();
    if (!user || !password || !ok) throw this.refuse(RC.BAD_USERNAME_OR_PASSWORD, p, user ? "wrong password" : "unknown user");
    if (user.namespaces && (this.namespace === null || !user.namespaces.includes(this.namespace))) {
      throw this.refuse(RC.NOT_AUTHORIZED, p, `user may not use namespace ${quote(this.namespace)}`);
    }
    const grant: Grant = { username: name, identity: `user:${name}` };
    if (user.publish) grant.publish = user.publish;
    if (user.subscribe) grant.subscribe = user.subscribe;
    if (user.deny) grant.deny = user.deny;
    return grant;
  }

  private async verifyToken(p: ConnectPacket, token: string): Promise<Grant> {
    let claims: Claims;
    try {
      const c = this.config;
      const own = await this.jwtKeys();
      const jwks = this.jwks();
      let keys = own;
      let refetch: (() => Promise<readonly JwtKey[]>) | undefined;
      if (jwks) {
        // the set as cached; a token no key fits waits for a (first, or rotated) fetch
        keys = own.concat(jwks.current());
        refetch = async () => {
          try {
            return own.concat(await jwks.rotated());
          } catch (e) {
            if (!(e instanceof JwksUnavailable)) throw e;
            // no set at all (the provider has not answered yet): say so, as for missing keys
            this.log("warn", `refused CONNECT of ${quote(p.clientId)}: ${e.message}`);
            throw new ConnectRefused(RC.SERVER_UNAVAILABLE, "the identity provider's keys are unavailable");
          }
        };
      }
      claims = await verifyJwt(
        token,
        keys,
        {
          now: this.now() / 1000, // exp may have a fraction: no rounding that lets a token outlive it
          audience: c.jwtAudience,
          issuer: c.jwtIssuer,
          maxAge: c.jwtMaxAge,
        },
        refetch,
      );
      // Verification may have waited (the provider's key set): a token that expired meanwhile is
      // refused now, not accepted with CONNACK 0 and cut by the alarm a moment later.
      if (typeof claims.exp === "number" && claims.exp * 1000 <= this.now()) throw new JwtError("token expired during verification");
    } catch (e) {
      if (e instanceof JwtError) throw this.refuse(RC.BAD_USERNAME_OR_PASSWORD, p, `JWT refused: ${e.message}`);
      throw e;
    }
    // The token names the namespaces it is for ("*": any); one for another namespace is refused.
    const ns = typeof claims.ns === "string" ? [claims.ns] : stringList(claims.ns);
    if (!ns) throw this.refuse(RC.NOT_AUTHORIZED, p, "JWT has no ns claim");
    if (!ns.includes("*") && (this.namespace === null || !ns.includes(this.namespace))) {
      throw this.refuse(RC.NOT_AUTHORIZED, p, `JWT is not for namespace ${quote(this.namespace)}`);
    }
    // The user name is the token's (`sub`, or JWT_USERNAME_CLAIM), never the MQTT user name: the
    // client chooses that one, and %u must not be the client's choice. Without the claim the
    // token names nobody: %u patterns grant nothing, and its sessions are the token holders'.
    const grant: Grant = {};
    const user = claims[this.config.jwtUsernameClaim];
    if (user !== undefined && (typeof user !== "string" || user === "")) {
      throw this.refuse(RC.BAD_USERNAME_OR_PASSWORD, p, `JWT ${this.config.jwtUsernameClaim} claim is not a user name`);
    }
    if (user !== undefined) grant.username = user;
    grant.identity = user !== undefined ? `user:${user}` : `token:${typeof claims.client_id === "string" ? claims.client_id : ""}`;
    if (claims.client_id !== undefined) {
      if (typeof claims.client_id !== "string") throw this.refuse(RC.BAD_USERNAME_OR_PASSWORD, p, "JWT client_id is not a string");
      if (p.clientId !== "" && p.clientId !== claims.client_id) throw this.refuse(RC.NOT_AUTHORIZED, p, "client id differs from the JWT's client_id");
      grant.clientId = claims.client_id;
    }
    for (const key of ["publish", "subscribe"] as const) {
      if (claims[key] === undefined) continue;
      const list = stringList(claims[key]);
      if (!list) throw this.refuse(RC.BAD_USERNAME_OR_PASSWORD, p, `JWT ${key} claim is not a list of patterns`);
      grant[key] = list;
    }
    if (claims.deny !== undefined) {
      const d = claims.deny as Record<string, unknown> | null;
      const deny: NonNullable<Grant["deny"]> = {};
      for (const key of ["publish", "subscribe"] as const) {
        const value = typeof d === "object" && d !== null && !Array.isArray(d) ? d[key] : null;
        if (value === undefined) continue;
        const list = stringList(value);
        // a deny pattern that does not parse is refused, not dropped: dropping it would allow more
        if (!list || !list.every((s) => isPattern(s.replaceAll("%c", "c").replaceAll("%u", "u")))) {
          throw this.refuse(RC.BAD_USERNAME_OR_PASSWORD, p, `JWT deny claim is not {"publish": [patterns], "subscribe": [patterns]}`);
        }
        deny[key] = list;
      }
      if (deny.publish || deny.subscribe) grant.deny = deny;
    }
    // the session is cut when the token expires (core.alarm); the deadline travels in the grant
    if (typeof claims.exp === "number") grant.exp = claims.exp;
    const lists = [grant.publish, grant.subscribe, grant.deny?.publish, grant.deny?.subscribe];
    const size = lists.reduce((n, l) => n + (l ?? []).reduce((m, s) => m + s.length + 3, 0), 0);
    if (size > MAX_GRANT_CHARS) throw this.refuse(RC.NOT_AUTHORIZED, p, "JWT topic patterns are too large");
    return grant;
  }

  /** The provider's key set (JWT_JWKS_URL), cached for the whole isolate; null when not configured. */
  private jwks(): JwksCache | null {
    const url = this.config.jwtJwksUrl;
    if (url === undefined) return null;
    return jwksCache(url, { minInterval: this.config.jwksMinInterval, timeout: this.config.jwksTimeout, log: this.log });
  }

  private jwtKeys(): Promise<JwtKey[]> {
    this.keys ??= importJwtKeys(this.config.jwtSecret, this.config.jwtPublicKey).catch((e: unknown) => {
      this.log("error", `JWT key configuration: ${(e as Error).message}`);
      throw new ConnectRefused(RC.SERVER_UNAVAILABLE, "JWT keys are misconfigured");
    });
    return this.keys;
  }

  /** Compiles the rights of a grant (ACL_DEFAULT fills lists the grant does not have). */
  rights(grant: Grant, clientId: string): Rights {
    const defaults = this.config.defaults;
    const publish = grant.publish ?? defaults.publish;
    const read = grant.subscribe ?? defaults.subscribe;
    // deny lists fill in one by one too: a user's deny.subscribe replaces ACL_DEFAULT's
    const denyPublish = grant.deny?.publish ?? defaults.deny?.publish;
    const denyRead = grant.deny?.subscribe ?? defaults.deny?.subscribe;
    return {
      publish: TopicAcl.build(publish, denyPublish, clientId, grant.username),
      read: TopicAcl.build(read, denyRead, clientId, grant.username),
    };
  }

  /**
   * A session belongs to the identity that made it: another identity may neither resume it, nor
   * discard it with Clean Start, nor take over its connection (CONNACK 0x87 / 3.1.1: 5). A
   * session of nobody's (made with AUTH_MODE=none, or before owners were stored) goes to whoever
   * takes it; with AUTH_MODE=none (no identity) nothing is checked, as nobody is identified.
   */
  checkOwner(owner: string | null, grant: Grant, clientId: string): void {
    const identity = grant.identity;
    if (identity === undefined || owner === null || owner === identity) return;
    this.log("warn", `refused CONNECT of ${quote(clientId)} (${quote(identity)}): the session belongs to ${quote(owner)}`);
    throw new ConnectRefused(RC.NOT_AUTHORIZED, "not authorized");
  }

  private refuse(code: number, p: ConnectPacket, why: string): ConnectRefused {
    // `why` may quote values of its own (jwt.ts quotes a token's alg and kid)
    this.log("warn", `refused CONNECT of ${quote(p.clientId)}${p.username !== undefined ? ` (user ${quote(p.username)})` : ""}: ${why}`);
    // The reason also travels in the WebSocket close frame: say nothing that tells a wrong user
    // name from a wrong password.
    return new ConnectRefused(code, code === RC.NOT_AUTHORIZED ? "not authorized" : "bad user name or password");
  }
}

function asText(bytes: Uint8Array): string | null {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return null;
  }
}
