import { describe, expect, test } from "vitest";
import type { IConnectPacket } from "mqtt-packet";
import { Authenticator, type Grant } from "../../src/auth/authenticator";
import { loadAuthConfig } from "../../src/auth/config";
import { hashPassword } from "../../src/auth/password";
import { ProtocolError } from "../../src/protocol/errors";
import { makeKeys, sign } from "../jwt-helpers";

const connect = (over: Partial<IConnectPacket> = {}): IConnectPacket => ({
  cmd: "connect",
  protocolId: "MQTT",
  protocolVersion: 4,
  clean: true,
  keepalive: 0,
  clientId: "c1",
  ...over,
});

/** The grant, or the refusal's reason code. */
async function verdict(auth: Authenticator, p: IConnectPacket): Promise<Grant | number> {
  try {
    return await auth.authenticate(p);
  } catch (e) {
    if (e instanceof ProtocolError) return e.reasonCode;
    throw e;
  }
}

const logs: string[] = [];
const make = (env: Record<string, string>, namespace: string | null = "default") =>
  new Authenticator(loadAuthConfig(env), namespace, (level, m) => logs.push(`${level} ${m}`));

describe("AUTH_MODE=none", () => {
  test("is synchronous and grants the user name, and says so loudly", () => {
    const auth = make({});
    expect(auth.authenticate(connect({ username: "u" }))).toEqual({ username: "u" });
    logs.length = 0;
    auth.announce();
    expect(logs.join("\n")).toMatch(/warn AUTH_MODE=none: ANY client may connect/);
  });

  test("MQTT 5 enhanced authentication is refused with 0x8C", async () => {
    expect(await verdict(make({}), connect({ protocolVersion: 5, properties: { authenticationMethod: "SCRAM-SHA-1" } }))).toBe(0x8c);
  });
});

describe("configuration fails closed", () => {
  test.each([
    [{ AUTH_MODE: "password" }, /lists no users/],
    [{ AUTH_MODE: "password", AUTH_USERS: `{"alice": "plain"}` }, /plain text is not accepted/],
    [{ AUTH_MODE: "password", AUTH_USERS: `not json` }, /not valid JSON/],
    [{ AUTH_MODE: "jwt" }, /none of JWT_SECRET, JWT_PUBLIC_KEY and JWT_JWKS_URL/],
    [{ AUTH_MODE: "ldap" }, /unknown mode/],
    [{ ACL_DEFAULT: `{"publish": ["a/#/b"]}` }, /bad: "a\/#\/b"/],
  ])("%j", async (env, message) => {
    const auth = make(env);
    expect(auth.config.errors.join("; ")).toMatch(message);
    expect(await verdict(auth, connect())).toBe(0x88);
  });
});

