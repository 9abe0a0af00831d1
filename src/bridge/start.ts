// The narrow seam between the broker and its bridges: who starts them, and who reads their status.
// The namespace object calls ensureBridges when it starts or wakes; the HTTP API calls bridgeStatus.
import type { Env } from "../env";
import { parseBridges } from "./config";
import type { BridgeObject } from "./object";
import type { BridgeStatus } from "./link";

type Log = (level: "info" | "warn" | "error", message: string) => void;

/** the BRIDGES text whose errors were last logged */
let reported: string | undefined;

/** The binding (wrangler.toml); a configuration without it gets a clear error, not a crash. */
function namespaceOf(env: Env): DurableObjectNamespace<BridgeObject> | null {
  return (env.BRIDGE as DurableObjectNamespace<BridgeObject> | undefined) ?? null;
}

/** Starts (idempotently) the bridges of a namespace; problems are logged, never thrown. Costs nothing without BRIDGES. */
export function ensureBridges(env: Env, namespace: string | null, log: Log): void {
  if (!env.BRIDGES || namespace === null) return;
  const { bridges, errors } = parseBridges(env.BRIDGES);
  // said once per process (objects wake often), as the auth set-up is
  if (errors.length && reported !== env.BRIDGES) for (const e of errors) log("error", `BRIDGES: ${e}`);
  reported = env.BRIDGES;
  const mine = bridges.filter((b) => b.namespace === namespace);
  if (mine.length === 0) return;
  const ns = namespaceOf(env);
  if (!ns) {
    log("error", "BRIDGES is set but the BRIDGE Durable Object binding is missing from wrangler.toml");
    return;
  }
  for (const b of mine) {
    ns.get(ns.idFromName(b.name))
      .ensure(b.name)
      .catch((e: unknown) => log("error", `bridge ${b.name}: could not be started: ${(e as Error)?.message ?? e}`));
  }
}

export type BridgeReport = BridgeStatus | { name: string; error: string };

/** The status of a namespace's bridges (starting any that are not running), and the configuration's errors. */
export async function bridgeStatus(env: Env, namespace: string): Promise<{ bridges: BridgeReport[]; errors: string[] }> {
  const { bridges, errors } = parseBridges(env.BRIDGES);
  const mine = bridges.filter((b) => b.namespace === namespace);
  const ns = namespaceOf(env);
  if (!ns) return { bridges: [], errors: mine.length ? [...errors, "the BRIDGE Durable Object binding is missing from wrangler.toml"] : errors };
  const reports = await Promise.all(
    mine.map((b) =>
      ns
        .get(ns.idFromName(b.name))
        .ensure(b.name)
        .catch((e: unknown) => ({ name: b.name, error: `the bridge object failed: ${(e as Error)?.message ?? e}` })),
    ),
  );
  return { bridges: reports as BridgeReport[], errors };
}
