// `npm test` runs this first (the `pretest` script): the programs the tests drive that npm cannot
// bring. Each one found is left alone. Missing ones are installed with apt-get when this runs as
// root on a machine that has it (Debian, CI); otherwise it stops at once with one line that says
// what to install, or which variable to set. (A Chromium from npm, @sparticuz/chromium, runs on
// Linux only and wants Node 22: a system browser serves Debian, CI and macOS alike.)
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { spawnSync } from "node:child_process";

/** Debian package names: add one here (e.g. "mosquitto") and the tests can rely on it. */
const NEEDED = ["chromium", "mosquitto"];

/** How each package is found, and what to install where apt-get does not exist. */
const TOOLS = {
  chromium: {
    env: "CHROMIUM_PATH",
    commands: ["chromium", "chromium-browser"],
    macos: ["/Applications/Chromium.app/Contents/MacOS/Chromium", "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"],
    brew: "brew install --cask chromium",
  },
  mosquitto: { env: "MOSQUITTO_PATH", commands: ["mosquitto"], macos: [], brew: "brew install mosquitto" },
};

const executable = (file) => {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** The program's path, or null. sbin folders count: Debian puts mosquitto in /usr/sbin. */
function findTool(name) {
  const t = TOOLS[name] ?? { env: `${name.toUpperCase()}_PATH`, commands: [name], macos: [] };
  if (process.env[t.env]) return executable(process.env[t.env]) ? process.env[t.env] : null;
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/local/sbin"].filter(Boolean);
  for (const dir of dirs) for (const c of t.commands) if (executable(join(dir, c))) return join(dir, c);
  return t.macos.find(executable) ?? null;
}

const missing = () => NEEDED.filter((name) => !findTool(name));

function aptInstall(packages) {
  const canApt = process.platform === "linux" && process.getuid?.() === 0 && findTool("apt-get");
  if (!canApt) return;
  console.log(`ensure-test-deps: installing ${packages.join(" ")} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const run = (args) => spawnSync("apt-get", args, { stdio: ["ignore", "ignore", "inherit"], env }).status === 0;
  run(["update", "-qq"]) && run(["install", "-y", "-qq", ...packages]);
}

function advice(packages) {
  const vars = packages.map((p) => (TOOLS[p] ?? { env: `${p.toUpperCase()}_PATH` }).env).join(" / ");
  const how =
    process.platform === "darwin"
      ? packages.map((p) => TOOLS[p]?.brew ?? `brew install ${p}`).join(" && ")
      : `${process.getuid?.() === 0 ? "" : "sudo "}apt-get install -y ${packages.join(" ")}`;
  return `ensure-test-deps: the tests need ${packages.join(", ")}, not found: run \`${how}\` or set ${vars} to the program's path`;
}

for (const name of NEEDED) {
  const v = (TOOLS[name] ?? { env: `${name.toUpperCase()}_PATH` }).env;
  if (process.env[v] && !findTool(name)) {
    console.error(`ensure-test-deps: ${v}=${process.env[v]} is not an executable file: fix or unset it`);
    process.exit(1);
  }
}
let lacking = missing();
if (lacking.length) {
  aptInstall(lacking);
  lacking = missing();
}
if (lacking.length) {
  console.error(advice(lacking));
  process.exit(1);
}
