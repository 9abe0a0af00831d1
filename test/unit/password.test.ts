import { describe, expect, test } from "vitest";
import { execFileSync } from "node:child_process";
import { fromBase64, hashPassword, parsePasswordHash, verifyPassword, PBKDF2_ITERATIONS } from "../../src/auth/password";

const bytes = (s: string) => new TextEncoder().encode(s);

describe("PBKDF2 password hashes", () => {
  test("a hash verifies its password and no other", async () => {
    const text = await hashPassword("correct horse", 1000);
    expect(text).toMatch(/^pbkdf2-sha256\$1000\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    const hash = parsePasswordHash(text)!;
    expect(await verifyPassword(bytes("correct horse"), hash)).toBe(true);
    expect(await verifyPassword(bytes("correct horse "), hash)).toBe(false);
    expect(await verifyPassword(bytes(""), hash)).toBe(false);
  });

  test("salted: the same password hashes differently", async () => {
    expect(await hashPassword("pw", 1000)).not.toBe(await hashPassword("pw", 1000));
  });

  test("defaults to the Workers PBKDF2 ceiling", async () => {
    expect(PBKDF2_ITERATIONS).toBe(100_000);
    expect(await hashPassword("pw")).toMatch(/^pbkdf2-sha256\$100000\$/);
  });

  test.each([
    ["plain text", "hunter2"],
    ["above the Workers limit", "pbkdf2-sha256$600000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="],
    ["zero iterations", "pbkdf2-sha256$0$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="],
    ["another algorithm", "pbkdf2-sha1$1000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="],
    ["short key", "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA==$AAAA"],
    ["not base64", "pbkdf2-sha256$1000$!!!$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="],
    ["non-canonical base64 (unused bits set)", "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAB==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="],
  ])("refuses %s", (_what, text) => {
    expect(parsePasswordHash(text)).toBeNull();
  });

  test.each([
    ["QQ", [0x41]],
    ["QQ==", [0x41]],
    ["QUI", [0x41, 0x42]],
    ["QUI=", [0x41, 0x42]],
    ["QUJD", [0x41, 0x42, 0x43]],
    ["-_8", [0xfb, 0xff]], // URL-safe alphabet
    ["+/8=", [0xfb, 0xff]],
    ["", []],
    ["QR", null], // trailing bits set: the same bytes as "QQ", spelt differently
    ["QR==", null],
    ["QUJ", null],
    ["QQ=", null], // padding, when present, is complete
    ["QQ===", null],
    ["Q", null],
    ["QQ==QQ==", null],
    ["Q Q=", null],
  ] as const)("fromBase64(%j): %j", (text, expected) => {
    const out = fromBase64(text);
    expect(out === null ? null : [...out]).toEqual(expected);
  });

  test("npm run hash-password writes a hash the broker verifies", async () => {
    const out = execFileSync(process.execPath, ["scripts/hash-password.mjs", "alice"], { input: "s3cret\n", stdio: ["pipe", "pipe", "pipe"] }).toString();
    const entry = JSON.parse(out) as Record<string, { password: string }>;
    const hash = parsePasswordHash(entry.alice!.password)!;
    expect(hash.iterations).toBe(100_000);
    expect(await verifyPassword(bytes("s3cret"), hash)).toBe(true);
    expect(await verifyPassword(bytes("s3cret\n"), hash)).toBe(false);
    expect(out).not.toContain("s3cret");
  });
});
