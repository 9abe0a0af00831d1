import { describe, expect, test } from "vitest";
import { quote } from "../../src/log-safe";

describe("quote: client-chosen values in the log", () => {
  test.each([
    ["sensor-1", `"sensor-1"`],
    ["", `""`],
    ["x\ninfo forged line", `"x\\u000ainfo forged line"`],
    ["a\r\nb", `"a\\u000d\\u000ab"`],
    ['say "hi"\\', `"say \\"hi\\"\\\\"`],
    ["\u001b[31mred", `"\\u001b[31mred"`],
    ["abc\u202edcba", `"abc\\u202edcba"`], // right-to-left override
    ["line\u2028sep", `"line\\u2028sep"`],
    ["lone \ud800 surrogate", `"lone \\ud800 surrogate"`],
    ["pair \ud83d\ude00 ok", `"pair \ud83d\ude00 ok"`],
    ["héllo wörld", `"héllo wörld"`],
    [undefined, `"undefined"`],
  ])("%j → %s", (value, expected) => {
    expect(quote(value)).toBe(expected);
  });

  test("long values are cut, and say how much was left out", () => {
    expect(quote("x".repeat(300), 10)).toBe(`"xxxxxxxxxx"…(+290 chars)`);
    expect(quote("x".repeat(10), 10)).toBe(`"xxxxxxxxxx"`);
  });
});
