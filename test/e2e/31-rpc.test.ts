// Worker integration: a second Worker calls the broker's BrokerService entry point through a
// service binding with typed RPC, as a deployed Worker would (see README).
import { afterAll, beforeAll, expect, test } from "vitest";
import { startBroker, connect, collect, end, BROKER_WORKER, SHARDED, type Broker } from "./harness";

// The other Worker: runs the RPC call named in the request and answers with its result as JSON.
const CALLER = `
export default {
  async fetch(request, env) {
    const { method, args } = await request.json();
    try {
      if (method === "publishBinary") {
        // bytes cannot travel as JSON: build them here, as a real Worker would
        const [namespace, topic] = args;
        const result = await env.BROKER.publish(namespace, {
          topic,
          payload: new Uint8Array([0, 1, 2, 255]),
          qos: 1,
          properties: { correlationData: new Uint8Array([9, 8, 7]), contentType: "application/octet-stream" },
        });
        return Response.json({ result });
      }
      let result = await env.BROKER[method](...args);
      if (method === "retained") {
        result = { ...result, messages: result.messages.map((m) => ({ ...m, payload: Array.from(m.payload) })) };
      }
      return Response.json({ result });
    } catch (err) {
      return Response.json({ error: String(err && err.message) });
    }
  },
};
`;

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker(
    {},
    {
      workers: [
        {
          name: "caller",
          modules: true,
          script: CALLER,
          compatibilityDate: "2026-04-01",
          serviceBindings: { BROKER: { name: BROKER_WORKER, entrypoint: "BrokerService" } },
        },
      ],
    },
  );
});
afterAll(() => broker.close());

async function call(method: string, ...args: unknown[]): Promise<{ result?: any; error?: string }> {
  const caller = await broker.mf.getWorker("caller");
  const res = await caller.fetch("http://caller/", { method: "POST", body: JSON.stringify({ method, args }) });
  return (await res.json()) as { result?: any; error?: string };
}

test("publish through the service binding reaches MQTT subscribers", async () => {
  const sub = await connect(broker.url("rpc"), { protocolVersion: 5 });
  await sub.subscribeAsync("orders/#", { qos: 1 });
  const got = collect(sub, 1);
  const r = await call("publish", "rpc", { topic: "orders/42", payload: "created", qos: 1, properties: { userProperties: { source: "shop" } } });
  expect(r).toEqual({ result: { matched: 1 } });
  const [m] = await got;
  expect(m!.topic).toBe("orders/42");
  expect(m!.payload).toBe("created");
  expect(m!.packet.qos).toBe(1);
  expect(m!.packet.properties?.userProperties).toEqual({ source: "shop" });
  await end(sub);
});

test("binary payloads and binary properties pass unchanged", async () => {
  const sub = await connect(broker.url("rpc"), { protocolVersion: 5 });
  await sub.subscribeAsync("bin/#", { qos: 1 });
  const got = new Promise<{ payload: Buffer; correlation: Buffer | undefined }>((resolve) =>
    sub.once("message", (_t, payload, packet) => resolve({ payload, correlation: packet.properties?.correlationData })),
  );
  expect(await call("publishBinary", "rpc", "bin/raw")).toEqual({ result: { matched: 1 } });
  const { payload, correlation } = await got;
  expect([...payload]).toEqual([0, 1, 2, 255]);
  expect([...correlation!]).toEqual([9, 8, 7]);
  await end(sub);
});

// sharded: an API publish is accepted by a random shard (its `matched` is that shard's) and retained writes reach the others after the answer
test.skipIf(SHARDED)("retained, deleteRetained, clients, stats and disconnect", async () => {
  expect((await call("publish", "ops", { topic: "cfg/a", payload: "1", retain: true })).result).toEqual({ matched: 0 });
  const retained = (await call("retained", "ops", "cfg/+")).result;
  expect(retained).toEqual({ messages: [{ topic: "cfg/a", qos: 0, payload: [0x31] }], truncated: false });
  expect((await call("deleteRetained", "ops", "cfg/a")).result).toBe(true);
  expect((await call("stats", "ops")).result).toMatchObject({ retained: 0, clients: { connected: 0 } });

  const device = await connect(broker.url("ops"), { clientId: "dev-9" });
  const closed = new Promise<void>((resolve) => device.once("close", () => resolve()));
  const clients = (await call("clients", "ops")).result;
  expect(clients).toMatchObject([{ clientId: "dev-9", status: "online" }]);
  expect((await call("disconnect", "ops", "dev-9")).result).toBe(true);
  await closed;
  expect((await call("disconnect", "ops", "dev-9")).result).toBe(false);
  await end(device);
});

test("invalid input is refused with a message saying why", async () => {
  expect((await call("publish", "rpc", { topic: "a/#" })).error).toMatch(/wildcards/);
  expect((await call("publish", "rpc", { topic: "a", qos: 5 })).error).toMatch(/qos/);
  expect((await call("publish", "no spaces", { topic: "a" })).error).toMatch(/namespace/);
  expect((await call("publish", "rpc", { topic: "$SYS/x" })).error).toMatch(/\$SYS/);
  expect((await call("retained", "rpc", "a/#/b")).error).toMatch(/filter/);
});
