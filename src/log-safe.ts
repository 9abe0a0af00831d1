// Values a client chooses (client ids, user names, token headers) go into the log quoted: control
// characters, line and paragraph separators, bidirectional overrides and lone surrogates are
// escaped, so a value cannot forge a log line or hide what follows it; long values are cut.

const UNSAFE = /[\\"\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** `value` as a double-quoted, escaped string of at most `max` characters (plus a note of the rest). */
export function quote(value: unknown, max = 128): string {
  let s = String(value);
  let rest = "";
  if (s.length > max) {
    rest = `…(+${s.length - max} chars)`;
    s = s.slice(0, max);
  }
  const escaped = s.replace(UNSAFE, (c) => (c === "\\" || c === '"' ? `\\${c}` : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`));
  return `"${escaped}"${rest}`;
}