describe("AUTH_MODE=password", async () => {
  const users = {
    alice: { password: await hashPassword("wonderland", 1000), publish: ["a/%u/#"], subscribe: ["a/#"] },
    bob: await hashPassword("builder", 1000),
    carol: { password: await hashPassword("c", 1000), namespaces: ["team-a"] },
  };
  const auth = make({ AUTH_MODE: "password", AUTH_USERS: JSON.stringify(users), ACL_DEFAULT: `{"subscribe": ["public/#"]}` });
  const pw = (s: string) => Buffer.from(s);

  test("right password: the user's lists, ACL_DEFAULT for missing ones", async () => {
    expect(await verdict(auth, connect({ username: "alice", password: pw("wonderland") }))).toEqual({
      username: "alice",
      identity: "user:alice",
      publish: ["a/%u/#"],
      subscribe: ["a/#"],
    });
    const bob = (await verdict(auth, connect({ username: "bob", password: pw("builder") }))) as Grant;
    expect(bob).toEqual({ username: "bob", identity: "user:bob" });
    const rights = auth.rights(bob, "c1");
    expect(rights.publish).toBeNull();
    expect(rights.read!.allows("public/x")).toBe(true);
    expect(rights.read!.allows("a/x")).toBe(false);
  });

  test("wrong password, unknown user, no password: 0x86", async () => {
    expect(await verdict(auth, connect({ username: "alice", password: pw("nope") }))).toBe(0x86);
    expect(await verdict(auth, connect({ username: "mallory", password: pw("x") }))).toBe(0x86);
    expect(await verdict(auth, connect({ username: "alice" }))).toBe(0x86);
    expect(await verdict(auth, connect())).toBe(0x86);
  });

  test("a user limited to other namespaces: 0x87", async () => {
    expect(await verdict(auth, connect({ username: "carol", password: pw("c") }))).toBe(0x87);
    const teamA = make({ AUTH_MODE: "password", AUTH_USERS: JSON.stringify(users) }, "team-a");
    expect(await verdict(teamA, connect({ username: "carol", password: pw("c") }))).toEqual({ username: "carol", identity: "user:carol" });
  });

  test("the close reason does not tell a wrong user from a wrong password", async () => {
    const reasons = await Promise.all(
      [connect({ username: "alice", password: pw("nope") }), connect({ username: "mallory", password: pw("x") })].map((p) =>
        Promise.resolve(auth.authenticate(p)).catch((e: Error) => e.message),
      ),
    );
    expect(reasons[0]).toBe(reasons[1]);
  });
});

describe("AUTH_MODE=jwt", async () => {
  const keys = await makeKeys();
  const now = Math.floor(Date.now() / 1000);
  const auth = make(
    { AUTH_MODE: "jwt", JWT_SECRET: keys.secret, JWT_PUBLIC_KEY: JSON.stringify(keys.ecPublic), JWT_AUDIENCE: "mqtt" },
    "default",
  );
  const withToken = async (claims: Record<string, unknown>, over: Partial<IConnectPacket> = {}, alg: "HS256" | "ES256" = "HS256") =>
    verdict(auth, connect({ username: "ignored", password: Buffer.from(await sign(keys, alg, { aud: "mqtt", exp: now + 60, ...claims })), ...over }));

  test("claims become the grant", async () => {
    expect(await withToken({ ns: "default", sub: "dev", client_id: "c1", publish: ["t/%c/#"], subscribe: ["t/#"] }, {}, "ES256")).toEqual({
      username: "dev",
      identity: "user:dev",
      clientId: "c1",
      publish: ["t/%c/#"],
      subscribe: ["t/#"],
      exp: expect.any(Number), // the token's expiry travels with the grant (the connection ends then)
    });
    // without `sub` the token names no user: the MQTT user name is the client's to choose, so
    // it is not taken for one (%u patterns then grant nothing)
    expect(await withToken({ ns: ["x", "default"] })).toEqual({ identity: "token:", exp: expect.any(Number) });
    expect(await withToken({ ns: "*" }, { clientId: "" })).toEqual({ identity: "token:", exp: expect.any(Number) });
    expect(await withToken({ ns: "*", client_id: "c1" })).toEqual({ identity: "token:c1", clientId: "c1", exp: expect.any(Number) });
  });

  test("without `sub`, a %u pattern does not apply, whatever the MQTT user name", async () => {
    const claims = { ns: "default", publish: ["users/%u/#"], subscribe: ["users/%u/#", "public/#"] };
    const grant = (await withToken(claims, { username: "victim" })) as Grant;
    expect(grant.username).toBeUndefined();
    const rights = auth.rights(grant, "c1");
    expect(rights.read!.allows("users/victim/inbox")).toBe(false);
    expect(rights.publish!.allows("users/victim/inbox")).toBe(false);
    expect(rights.read!.allows("public/x")).toBe(true);
    const named = (await withToken({ ...claims, sub: "dev" }, { username: "victim" })) as Grant;
    expect(auth.rights(named, "c1").read!.allows("users/dev/inbox")).toBe(true);
    expect(auth.rights(named, "c1").read!.allows("users/victim/inbox")).toBe(false);
  });

  test("JWT_MAX_AGE: tokens older than it are refused, and tokens without iat", async () => {
    const aged = make({ AUTH_MODE: "jwt", JWT_SECRET: keys.secret, JWT_MAX_AGE: "600" });
    const t = async (claims: Record<string, unknown>) =>
      verdict(aged, connect({ password: Buffer.from(await sign(keys, "HS256", { ns: "default", sub: "dev", ...claims })) }));
    expect(await t({ iat: now - 60 })).toMatchObject({ username: "dev" });
    expect(await t({ iat: now - 601 })).toBe(0x86);
    expect(await t({})).toBe(0x86);
    expect(make({ AUTH_MODE: "jwt", JWT_SECRET: keys.secret, JWT_MAX_AGE: "soon" }).config.errors.join()).toMatch(/JWT_MAX_AGE/);
  });

  test("JWT_USERNAME_CLAIM names another claim as the user name", async () => {
    const custom = make({ AUTH_MODE: "jwt", JWT_SECRET: keys.secret, JWT_USERNAME_CLAIM: "preferred_username" });
    const t = async (claims: Record<string, unknown>) =>
      verdict(custom, connect({ username: "victim", password: Buffer.from(await sign(keys, "HS256", { ns: "default", exp: now + 60, ...claims })) }));
    expect(await t({ sub: "uuid-1", preferred_username: "dev" })).toEqual({ username: "dev", identity: "user:dev", exp: now + 60 });
    expect(await t({ sub: "uuid-1" })).toEqual({ identity: "token:", exp: expect.any(Number) });
    expect(await t({ preferred_username: 7 })).toBe(0x86); // present but not a user name
    expect(await t({ preferred_username: "" })).toBe(0x86);
  });

  test("a token for another namespace, or without ns: 0x87", async () => {
    expect(await withToken({ ns: "other" })).toBe(0x87);
    expect(await withToken({})).toBe(0x87);
  });

  test("the client id a token pins", async () => {
    expect(await withToken({ ns: "default", client_id: "dev-9" })).toBe(0x87);
    expect(await withToken({ ns: "default", client_id: "dev-9" }, { clientId: "" })).toMatchObject({ clientId: "dev-9" });
  });

  test("bad tokens: 0x86", async () => {
    expect(await withToken({ ns: "default", exp: now - 1 })).toBe(0x86);
    expect(await withToken({ ns: "default", aud: "web" })).toBe(0x86);
    expect(await withToken({ ns: "default", publish: "t/#" })).toBe(0x86);
    expect(await verdict(auth, connect({ username: "u", password: Buffer.from("not-a-token") }))).toBe(0x86);
  });
});

