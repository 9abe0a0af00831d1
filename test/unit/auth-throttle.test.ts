// The password-verification throttle (auth/throttle.ts): per namespace, per source address, and
// the cache of recently verified credentials. Pure: a fake clock and a counting "hash".
import { describe, expect, test } from "vitest";
import { PasswordThrottle, addressKey, type AuthLimits } from "../../src/auth/throttle";
import { Authenticator } from "../../src/auth/authenticator";
import { loadAuthConfig } from "../../src/auth/config";
import { hashPassword } from "../../src/auth/password";
import { ConnectRefused } from "../../src/protocol/errors";
import type { ConnectPacket } from "../../src/protocol/codec";

const limits = (more: Partial<AuthLimits> = {}): AuthLimits => ({
  AUTH_RATE: 100,
  AUTH_BURST: 100,
  AUTH_FAILURE_RATE: 0.1,
  AUTH_FAILURE_BURST: 3,
  AUTH_CACHE_SECONDS: 300,
  ...more,
});

function setup(more: Partial<AuthLimits> = {}) {
  let now = 1_000_000;
  let hashes = 0;
  const throttle = new PasswordThrottle(limits(more), () => now);
  const pw = (s: string) => new TextEncoder().encode(s);
  /** the verdict, or the refusal's reason code; counts the hashes really computed */
  const login = (user: string, password: string, address?: string) =>
    throttle
      .check(user, pw(password), address, async () => {
        hashes++;
        return password === "right";
      })
      .catch((e: unknown) => (e instanceof ConnectRefused ? e.reasonCode : Promise.reject(e)));
  return { login, hashes: () => hashes, advance: (ms: number) => (now += ms) };
}

describe("PasswordThrottle", () => {
  test("failures from one address beyond the burst are refused with 0x9F, without hashing; other addresses are not", async () => {
    const t = setup();
    for (let i = 0; i < 3; i++) expect(await t.login("alice", `guess-${i}`, "203.0.113.7")).toBe(false);
    expect(t.hashes()).toBe(3);
    expect(await t.login("alice", "guess-3", "203.0.113.7")).toBe(0x9f);
    expect(await t.login("alice", "right", "203.0.113.7")).toBe(0x9f); // the right password too: guessing learns nothing
    expect(t.hashes()).toBe(3);
    expect(await t.login("alice", "guess-4", "198.51.100.1")).toBe(false);
    t.advance(10_000); // AUTH_FAILURE_RATE 0.1: one more try after 10 s
    expect(await t.login("alice", "guess-5", "203.0.113.7")).toBe(false);
    expect(await t.login("alice", "guess-6", "203.0.113.7")).toBe(0x9f);
  });

  test("successful logins do not count against their address", async () => {
    const t = setup({ AUTH_CACHE_SECONDS: 0 });
    for (let i = 0; i < 10; i++) expect(await t.login(`user-${i}`, "right", "203.0.113.8")).toBe(true);
    expect(t.hashes()).toBe(10);
  });

  test("the namespace verifies at most AUTH_BURST at once, then AUTH_RATE a second, whatever the addresses", async () => {
    const t = setup({ AUTH_RATE: 2, AUTH_BURST: 5 });
    const verdicts = await Promise.all(Array.from({ length: 8 }, (_, i) => t.login("alice", `guess-${i}`, `192.0.2.${i}`)));
    // which five of the eight concurrent logins get through is the scheduler's; that five do, and three are refused, is the limit's
    expect(verdicts.filter((v) => v === false)).toHaveLength(5);
    expect(verdicts.filter((v) => v === 0x9f)).toHaveLength(3);
    expect(t.hashes()).toBe(5);
    t.advance(500);
    expect(await t.login("alice", "x", "192.0.2.9")).toBe(false);
    expect(await t.login("alice", "x", "192.0.2.10")).toBe(0x9f);
    // a refusal by the namespace limit does not use up the address's failures
    t.advance(60_000);
    for (let i = 0; i < 3; i++) expect(await t.login("alice", "x", "192.0.2.10")).toBe(false);
  });

  test("a credential verified recently is accepted again without hashing, even when the namespace is at its limit", async () => {
    const t = setup({ AUTH_RATE: 1, AUTH_BURST: 1 });
    expect(await t.login("alice", "right", "203.0.113.9")).toBe(true);
    expect(t.hashes()).toBe(1);
    for (let i = 0; i < 50; i++) expect(await t.login("alice", "right", `198.51.100.${i}`)).toBe(true);
    expect(t.hashes()).toBe(1);
    expect(await t.login("bob", "right", "203.0.113.9")).toBe(0x9f); // another user is not cached
    expect(await t.login("alice", "wrong", "203.0.113.9")).toBe(0x9f); // nor another password
    t.advance(300_001); // the entry expires
    expect(await t.login("alice", "right", "203.0.113.9")).toBe(true);
    expect(t.hashes()).toBe(2);
  });

  test("IPv6 addresses are throttled per /64; IPv4-mapped ones as IPv4", () => {
    expect(addressKey("2001:db8:1:2:3:4:5:6")).toBe(addressKey("2001:db8:1:2::9"));
    expect(addressKey("2001:db8:1:2::9")).toBe("2001:db8:1:2");
    expect(addressKey("2001:db8::1")).toBe("2001:db8:0:0");
    expect(addressKey("2001:db8:1:3::9")).not.toBe(addressKey("2001:db8:1:2::9"));
    expect(addressKey("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(addressKey("192.0.2.1")).toBe("192.0.2.1");
  });
});

test("the authenticator refuses a throttled CONNECT with 0x9F before hashing", async () => {
  const users = { alice: { password: await hashPassword("right", 1000) } };
  const auth = new Authenticator(loadAuthConfig({ AUTH_MODE: "password", AUTH_USERS: JSON.stringify(users) }), "default", () => {});
  auth.throttle = new PasswordThrottle(limits({ AUTH_FAILURE_BURST: 1 }), () => 0);
  const p = (password: string) =>
    ({ cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clientId: "c", clean: true, keepalive: 0, username: "alice", password: Buffer.from(password) }) as ConnectPacket;
  const code = (password: string) => Promise.resolve(auth.authenticate(p(password), "203.0.113.1")).then(() => 0, (e: ConnectRefused) => e.reasonCode);
  expect(await code("wrong")).toBe(0x86);
  expect(await code("wrong")).toBe(0x9f);
});
