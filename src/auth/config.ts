// Authentication and ACL settings from wrangler.toml [vars] and Worker secrets, parsed once per
// object. A setting that does not parse is not skipped: it is reported, and the broker then
// refuses every connection (fail closed) rather than run with less protection than configured.
import { isPattern } from "./acl";
import { parsePasswordHash, type PasswordHash } from "./password";
import { jwksUrlProblem } from "./jwks";

export type AuthMode = "password" | "jwt";

/** Topic patterns: undefined means "whatever ACL_DEFAULT says". */
export interface AclLists {
  publish?: string[];
  subscribe?: string[];
  /** patterns refused even where the lists above allow (see acl.ts); each list fills in like those */
  deny?: DenyLists;
}

/** Deny rules: `subscribe` also denies reading (delivery through a broader subscription). */
export interface DenyLists {
  publish?: string[];
  subscribe?: string[];
}

export interface UserEntry extends AclLists {
  hash: PasswordHash;
  /** namespaces the user may connect to; undefined: all */
  namespaces?: string[];
}

export interface AuthConfig {
  /** empty: AUTH_MODE=none, anyone may connect */
  modes: ReadonlySet<AuthMode>;
  users: ReadonlyMap<string, UserEntry>;
  jwtSecret?: string;
  jwtPublicKey?: string;
  /** JWT_JWKS_URL: the identity provider's key set, fetched and cached (jwks.ts) */
  jwtJwksUrl?: string;
  /** JWT_JWKS_MIN_INTERVAL (s → ms): least time between two fetches of the set once one is loaded */
  jwksMinInterval: number;
  /** JWT_JWKS_TIMEOUT (s → ms): how long a fetch of the set may take */
  jwksTimeout: number;
  jwtAudience?: string;
  jwtIssuer?: string;
  /** JWT_MAX_AGE: seconds after `iat` a token is refused (tokens then need iat); undefined: no limit */
  jwtMaxAge?: number;
  /** JWT_USERNAME_CLAIM: the claim that names the user (`sub` unless configured) */
  jwtUsernameClaim: string;
  /** ACL_DEFAULT: lists for clients whose user entry or token has none; undefined: unrestricted */
  defaults: AclLists;
  /** configuration problems; any makes the broker refuse connections */
  errors: string[];
  /** advice for the log */
  warnings: string[];
}

export function loadAuthConfig(env: Record<string, unknown>): AuthConfig {
  const errors: string[] = [];
  const warnings: string[] = [];
  const modes = new Set<AuthMode>();
  const rawMode = str(env.AUTH_MODE) ?? "none";
  for (const m of rawMode.split(",").map((s) => s.trim().toLowerCase())) {
    if (m === "password" || m === "jwt") modes.add(m);
    else if (m !== "none" && m !== "") errors.push(`AUTH_MODE: unknown mode "${m}" (use none, password, jwt or password,jwt)`);
  }
  if (modes.size > 0 && rawMode.toLowerCase().includes("none")) errors.push(`AUTH_MODE: "none" cannot be combined with other modes`);

  const users = new Map<string, UserEntry>();
  const usersText = str(env.AUTH_USERS);
  if (usersText !== undefined) parseUsers(usersText, users, errors);
  if (modes.has("password") && users.size === 0 && !errors.length) errors.push("AUTH_MODE includes password but AUTH_USERS lists no users");
  const counts = new Set([...users.values()].map((u) => u.hash.iterations));
  if (counts.size > 1) {
    warnings.push(
      `AUTH_USERS: the password hashes' iteration counts differ (${[...counts].sort((a, b) => a - b).join(", ")}): a user hashed with fewer answers faster than an unknown one, which tells that the user exists; hash every password with the same count`,
    );
  }

  const config: AuthConfig = {
    modes,
    users,
    defaults: {},
    errors,
    warnings,
    jwtUsernameClaim: str(env.JWT_USERNAME_CLAIM) ?? "sub",
    jwksMinInterval: seconds(env.JWT_JWKS_MIN_INTERVAL, "JWT_JWKS_MIN_INTERVAL", 60, errors) * 1000,
    jwksTimeout: seconds(env.JWT_JWKS_TIMEOUT, "JWT_JWKS_TIMEOUT", 5, errors) * 1000,
  };
  config.jwtSecret = str(env.JWT_SECRET);
  config.jwtPublicKey = str(env.JWT_PUBLIC_KEY);
  config.jwtJwksUrl = str(env.JWT_JWKS_URL);
  if (config.jwtJwksUrl !== undefined) {
    const problem = jwksUrlProblem(config.jwtJwksUrl);
    if (problem) errors.push(problem);
  }
  config.jwtAudience = str(env.JWT_AUDIENCE);
  config.jwtIssuer = str(env.JWT_ISSUER);
  const maxAge = str(env.JWT_MAX_AGE);
  if (maxAge !== undefined) {
    const n = Number(maxAge);
    if (Number.isInteger(n) && n > 0) config.jwtMaxAge = n;
    else errors.push(`JWT_MAX_AGE must be a whole number of seconds above 0 (got "${maxAge}")`);
  }
  if (modes.has("jwt")) {
    if (!config.jwtSecret && !config.jwtPublicKey && !config.jwtJwksUrl) errors.push("AUTH_MODE includes jwt but none of JWT_SECRET, JWT_PUBLIC_KEY and JWT_JWKS_URL is set");
    if (config.jwtSecret && config.jwtSecret.length < 32) warnings.push("JWT_SECRET is shorter than 32 characters: use a long random secret");
    if (config.jwtJwksUrl && !config.jwtAudience) {
      warnings.push(
        "JWT_JWKS_URL without JWT_AUDIENCE: a token the provider issued for another application is accepted too (if it carries an ns claim); set JWT_AUDIENCE (and JWT_ISSUER) to this broker's",
      );
    }
  }

  const defaults = str(env.ACL_DEFAULT);
  if (defaults !== undefined) {
    const parsed = parseJson(defaults, "ACL_DEFAULT", errors);
    if (parsed !== undefined) config.defaults = aclLists(parsed, "ACL_DEFAULT", errors);
  }
  return config;
}