describe("a token that expires while it is verified", async () => {
  const keys = await makeKeys();
  const T = 1_900_000_000; // seconds
  /** an authenticator whose clock reads `times` (ms) one after the other, the last one from then on */
  const clocked = (...times: number[]) =>
    new Authenticator(loadAuthConfig({ AUTH_MODE: "jwt", JWT_SECRET: keys.secret }), "default", () => {}, () => (times.length > 1 ? times.shift()! : times[0]!));
  const token = async (exp: number) => Buffer.from(await sign(keys, "HS256", { ns: "default", exp }));

  test("exp with a fraction of a second: refused once it passed, not at the next whole second", async () => {
    // 0.7 s past an exp of T + 0.5: expired (the whole-second clock read T and let it in)
    expect(await verdict(clocked(T * 1000 + 700), connect({ password: await token(T + 0.5) }))).toBe(0x86);
    expect(await verdict(clocked(T * 1000 + 300), connect({ password: await token(T + 0.5) }))).toEqual(expect.objectContaining({ exp: T + 0.5 }));
  });

  test("exp passes during the verification (e.g. while the provider's key set is fetched): refused, not CONNACK 0 and a cut", async () => {
    // the clock reads T - 0.5 s when verification starts and T + 2 s when it ends
    expect(await verdict(clocked(T * 1000 - 500, T * 1000 + 2000), connect({ password: await token(T) }))).toBe(0x86);
  });
});

