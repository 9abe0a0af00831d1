// Identity-provider keys for JWKS tests, made with node:crypto: a public JWK (with kid) to serve,
// and tokens signed with the private key (RS256, ES256, EdDSA).
import { generateKeyPairSync, sign as nodeSign, type KeyObject } from "node:crypto";

export type ProviderAlg = "RS256" | "ES256" | "EdDSA";

export interface ProviderKey {
  alg: ProviderAlg;
  kid: string;
  jwk: Record<string, unknown>;
  privateKey: KeyObject;
}

export function providerKey(alg: ProviderAlg, kid: string): ProviderKey {
  const pair =
    alg === "RS256"
      ? generateKeyPairSync("rsa", { modulusLength: 2048 })
      : alg === "ES256"
        ? generateKeyPairSync("ec", { namedCurve: "P-256" })
        : generateKeyPairSync("ed25519");
  const jwk = { ...(pair.publicKey.export({ format: "jwk" }) as Record<string, unknown>), kid, use: "sig", alg };
  return { alg, kid, jwk, privateKey: pair.privateKey };
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

/** A JWT signed with the key; `header` may override alg/kid (e.g. to forge a confusion). */
export function providerToken(key: ProviderKey, claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const input = `${b64url(JSON.stringify({ alg: key.alg, typ: "JWT", kid: key.kid, ...header }))}.${b64url(JSON.stringify(claims))}`;
  const data = Buffer.from(input);
  const sig =
    key.alg === "RS256"
      ? nodeSign("sha256", data, key.privateKey)
      : key.alg === "ES256"
        ? nodeSign("sha256", data, { key: key.privateKey, dsaEncoding: "ieee-p1363" })
        : nodeSign(null, data, key.privateKey);
  return `${input}.${b64url(sig)}`;
}