function parseUsers(text: string, users: Map<string, UserEntry>, errors: string[]): void {
  const parsed = parseJson(text, "AUTH_USERS", errors);
  if (parsed === undefined) return;
  if (!isObject(parsed)) {
    errors.push(`AUTH_USERS must be a JSON object: {"alice": {"password": "pbkdf2-sha256$..."}}`);
    return;
  }
  for (const [name, value] of Object.entries(parsed)) {
    const where = `AUTH_USERS["${name}"]`;
    const entry = typeof value === "string" ? { password: value } : value;
    if (!isObject(entry) || typeof entry.password !== "string") {
      errors.push(`${where}: needs "password": "<hash from npm run hash-password>"`);
      continue;
    }
    const hash = parsePasswordHash(entry.password);
    if (!hash) {
      errors.push(`${where}: password is not a pbkdf2-sha256 hash with at most 100000 iterations (plain text is not accepted)`);
      continue;
    }
    const user: UserEntry = { hash, ...aclLists(entry, where, errors) };
    if (entry.namespaces !== undefined) {
      const ns = stringList(entry.namespaces);
      if (ns) user.namespaces = ns;
      else errors.push(`${where}.namespaces must be a list of namespace names`);
    }
    users.set(name, user);
  }
}

/** `publish` and `subscribe` pattern lists of an object; bad patterns are errors. */
export function aclLists(value: unknown, where: string, errors: string[]): AclLists {
  const out: AclLists = {};
  if (!isObject(value)) {
    errors.push(`${where} must be a JSON object with "publish" and/or "subscribe" lists`);
    return out;
  }
  patternLists(value, out, where, errors);
  if (value.deny !== undefined) {
    if (!isObject(value.deny)) errors.push(`${where}.deny must be a JSON object with "publish" and/or "subscribe" lists`);
    else {
      const deny: DenyLists = {};
      patternLists(value.deny, deny, `${where}.deny`, errors);
      if (deny.publish || deny.subscribe) out.deny = deny;
    }
  }
  return out;
}

function patternLists(value: Record<string, unknown>, out: DenyLists, where: string, errors: string[]): void {
  for (const key of ["publish", "subscribe"] as const) {
    if (value[key] === undefined) continue;
    const list = stringList(value[key]);
    const bad = list?.find((p) => !isPattern(p.replaceAll("%c", "c").replaceAll("%u", "u")));
    if (!list || bad !== undefined) errors.push(`${where}.${key} must be a list of topic patterns${bad !== undefined ? ` (bad: "${bad}")` : ""}`);
    else out[key] = list;
  }
}

function parseJson(text: string, where: string, errors: string[]): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    errors.push(`${where} is not valid JSON: ${(e as Error).message}`);
    return undefined;
  }
}

export function stringList(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === "string") ? (v as string[]) : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A positive number of seconds (fractions allowed), or the default. */
function seconds(v: unknown, name: string, fallback: number, errors: string[]): number {
  const text = str(v);
  if (text === undefined) return fallback;
  const n = Number(text);
  if (Number.isFinite(n) && n > 0) return n;
  errors.push(`${name} must be a number of seconds above 0 (got "${text}")`);
  return fallback;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v.trim() !== "" ? v.trim() : undefined;
}
