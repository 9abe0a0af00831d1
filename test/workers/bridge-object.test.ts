// The bridge object inside workerd (review-c). Its watchdog alarm calls ensure() with no name:
// on a cold instance woken by an alarm, workerd does not give ctx.id.name (a known runtime
// behaviour: partykit PR #391 measured it), so the name must be in the object's storage.
import { env, runInDurableObject } from "cloudflare:test";
import { expect, test } from "vitest";
import type { BridgeObject } from "../../src/bridge/object";

test("ensure(name) keeps the name in storage, for a cold alarm that has no ctx.id.name", async () => {
  const ns = (env as unknown as { BRIDGE: DurableObjectNamespace<BridgeObject> }).BRIDGE;
  const stub = ns.get(ns.idFromName("named-b"));
  await stub.ensure("named-b");
  const stored = await runInDurableObject(stub, (_instance: BridgeObject, state: DurableObjectState) => state.storage.get<string>("name"));
  expect(stored).toBe("named-b");
});