describe("the log quotes what the client chose", async () => {
  const keys = await makeKeys();
  test("client id, user name and a token's kid cannot forge log lines", async () => {
    const auth = make({ AUTH_MODE: "password,jwt", AUTH_USERS: JSON.stringify({ alice: await hashPassword("a", 1000) }), JWT_SECRET: keys.secret });
    logs.length = 0;
    await verdict(auth, connect({ clientId: "c1\nerror forged", username: "mallory\r\nwarn x", password: Buffer.from("x") }));
    const token = await sign(keys, "HS256", { ns: "default" }, { alg: "RS256", kid: "k\nerror kid forged" });
    await verdict(auth, connect({ clientId: "c2", password: Buffer.from(token) }));
    expect(logs).toHaveLength(2);
    for (const line of logs) expect(line).not.toMatch(/[\r\n]/);
    expect(logs[0]).toContain(`"c1\\u000aerror forged"`);
    expect(logs[0]).toContain(`"mallory\\u000d\\u000awarn x"`);
    expect(logs[1]).toContain(`kid "k\\u000aerror kid forged"`);
  });
});

describe("session ownership (checkOwner)", () => {
  const auth = make({});
  const refused = (owner: string | null, grant: Grant) => {
    try {
      auth.checkOwner(owner, grant, "phone");
      return "allowed";
    } catch (e) {
      return e instanceof ProtocolError ? e.reasonCode : e;
    }
  };
  test.each([
    [null, {}, "allowed"], // AUTH_MODE=none: nobody's session, nobody identified
    ["user:alice", {}, "allowed"], // AUTH_MODE=none: nobody is identified, nothing to check
    [null, { identity: "user:bob" }, "allowed"], // a session of nobody's is taken
    ["user:alice", { identity: "user:alice" }, "allowed"],
    ["user:alice", { identity: "user:bob" }, 0x87],
    ["user:alice", { identity: "token:" }, 0x87],
    ["token:", { identity: "user:alice" }, 0x87],
    ["token:dev-1", { identity: "token:" }, 0x87],
  ] as const)("owner %j, grant %j: %s", (owner, grant, expected) => {
    expect(refused(owner, grant)).toBe(expected);
  });
});

describe("an unknown user costs what a known one does", () => {
  test("the dummy hash uses the configured users' iteration count (the highest of them)", async () => {
    const users = { alice: await hashPassword("a", 1000), bob: await hashPassword("b", 2000) };
    const auth = make({ AUTH_MODE: "password", AUTH_USERS: JSON.stringify(users) });
    expect(auth.dummyIterations).toBe(2000);
    expect(make({ AUTH_MODE: "jwt", JWT_SECRET: "x".repeat(32) }).dummyIterations).toBe(100_000);
  });

  test("an unknown user takes as long as a wrong password (users hashed with 1,000 iterations)", async () => {
    const auth = make({ AUTH_MODE: "password", AUTH_USERS: JSON.stringify({ alice: await hashPassword("a", 1000) }) });
    const time = async (username: string) => {
      const runs: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t = performance.now();
        await verdict(auth, connect({ username, password: Buffer.from("wrong") }));
        runs.push(performance.now() - t);
      }
      return runs.sort((a, b) => a - b)[2]!; // the median
    };
    await time("alice"); // warm up
    const known = await time("alice");
    const unknown = await time("mallory");
    // 100,000 iterations for the dummy against 1,000 for alice would be ~100 times slower
    expect(unknown).toBeLessThan(known * 5 + 5);
  });

  test("users hashed with different iteration counts: a warning at start-up", async () => {
    const users = { alice: await hashPassword("a", 1000), bob: await hashPassword("b", 2000) };
    logs.length = 0;
    make({ AUTH_MODE: "password", AUTH_USERS: JSON.stringify(users) }).announce();
    expect(logs.join("\n")).toMatch(/warn .*iteration counts differ/);
  });
});
