// The webhook signature: X-Signature-256: sha256=<hex of HMAC-SHA256(body) keyed with the rule's secret>,
// the header GitHub's webhooks use, so existing verifiers work.
const encoder = new TextEncoder();

export function importSigningKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
}

/** The header's value for `body`. */
export async function signature(key: CryptoKey, body: Uint8Array): Promise<string> {
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, body));
  let hex = "";
  for (const b of mac) hex += (b < 16 ? "0" : "") + b.toString(16);
  return `sha256=${hex}`;
}
