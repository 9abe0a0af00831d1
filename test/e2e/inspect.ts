// Looking inside the broker from tests: its state and consistency (Durable Object RPC), what
// workerd logged, what a client received, and how a raw socket ended.
import type { Broker } from "./harness";
import type { RawClient } from "./raw";
import type { BrokerSnapshot } from "../../src/broker/inspect";
import { shardName } from "../../src/shards/layout";

/** One shard's Durable Object stub (shard 0 is the namespace's object at any K). */
export async function shardStub<T>(broker: Broker, namespace = "default", shard = 0): Promise<T> {
  const ns = await broker.mf.getDurableObjectNamespace("BROKER");
  return ns.get(ns.idFromName(shardName(namespace, shard))) as unknown as T;
}

/** One shard's state and consistency problems (the `inspect` RPC method). */
export async function inspectShard(broker: Broker, namespace = "default", shard = 0): Promise<BrokerSnapshot> {
  const stub = await shardStub<{ inspect(): Promise<BrokerSnapshot> }>(broker, namespace, shard);
  return JSON.parse(JSON.stringify(await stub.inspect())) as BrokerSnapshot;
}

/**
 * The namespace's broker state and its consistency problems: at K > 1 every shard's, merged
 * (sessions and connections listed together, problems prefixed with the shard). Every shard keeps
 * every retained message (they are replicated), so `retained` is the largest shard's.
 */
export async function inspectBroker(broker: Broker, namespace = "default"): Promise<BrokerSnapshot> {
  if (broker.shards <= 1) return inspectShard(broker, namespace, 0);
  const all = await Promise.all(Array.from({ length: broker.shards }, (_, i) => inspectShard(broker, namespace, i)));
  return {
    sessions: all.flatMap((s) => s.sessions),
    connections: all.flatMap((s) => s.connections),
    retained: all.map((s) => s.retained).reduce((a, b) => (b.count > a.count || (b.count === a.count && b.bytes > a.bytes) ? b : a)),
    problems: all.flatMap((s, i) => s.problems.map((p) => `shard ${i}: ${p}`)),
  };
}

/**
 * Seconds since the namespace's object was constructed (the `stats` RPC's uptime, which counts
 * from the constructor). A hibernated object is constructed again on its next event, so an
 * uptime shorter than the time since the object was last known awake proves it hibernated.
 */
export async function objectUptime(broker: Broker, namespace = "default", shard = 0): Promise<number> {
  const stub = await shardStub<{ stats(): Promise<{ uptime: number }> }>(broker, namespace, shard);
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
