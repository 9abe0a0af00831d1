// Request validation shared by the HTTP API and RPC, and the bearer-token check.
import { describe, expect, test } from "vitest";
import { InputError, filterOf, namespaceOf, publishOf, topicOf } from "../../src/api/input";
import { authorize, sameSecret } from "../../src/api/auth";

const refused = (fn: () => unknown, message: RegExp, status = 400) => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toMatch(message);
    expect((err as InputError).status).toBe(status);
    return;
  }
  throw new Error("accepted");
};

describe("publishOf", () => {
  test("defaults: empty payload, QoS 0, not retained, no properties", () => {
    expect(publishOf({ topic: "a/b" }, 100)).toEqual({ topic: "a/b", payload: new Uint8Array(0), qos: 0, retain: false });
    expect(publishOf({ topic: "a", properties: {} }, 100).properties).toBeUndefined();
  });

  test("payload as text (UTF-8), base64, or bytes over RPC", () => {
    expect([...publishOf({ topic: "a", payload: "é" }, 100).payload]).toEqual([0xc3, 0xa9]);
    expect([...publishOf({ topic: "a", payloadBase64: "AP8=" }, 100).payload]).toEqual([0, 255]);
    expect([...publishOf({ topic: "a", payload: new Uint8Array([7]) }, 100).payload]).toEqual([7]);
    expect([...publishOf({ topic: "a", payload: new Uint8Array([8, 9]).buffer }, 100).payload]).toEqual([8, 9]);
  });

  test("properties", () => {
    const m = publishOf(
      {
        topic: "a",
        properties: { correlationDataBase64: "AQI=", userProperties: { k: "v", many: ["1", "2"] }, messageExpiryInterval: 0, payloadFormatIndicator: false },
      },
      100,
    );
    expect([...m.properties!.correlationData!]).toEqual([1, 2]);
    expect(m.properties).toMatchObject({ userProperties: { k: "v", many: ["1", "2"] }, messageExpiryInterval: 0, payloadFormatIndicator: false });
  });

  test("limits", () => {
    refused(() => publishOf({ topic: "a", payload: "x".repeat(101) }, 100), /exceeds 100 bytes/, 413);
    refused(() => publishOf({ topic: "€".repeat(21846) }, 100), /at most 65535 bytes/); // 65538 UTF-8 bytes
    refused(() => publishOf({ topic: "a", properties: { contentType: "a\u0000" } }, 100), /contentType/);
    refused(() => publishOf({ topic: "a", properties: { userProperties: { k: ["1", 2] } } }, 100), /userProperties\.k/);
    refused(() => publishOf(null, 100), /JSON object/);
    refused(() => publishOf({ topic: "a", payloadBase64: "abc" }, 100), /base64/);
  });
});

test("names, topics and filters", () => {
  expect(namespaceOf("site-1.eu_west")).toBe("site-1.eu_west");
  refused(() => namespaceOf(""), /namespace/);
  refused(() => namespaceOf("a/b"), /namespace/);
  refused(() => topicOf("$SYS"), /\$SYS/);
  expect(topicOf("$other/x")).toBe("$other/x");
  expect(filterOf(null)).toBe("#");
  expect(filterOf("a/+/#")).toBe("a/+/#");
  refused(() => filterOf("$share/g/a"), /filter/);
  refused(() => filterOf("a#"), /filter/);
});

describe("auth", () => {
  const req = (authorization?: string) => new Request("http://x/api/d/stats", { headers: authorization ? { Authorization: authorization } : {} });

  test("compares secrets of any length", async () => {
    expect(await sameSecret("abc", "abc")).toBe(true);
    expect(await sameSecret("abc", "abd")).toBe(false);
    expect(await sameSecret("abc", "abcd")).toBe(false);
    expect(await sameSecret("", "abc")).toBe(false);
  });

  test("no token configured: the API is off, whatever is sent", async () => {
    expect(await authorize(req("Bearer x"), { API_TOKEN: undefined }, "default")).toBe("disabled");
    expect(await authorize(req("Bearer x"), { API_TOKEN: "" }, "default")).toBe("disabled");
  });

  test("bearer scheme only", async () => {
    expect(await authorize(req("Bearer t"), { API_TOKEN: "t" }, "default")).toBe("ok");
    expect(await authorize(req("BEARER  t"), { API_TOKEN: "t" }, "default")).toBe("ok");
    expect(await authorize(req("Basic dDp0"), { API_TOKEN: "t" }, "default")).toBe("unauthorized");
    expect(await authorize(req("Bearer t extra"), { API_TOKEN: "t" }, "default")).toBe("unauthorized");
    expect(await authorize(req(), { API_TOKEN: "t" }, "default")).toBe("unauthorized");
  });
});
