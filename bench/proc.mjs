// CPU time and memory of a process tree, from /proc (Linux).
import { readFileSync, readdirSync } from "node:fs";

const TICK_US = 1e6 / 100; // USER_HZ is 100 on Linux

function stat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(fields[1]), utime: Number(fields[11]), stime: Number(fields[12]) };
  } catch {
    return null;
  }
}

/** pid and every descendant */
export function tree(root) {
  const children = new Map();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const s = stat(d);
    if (!s) continue;
    const list = children.get(s.ppid) ?? [];
    list.push(Number(d));
    children.set(s.ppid, list);
  }
  const out = [];
  const walk = (p) => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(root);
  return out;
}

/** user+system CPU µs of the given pids */
export function cpuMicros(pids) {
  let ticks = 0;
  for (const p of pids) {
    const s = stat(p);
    if (s) ticks += s.utime + s.stime;
  }
  return ticks * TICK_US;
}

/** resident set size in bytes of the given pids */
export function rssBytes(pids) {
  let total = 0;
  for (const p of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, "utf8"));
      if (m) total += Number(m[1]) * 1024;
    } catch {
      // gone
    }
  }
  return total;
}

/** the workerd processes among a tree */
export function workerdPids(root) {
  return tree(root).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, "utf8").includes("workerd");
    } catch {
      return false;
    }
  });
}
