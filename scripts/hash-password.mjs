#!/usr/bin/env node
// Prints an AUTH_USERS entry for a new user: a salted PBKDF2-SHA-256 hash, never the password.
//   npm run hash-password -- alice            (asks for the password, or reads it from stdin)
//   echo -n 's3cret' | npm run hash-password -- alice
// The format and iteration count match src/auth/password.ts (100,000: the most Cloudflare
// Workers allow for PBKDF2).
import { webcrypto as crypto } from "node:crypto";

const ITERATIONS = 100_000;

async function hash(password) {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const material = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations: ITERATIONS }, material, 256);
  const b64 = (bytes) => Buffer.from(bytes).toString("base64");
  return `pbkdf2-sha256$${ITERATIONS}$${b64(salt)}$${b64(new Uint8Array(bits))}`;
}

/** The password: typed without echo on a terminal, else all of stdin minus one trailing newline. */
async function readPassword() {
  if (!process.stdin.isTTY) {
    const chunks = [];
    for await (const c of process.stdin) chunks.push(c);
    return Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
  }
  process.stderr.write("password (not shown): ");
  process.stdin.setRawMode(true);
  process.stdin.resume();
  let pw = "";
  return new Promise((resolve, reject) => {
    process.stdin.on("data", (buf) => {
      for (const ch of buf.toString("utf8")) {
        if (ch === "\r" || ch === "\n") {
          process.stdin.setRawMode(false);
          process.stdin.pause();
          process.stderr.write("\n");
          return resolve(pw);
        }
        if (ch === "\u0003") {
          process.stdin.setRawMode(false);
          return reject(new Error("cancelled"));
        }
        if (ch === "\u007f") pw = pw.slice(0, -1);
        else pw += ch;
      }
    });
  });
}

const user = process.argv[2];
if (!user || user.startsWith("-")) {
  console.error("usage: npm run hash-password -- <user name>   (password from the terminal or stdin)");
  process.exit(2);
}
const password = await readPassword();
if (password.length === 0) {
  console.error("refusing an empty password");
  process.exit(2);
}
const entry = { [user]: { password: await hash(password) } };
console.log(JSON.stringify(entry));
console.error(
  'Merge this into the AUTH_USERS secret (one JSON object of users). Optional per user: "publish" and\n' +
    '"subscribe" topic pattern lists and "namespaces" (see README "Authentication, ACLs and limits").',
);
