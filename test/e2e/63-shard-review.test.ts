// Review of the scale-out (issue 13) at SHARDS = 4 in workerd: what the review found, each case
// a defect fixed on branch shard-review. The placement hint of another id puts a socket on a chosen shard.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { collect, connect, end, startBroker, type Broker } from "./harness";
import { RawClient } from "./raw";
import { closedWithin, sleep, uncaught } from "./inspect";
import { encode } from "../packets";
import { home } from "../../src/shards/layout";
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from "mqtt";
import { createWebsocket } from "../../client/node-websocket.mjs";

const K = 4;
let broker: Broker;
beforeAll(async () => {
  broker = await startBroker({ SHARDS: String(K), MAX_UNCONNECTED_BYTES: String(150 * 1024), EVENTS: "all" });
});
afterAll(async () => broker?.close());

function idOn(shard: number, prefix: string): string {
  for (let i = 0; ; i++) if (home(`${prefix}${i}`, K) === shard) return `${prefix}${i}`;
}
/** a connection and its CONNACK (the harness's `connect` gives the client only) */
function connectWithAck(url: string, opts: IClientOptions): Promise<[MqttClient, IConnackPacket]> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, createWebsocket, ...opts });
    client.once("connect", (ack) => resolve([client, ack]));
    client.once("error", (e) => {
      client.end(true);
      reject(e);
    });
  });
}
const via = (namespace: string, shard: number) => `${broker.url(namespace)}?client=${encodeURIComponent(idOn(shard, "placer"))}`;

describe("sockets whose CONNECT is not read yet", () => {
  test("bytes held while the client id is not in sight count against MAX_UNCONNECTED_BYTES", async () => {
    // MQTT 5 CONNECTs with 60 KB of properties before the client id: the shard holds them to read the id
    const parts = [0, 1, 2].map((i) =>
      encode({ cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clientId: idOn(2, `partial-${i}-`), clean: true, keepalive: 0, properties: { userProperties: { pad: "x".repeat(60 * 1024) } } } as never, 5),
    );
    const socks = await Promise.all(parts.map(() => RawClient.open(via("peek-cap", 1), 5)));
    for (let i = 0; i < 3; i++) {
      socks[i]!.sendBytes(parts[i]!.subarray(0, parts[i]!.length - 100)); // the id is in the last bytes
      await sleep(50);
    }
    expect(await closedWithin(socks[2]!, 2000)).not.toBe("open"); // 3 × 60 KB > 150 KB
    for (let i = 0; i < 2; i++) {
      expect(socks[i]!.isClosed).toBe(false);
      socks[i]!.sendBytes(parts[i]!.subarray(parts[i]!.length - 100));
      expect(await socks[i]!.next("connack")).toMatchObject({ reasonCode: 0 });
    }
    await Promise.all(socks.slice(0, 2).map((s) => s.end()));
  });
});

describe("lifecycle events", () => {
  test("a monitor on one shard sees the events of clients whose sessions live on the others", async () => {
    const ns = "events-across";
    const monitorId = idOn(0, "mon");
    const monitor = await connect(`${broker.url(ns)}?client=${monitorId}`, { clientId: monitorId });
    await monitor.subscribeAsync("$events/clients/+/connected", { qos: 1 });
    const ids = [1, 2, 3].map((shard) => idOn(shard, "dev"));
    const got = collect(monitor, 3);
    const devices = [];
    for (const id of ids) devices.push(await connect(`${broker.url(ns)}?client=${id}`, { clientId: id }));
    expect((await got).map((m) => m.topic).sort()).toEqual(ids.map((id) => `$events/clients/${id}/connected`).sort());
    await end(monitor, ...devices);
  });
});

describe("client ids the broker assigns", () => {
  test("an MQTT 5 client resumes its persistent session with its assigned id, placed by that id", async () => {
    const ns = "assigned";
    for (let shard = 0; shard < K; shard++) {
      const [first, ack] = await connectWithAck(via(ns, shard), { clientId: "", protocolVersion: 5, clean: true, properties: { sessionExpiryInterval: 600 } });
      const assigned = ack.properties?.assignedClientIdentifier ?? "";
      expect(assigned).toMatch(/^auto-/);
      await first.subscribeAsync("jobs/#", { qos: 1 });
      await end(first);
      const pubId = idOn(shard, "pub");
      const pub = await connect(`${broker.url(ns)}?client=${pubId}`, { clientId: pubId });
      await pub.publishAsync("jobs/1", `for-${shard}`, { qos: 1 });
      await end(pub);
      const back = await connect(`${broker.url(ns)}?client=${encodeURIComponent(assigned)}`, { clientId: assigned, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 600 } });
      const got = await collect(back, 1);
      expect(got[0]!.payload).toBe(`for-${shard}`);
      await end(back);
    }
  });
});

test("nothing escaped to the runtime", () => {
  expect(uncaught(broker)).toEqual([]);
});
