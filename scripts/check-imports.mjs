// The import graph of src/ (type imports included) must have no cycle, and the layers below the
// handlers (session, topics, storage, auth, protocol, limits, timers) must not import broker/ or
// handlers/. Run by `npm test`; prints each cycle or stray import and exits 1 when there is one.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(process.argv[2] ?? "src");
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (path.endsWith(".ts")) files.push(path);
  }
})(root);

const graph = new Map();
for (const file of files) {
  const deps = [];
  for (const m of readFileSync(file, "utf8").matchAll(/^\s*(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"/gms)) {
    const target = resolve(dirname(file), m[1]);
    deps.push(target.endsWith(".ts") ? target : `${target}.ts`);
  }
  graph.set(file, deps);
}

const problems = [];
// bridge/ is not below the handlers, but it speaks to the broker over MQTT only: the same rule.
const lower = ["session", "topics", "storage", "auth", "protocol", "limits", "timers", "bridge"];
for (const [file, deps] of graph) {
  const layer = relative(root, file).split("/")[0];
  if (!lower.includes(layer)) continue;
  for (const dep of deps) {
    const to = relative(root, dep).split("/")[0];
    if (to === "broker" || to === "handlers") problems.push(`${relative(root, file)} imports ${relative(root, dep)} (a lower layer must not import ${to}/)`);
  }
}

// Tarjan's strongly connected components: any with more than one file is a cycle.
let index = 0;
const stack = [];
const onStack = new Set();
const indexOf = new Map();
const low = new Map();
function visit(v) {
  indexOf.set(v, index);
  low.set(v, index++);
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v) ?? []) {
    if (!graph.has(w)) continue;
    if (!indexOf.has(w)) {
      visit(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), indexOf.get(w)));
  }
  if (low.get(v) !== indexOf.get(v)) return;
  const component = [];
  let w;
  do {
    w = stack.pop();
    onStack.delete(w);
    component.push(relative(root, w));
  } while (w !== v);
  if (component.length > 1 || (graph.get(v) ?? []).includes(v)) problems.push(`import cycle: ${component.sort().join(" ↔ ")}`);
}
for (const v of graph.keys()) if (!indexOf.has(v)) visit(v);

for (const p of problems) console.error(p);
console.log(`check-imports: ${files.length} files, ${problems.length} problem(s)`);
process.exit(problems.length ? 1 : 0);
