// A system Chromium (Debian's chromium, or Chromium/Chrome on macOS) driven by playwright-core,
// which never downloads a browser; `npm test` first makes sure one exists
// (scripts/ensure-test-deps.mjs). One fresh profile per launch, flags that keep it quiet and offline.
import { chromium, type BrowserContext } from "playwright-core";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), "console-browser-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath(),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

const MACOS_APPS = ["/Applications/Chromium.app/Contents/MacOS/Chromium", "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"];

/** $CHROMIUM_PATH, else `chromium` (Debian) or `chromium-browser` on the PATH, else a macOS app. */
function chromiumPath(): string {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  const onPath = (process.env.PATH ?? "").split(delimiter).flatMap((dir) => ["chromium", "chromium-browser"].map((name) => join(dir, name)));
  const found = [...onPath, ...MACOS_APPS].find(executable);
  if (found) return found;
  throw new Error("chromium not found: install it (apt-get install chromium; macOS: brew install --cask chromium) or set CHROMIUM_PATH");
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
