// A shard crashes in the middle of forwarding a stream to another shard (issue 13): nothing the
// publisher saw acknowledged is lost at QoS >= 1, and nothing arrives twice at QoS 2. The crash is
// the runtime's own (ctx.abort through the testCrash RPC, TEST_HOOKS=1): memory and sockets gone,
// storage as last committed, on one shard while the others go on.
import { afterAll, beforeAll, expect, test } from "vitest";
import type { MqttClient } from "mqtt";
import { startBroker, connect, end, type Broker } from "./harness";
import { until } from "./marker";
import { home, shardName } from "../../src/shards/layout";

const K = 4;
let broker: Broker;
beforeAll(async () => {
  broker = await startBroker({ SHARDS: String(K), TEST_HOOKS: "1" });
});
afterAll(async () => broker?.close());

/** a client id whose home is `shard` */
function idOn(shard: number, prefix: string): string {
  for (let i = 0; ; i++) if (home(`${prefix}${i}`, K) === shard) return `${prefix}${i}`;
}

/** how many times the object of `shard` started a new life (the crash resets it) */
async function crash(namespace: string, shard: number): Promise<void> {
  const objects = await broker.mf.getDurableObjectNamespace("BROKER");
  const stub = objects.get(objects.idFromName(shardName(namespace, shard))) as unknown as { testCrash(): Promise<void> };
  await stub.testCrash().then(
    () => {
      throw new Error("testCrash returned: the object did not reset");
    },
    () => undefined, // the call fails with the object it reset
  );
}

const persistent = (clientId: string) => ({ clientId, clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 } });

for (const qos of [1, 2] as const) {
  for (const victim of ["subscriber", "publisher"] as const) {
    test(`QoS ${qos}: the ${victim}'s shard crashes mid-stream: nothing acknowledged is lost${qos === 2 ? ", nothing duplicated" : ""}`, async () => {
      const namespace = `crash-${qos}-${victim}`;
      const url = broker.url(namespace);
      const subId = idOn(1, "sub");
      const pubId = idOn(2, "pub");
      const subscribe = async (): Promise<MqttClient> => {
        const c = await connect(`${url}?client=${subId}`, persistent(subId));
        c.on("message", (_t, p) => got.push(p.toString()));
        return c;
      };
      const got: string[] = [];
      let sub = await subscribe();
      await sub.subscribeAsync("stream/#", { qos });
      let subDrops = 0;
      sub.on("close", () => subDrops++);
      // the publisher reconnects by itself and re-sends what was not acknowledged (clean: false)
      const pub = await connect(`${url}?client=${pubId}`, { ...persistent(pubId), reconnectPeriod: 200 });
      let pubDrops = 0;
      pub.on("close", () => pubDrops++);
      const N = 200;
      const acked: string[] = [];
      const publishing = (async () => {
        for (let i = 0; i < N; i++) {
          await pub.publishAsync("stream/x", `m${i}`, { qos });
          acked.push(`m${i}`);
        }
      })();
      await until(() => acked.length >= 40, "40 acknowledged before the crash", 10_000);
      await crash(namespace, victim === "subscriber" ? 1 : 2);
      if (victim === "subscriber") {
        await until(() => subDrops > 0, "the subscriber's socket went with its shard", 5_000);
        sub.end(true);
        sub = await subscribe(); // its session and queue come back from storage
      } else {
        await until(() => pubDrops > 0, "the publisher's socket went with its shard", 5_000);
      }
      await publishing;
      expect(acked.length).toBe(N);
      await until(() => new Set(got).size >= N, "every acknowledged message delivered", 15_000);
      expect(acked.filter((m) => !got.includes(m))).toEqual([]);
      if (qos === 2) expect(got.length).toBe(new Set(got).size);
      await end(sub, pub);
    }, 60_000);
  }
}
