// Copies third-party browser code the console needs into public/vendor/ (git-ignored), so the
// deployed assets carry exactly the version pinned in package-lock.json. Run by wrangler's
// [build] command before every deploy, dry run and `wrangler dev`.
import { copyFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const vendor = join(root, "public", "vendor");

mkdirSync(vendor, { recursive: true });
copyFileSync(require.resolve("mqtt/dist/mqtt.min"), join(vendor, "mqtt.min.js"));
