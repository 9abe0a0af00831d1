// Looking inside the broker from tests: its state and consistency (Durable Object RPC), what
// workerd logged, what a client received, and how a raw socket ended.
import type { Broker } from "./harness";
import type { RawClient } from "./raw";
import type { BrokerSnapshot } from "../../src/broker/inspect";

/** The namespace's broker state and its consistency problems (the `inspect` RPC method). */
export async function inspectBroker(broker: Broker, namespace = "default"): Promise<BrokerSnapshot> {
  const ns = await broker.mf.getDurableObjectNamespace("BROKER");
  const stub = ns.get(ns.idFromName(namespace)) as unknown as { inspect(): Promise<BrokerSnapshot> };
  return JSON.parse(JSON.stringify(await stub.inspect())) as BrokerSnapshot;
}

/**
 * Seconds since the namespace's object was constructed (the `stats` RPC's uptime, which counts
 * from the constructor). A hibernated object is constructed again on its next event, so an
 * uptime shorter than the time since the object was last known awake proves it hibernated.
 */
export async function objectUptime(broker: Broker, namespace = "default"): Promise<number> {
  const ns = await broker.mf.getDurableObjectNamespace("BROKER");
  const stub = ns.get(ns.idFromName(namespace)) as unknown as { stats(): Promise<{ uptime: number }> };
  return (await stub.stats()).uptime;
}

/** workerd log lines that mean an exception escaped to the runtime, or one nobody judged. */
export function uncaught(broker: Broker): string[] {
  return broker.logs
    .join("")
    .split("\n")
    .filter((l) => /Uncaught|internal error/i.test(l));
}

/** Records every message a client receives from now on, as "topic=payload". */
export function record(client: { on(e: "message", f: (t: string, p: Buffer) => void): unknown }): string[] {
  const got: string[] = [];
  client.on("message", (topic: string, payload: Buffer) => got.push(`${topic}=${payload.toString()}`));
  return got;
}

/** The broker's close code once it closed the socket (its close frame counts), or "open" after `ms`. */
export function closedWithin(c: RawClient, ms: number): Promise<number | "open"> {
  return Promise.race([c.closeFrame.then((x) => x.code), new Promise<"open">((r) => setTimeout(() => r("open"), ms))]);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
