import { describe, expect, test } from "vitest";
import { authorize } from "../../src/api/auth";

const req = (token?: string) => new Request("http://broker/api/x/stats", token === undefined ? {} : { headers: { Authorization: `Bearer ${token}` } });

describe("HTTP API tokens: API_TOKEN for every namespace, API_TOKENS per namespace", () => {
  const env = { API_TOKEN: "admin", API_TOKENS: JSON.stringify({ "team-a": "token-a", "team-b": "token-b" }) };
  test.each([
    ["admin", "team-a", "ok"],
    ["admin", "default", "ok"],
    ["token-a", "team-a", "ok"],
    ["token-a", "team-b", "unauthorized"],
    ["token-a", "default", "unauthorized"],
    ["token-b", "team-b", "ok"],
    ["nope", "team-a", "unauthorized"],
    [undefined, "team-a", "unauthorized"],
    ["token-a", null, "unauthorized"], // no namespace in the path: only API_TOKEN
    ["admin", null, "ok"],
  ] as const)("token %j for namespace %j: %s", async (token, namespace, expected) => {
    expect(await authorize(req(token), env, namespace)).toBe(expected);
  });

  test("API_TOKENS alone turns the API on for those namespaces only", async () => {
    const only = { API_TOKENS: JSON.stringify({ "team-a": "token-a" }) };
    expect(await authorize(req("token-a"), only, "team-a")).toBe("ok");
    expect(await authorize(req("token-a"), only, "team-b")).toBe("unauthorized");
    expect(await authorize(req(""), only, "team-b")).toBe("unauthorized");
  });

  test("neither set: the API is off", async () => {
    expect(await authorize(req("x"), {}, "team-a")).toBe("disabled");
  });

  test.each([`not json`, `["token"]`, `{"team-a": 7}`, `{"team-a": ""}`, `{"bad/ns": "t"}`])("API_TOKENS %s is refused, not ignored: every call fails", async (text) => {
    expect(await authorize(req("admin"), { API_TOKEN: "admin", API_TOKENS: text }, "team-a")).toBe("misconfigured");
  });
});
