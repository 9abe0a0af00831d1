// Deny rules: they win over allow lists, at PUBLISH, at SUBSCRIBE (filter against pattern) and at
// delivery (a broader subscription does not carry a denied topic).
import { describe, expect, test } from "vitest";
import { TopicAcl } from "../../src/auth/acl";
import { loadAuthConfig } from "../../src/auth/config";
import { Authenticator } from "../../src/auth/authenticator";

const build = (allow: string[] | undefined, deny: string[] | undefined, clientId = "c1", username?: string) => TopicAcl.build(allow, deny, clientId, username);

describe("TopicAcl.build with deny patterns", () => {
  test("no lists: unrestricted (null), nothing to check", () => {
    expect(build(undefined, undefined)).toBeNull();
    expect(build(undefined, [])).toBeNull();
  });

  test("deny only: everything else is allowed, $ topics included", () => {
    const acl = build(undefined, ["test/nosubscribe"])!;
    expect(acl.allows("test/nosubscribe")).toBe(false);
    expect(acl.allows("test/other")).toBe(true);
    expect(acl.allows("test/nosubscribe/deeper")).toBe(true);
    expect(acl.allows("$SYS/broker/uptime")).toBe(true);
  });

  test("deny wins over allow", () => {
    const acl = build(["a/#"], ["a/secret/#"])!;
    expect(acl.allows("a/x")).toBe(true);
    expect(acl.allows("a/secret")).toBe(false);
    expect(acl.allows("a/secret/x")).toBe(false);
    expect(acl.allows("b")).toBe(false);
  });

  test.each([
    // [deny, filter, access]
    [["test/nosubscribe"], "test/nosubscribe", "denied"],
    [["test/nosubscribe"], "test/#", "partial"],
    [["test/nosubscribe"], "test/+", "partial"],
    [["test/nosubscribe"], "#", "partial"],
    [["test/nosubscribe"], "test/other", "covered"],
    [["test/nosubscribe"], "test/nosubscribe/x", "covered"],
    [["test/+"], "test/+", "denied"],
    [["test/+"], "test/x", "denied"],
    [["test/#"], "test/#", "denied"],
    [["test/#"], "test", "denied"],
    [["#"], "anything/#", "denied"],
    [["#"], "$SYS/#", "covered"], // `#` does not match `$` topics
    [["+/x"], "a/#", "partial"],
  ] as const)("deny %j, filter %s: %s", (deny, filter, access) => {
    expect(build(undefined, [...deny])!.access(filter)).toBe(access);
  });

  test("deny and a partial allow: still partial, denied topics dropped per delivery", () => {
    const acl = build(["a/+"], ["a/b"])!;
    expect(acl.access("a/+")).toBe("partial");
    expect(acl.access("a/b")).toBe("denied");
    expect(acl.access("#")).toBe("partial");
    expect(acl.allows("a/c")).toBe(true);
    expect(acl.allows("a/b")).toBe(false);
  });

  test("%c and %u in deny patterns", () => {
    const acl = build(undefined, ["clients/%c/admin", "users/%u/#"], "dev-1", "alice")!;
    expect(acl.allows("clients/dev-1/admin")).toBe(false);
    expect(acl.allows("clients/dev-2/admin")).toBe(true);
    expect(acl.allows("users/alice/x")).toBe(false);
    expect(acl.allows("users/bob/x")).toBe(true);
  });

  test("a deny placeholder that cannot be filled denies more, never less", () => {
    const noUser = build(undefined, ["users/%u/#"], "c1", undefined)!;
    expect(noUser.allows("users/bob/x")).toBe(false); // the level became +
    expect(noUser.allows("other")).toBe(true);
    const wild = build(undefined, ["clients/%c/admin"], "+", undefined)!;
    expect(wild.allows("clients/anyone/admin")).toBe(false);
  });
});

describe("deny lists in the configuration", () => {
  test("ACL_DEFAULT with deny only parses (the Paho interop suite's setting)", () => {
    const c = loadAuthConfig({ ACL_DEFAULT: '{"deny": {"subscribe": ["test/nosubscribe"]}}' });
    expect(c.errors).toEqual([]);
    expect(c.defaults).toEqual({ deny: { subscribe: ["test/nosubscribe"] } });
  });

  test.each([
    '{"deny": ["a"]}',
    '{"deny": {"subscribe": "a"}}',
    '{"deny": {"publish": ["a/#/b"]}}',
  ])("a bad deny is a configuration error: %s", (text) => {
    expect(loadAuthConfig({ ACL_DEFAULT: text }).errors.length).toBe(1);
  });

  test("AUTH_MODE=none: ACL_DEFAULT's deny applies to everyone", () => {
    const auth = new Authenticator(loadAuthConfig({ ACL_DEFAULT: '{"deny": {"subscribe": ["test/nosubscribe"], "publish": ["ro/#"]}}' }), "default", () => {});
    const grant = auth.authenticate({ cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clean: true, clientId: "x", keepalive: 0 } as never) as object;
    const rights = auth.rights(grant, "x");
    expect(rights.read!.access("test/nosubscribe")).toBe("denied");
    expect(rights.read!.access("test/#")).toBe("partial");
    expect(rights.publish!.allows("ro/x")).toBe(false);
    expect(rights.publish!.allows("rw/x")).toBe(true);
  });

  test("a user's deny list replaces ACL_DEFAULT's, list by list", () => {
    const auth = new Authenticator(loadAuthConfig({ ACL_DEFAULT: '{"deny": {"subscribe": ["s"], "publish": ["p"]}}' }), "default", () => {});
    const rights = auth.rights({ username: "u", deny: { subscribe: ["other"] } }, "c");
    expect(rights.read!.allows("s")).toBe(true);
    expect(rights.read!.allows("other")).toBe(false);
    expect(rights.publish!.allows("p")).toBe(false);
  });

  test("an empty deny list exempts a user from ACL_DEFAULT's", () => {
    const config = loadAuthConfig({ ACL_DEFAULT: '{"deny": {"subscribe": ["s"]}}' });
    const auth = new Authenticator(config, "default", () => {});
    expect(auth.rights({ username: "admin", deny: { subscribe: [] } }, "c").read).toBeNull();
    expect(auth.rights({ username: "other" }, "c").read!.allows("s")).toBe(false);
  });

  test("no deny anywhere: rights stay null (unrestricted costs nothing)", () => {
    const auth = new Authenticator(loadAuthConfig({}), "default", () => {});
    expect(auth.rights({}, "c")).toEqual({ publish: null, read: null });
  });
});
