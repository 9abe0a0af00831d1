// Test keys and token signing (WebCrypto in Node), shared by unit and end-to-end tests.
export interface TestKeys {
  secret: string;
  rsaPrivate: CryptoKey;
  rsaPublic: JsonWebKey;
  ecPrivate: JsonWebKey;
  ecPrivateKey: CryptoKey;
  ecPublic: JsonWebKey;
}

export async function makeKeys(): Promise<TestKeys> {
  const rsa = (await crypto.subtle.generateKey(
    { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
    true,
    ["sign", "verify"],
  )) as CryptoKeyPair;
  const ec = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const jwk = async (k: CryptoKey) => (await crypto.subtle.exportKey("jwk", k)) as JsonWebKey;
  return {
    secret: "a-test-secret-that-is-long-enough-1234567890",
    rsaPrivate: rsa.privateKey,
    rsaPublic: await jwk(rsa.publicKey),
    ecPrivate: await jwk(ec.privateKey),
    ecPrivateKey: ec.privateKey,
    ecPublic: await jwk(ec.publicKey),
  };
}

const b64url = (bytes: Uint8Array | string) => Buffer.from(bytes).toString("base64url");

export async function sign(keys: TestKeys, alg: "HS256" | "RS256" | "ES256", claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const input = `${b64url(JSON.stringify({ alg, typ: "JWT", ...header }))}.${b64url(JSON.stringify(claims))}`;
  const data = new TextEncoder().encode(input);
  let sig: ArrayBuffer;
  if (alg === "HS256") {
    const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(keys.secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    sig = await crypto.subtle.sign("HMAC", key, data);
  } else if (alg === "RS256") {
    sig = await crypto.subtle.sign("RSASSA-PKCS1-v1_5", keys.rsaPrivate, data);
  } else {
    sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.ecPrivateKey, data);
  }
  return `${input}.${b64url(new Uint8Array(sig))}`;
}
