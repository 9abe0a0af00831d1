// Bearer-token check for the HTTP API. The token is the API_TOKEN Worker secret; without one the
// API is off. Compared as SHA-256 digests, byte by byte without an early exit, so the time taken
// reveals neither the token's length nor how much of a guess was right.

export type AuthResult = "ok" | "disabled" | "unauthorized";

export async function authorize(request: Request, token: unknown): Promise<AuthResult> {
  if (typeof token !== "string" || token === "") return "disabled";
  const header = request.headers.get("Authorization") ?? "";
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  if (!match) return "unauthorized";
  return (await sameSecret(match[1]!, token)) ? "ok" : "unauthorized";
}

export async function sameSecret(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([digest(given), digest(expected)]);
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}
