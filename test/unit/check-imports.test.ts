// scripts/check-imports.mjs, which `npm test` runs on src/: it finds cycles (type imports too)
// and lower layers importing broker/ or handlers/, and passes a clean tree.
import { expect, test } from "vitest";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";

function check(files: Record<string, string>): { status: number | null; out: string } {
  const dir = mkdtempSync(join(tmpdir(), "imports-"));
  try {
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(join(dir, name, ".."), { recursive: true });
      writeFileSync(join(dir, name), text);
    }
    const r = spawnSync(process.execPath, ["scripts/check-imports.mjs", dir], { encoding: "utf8" });
    return { status: r.status, out: r.stdout + r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("a type-only cycle fails", () => {
  const r = check({ "session/a.ts": 'import type { B } from "./b";\nexport type A = B;\n', "session/b.ts": 'import type { A } from "./a";\nexport type B = A;\n' });
  expect(r.status).toBe(1);
  expect(r.out).toContain("import cycle: session/a.ts ↔ session/b.ts");
});

test("a lower layer importing broker/ fails", () => {
  const r = check({ "session/s.ts": 'import type { C } from "../broker/c";\nexport type S = C;\n', "broker/c.ts": "export type C = 1;\n" });
  expect(r.status).toBe(1);
  expect(r.out).toContain("session/s.ts imports broker/c.ts");
});

test("src/ passes", () => {
  const r = spawnSync(process.execPath, ["scripts/check-imports.mjs"], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
});
