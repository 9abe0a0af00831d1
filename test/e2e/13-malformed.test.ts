// Malformed input through the real Worker and WebSocket layer: a broken stream closes only its
// own connection; WebSocket frames may carry many packets or a piece of one; text frames are
// refused. The protocol's tables (malformed and forbidden packets → reason code, per version)
// run on BrokerCore in plain Node: test/unit/protocol-rules.test.ts. Kept here: a few smoke rows
// proving the path through workerd, and what only the WebSocket layer can do.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { IDisconnectPacket, IPublishPacket, Packet } from "mqtt-packet";
import { startBroker, connect, collect, end, SHARDED, type Broker } from "./harness";
import { RawClient, publishPacket } from "./raw";
import { closedWithin, inspectBroker, uncaught } from "./inspect";
import { packet, str } from "../packets";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker({ MAX_PACKET_SIZE: "65536" });
});
afterAll(() => broker.close());

let seq = 0;
const fresh = (name: string) => `m${++seq}-${name}`;

const pub = (topic: string, payload: string | Buffer, qos: 0 | 1 = 0, messageId?: number): IPublishPacket =>
  publishPacket(topic, payload, { qos, messageId });

/**
 * A bystander pair on the same namespace: proves the broker still serves other clients after an
 * offender was closed.
 */
async function bystanders(protocolVersion: 4 | 5) {
  const topic = fresh("bystander");
  const listener = await connect(broker.url(), { protocolVersion });
  await listener.subscribeAsync(topic, { qos: 1 });
  const talker = await connect(broker.url(), { protocolVersion });
  let closes = 0;
  for (const c of [listener, talker]) c.on("close", () => closes++);
  return {
    async stillWork(label: string) {
      const got = collect(listener, 1);
      await talker.publishAsync(topic, label, { qos: 1 });
      expect((await got)[0]!.payload).toBe(label);
      expect(closes).toBe(0);
    },
    end: () => end(listener, talker),
  };
}

describe.each([4, 5] as const)("protocol %i", (protocolVersion) => {
  const offenders: [string, (raw: RawClient) => void, number][] = [
    ["garbage bytes (smoke: the close path through the worker)", (raw) => raw.sendBytes(Buffer.from("GET / HTTP/1.1\r\n\r\n")), 0x81],
    ["a packet above the maximum packet size, in one 70 kB frame", (raw) => raw.send(pub("big", Buffer.alloc(70000))), 0x95],
    ["a text frame [MQTT-6.0.0-1]", (raw) => raw.sendBytes("hello"), 0x81],
  ];

  test.each(offenders)("%s closes only the offender; others keep receiving", async (_name, offend, reason) => {
    const others = await bystanders(protocolVersion);
    await others.stillWork("before");
    const raw = await RawClient.connect(broker.url(), { protocolVersion });
    offend(raw);
    await raw.closedWithin(3000);
    if (protocolVersion === 5) {
      expect((raw.packets.find((p) => p.cmd === "disconnect") as IDisconnectPacket | undefined)?.reasonCode).toBe(reason);
    } else {
      expect(raw.packets).toEqual([]);
    }
    await others.stillWork("after");
    await others.end();
  });

  test("a text frame before CONNECT closes without an answer [MQTT-6.0.0-1]", async () => {
    const raw = await RawClient.open(broker.url(), protocolVersion);
    raw.sendBytes("CONNECT");
    await raw.closedWithin(3000);
    expect(raw.packets).toEqual([]);
  });

  test("many packets in one WebSocket frame are all handled, in order", async () => {
    const topic = fresh("merged");
    const raw = await RawClient.open(broker.url(), protocolVersion);
    const packets: Packet[] = [
      { cmd: "connect", protocolId: "MQTT", protocolVersion, clientId: fresh("merged-client"), clean: true, keepalive: 0 },
      { cmd: "subscribe", messageId: 1, subscriptions: [{ topic, qos: 1 }] },
      ...Array.from({ length: 50 }, (_, i) => pub(topic, `n${i}`, 1, i + 10)),
      { cmd: "pingreq" },
    ];
    raw.sendBytes(Buffer.concat(packets.map((p) => raw.encode(p))));
    expect((await raw.next()).cmd).toBe("connack");
    // At K > 1 the SUBACK waits until the other shards route the filter here, and the packets
    // behind it go on meanwhile (a server may send matching PUBLISHes before the SUBACK, MQTT 3.8.4)
    let subacked = !SHARDED;
    let ponged = false;
    if (!SHARDED) expect((await raw.next()).cmd).toBe("suback");
    const acks: number[] = [];
    const delivered: string[] = [];
    while (delivered.length < 50 || acks.length < 50 || !subacked) {
      const p = await raw.next();
      if (p.cmd === "suback" && !subacked) subacked = true;
      else if (p.cmd === "pingresp" && SHARDED && !ponged) ponged = true;
      else if (p.cmd === "puback") acks.push(p.messageId!);
      else if (p.cmd === "publish") {
        delivered.push(p.payload.toString());
        raw.send({ cmd: "puback", messageId: p.messageId! });
      } else throw new Error(`unexpected ${p.cmd}`);
    }
    expect(acks).toEqual(Array.from({ length: 50 }, (_, i) => i + 10));
    expect(delivered).toEqual(Array.from({ length: 50 }, (_, i) => `n${i}`));
    if (!ponged) expect((await raw.next()).cmd).toBe("pingresp");
    raw.close();
  });

  test("one packet split across many frames (one byte each) is reassembled", async () => {
    const topic = fresh("split");
    const raw = await RawClient.open(broker.url(), protocolVersion);
    const bytes = Buffer.concat([
      raw.encode({ cmd: "connect", protocolId: "MQTT", protocolVersion, clientId: fresh("split-client"), clean: true, keepalive: 0 }),
      raw.encode({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic, qos: 0 }] }),
    ]);
    for (const b of bytes) raw.sendBytes(Uint8Array.of(b));
    expect((await raw.next()).cmd).toBe("connack");
    expect((await raw.next()).cmd).toBe("suback");
    const payload = Buffer.alloc(3000, 0x61);
    const publish = raw.encode(pub(topic, payload));
    for (let i = 0; i < publish.length; i += 7) raw.sendBytes(publish.subarray(i, i + 7));
    const p = (await raw.next("publish")) as IPublishPacket;
    expect(Buffer.compare(p.payload as Buffer, payload)).toBe(0);
    raw.close();
  });
});

test("smoke through the worker: a refused CONNECT, a 3.1.1 offender; bystanders keep working, nothing escaped, storage is consistent", async () => {
  const refused = await RawClient.open(broker.url(), 4);
  refused.sendBytes(packet(0x10, str("MQTT"), [6, 0x02], [0, 0], str("lvl6"))); // [MQTT-3.1.2-2]
  expect(await refused.next()).toMatchObject({ cmd: "connack", returnCode: 1 });
  expect(await closedWithin(refused, 3000)).not.toBe("open");
  const sub = await connect(broker.url(), { protocolVersion: 5 });
  await sub.subscribeAsync("still/#", { qos: 1 });
  const got = collect(sub, 1);
  const bad = await RawClient.connect(broker.url(), { protocolVersion: 4, clientId: "bad-qos3" });
  bad.sendBytes(packet(0x36, str("t"), [0, 1])); // PUBLISH QoS 3 [MQTT-3.3.1-4]
  const pub = await connect(broker.url(), { protocolVersion: 4 });
  await pub.publishAsync("still/here", "yes", { qos: 1 });
  expect((await got)[0]!.payload).toBe("yes");
  const code = await closedWithin(bad, 2000);
  expect(code).not.toBe("open");
  expect(code).not.toBe(1011); // an internal error, not a judged packet
  expect(bad.packets.filter((p) => p.cmd !== "connack")).toEqual([]);
  const state = await inspectBroker(broker);
  expect(state.problems).toEqual([]);
  expect(state.sessions.filter((s) => s.clientId.startsWith("bad-"))).toEqual([]);
  expect(uncaught(broker)).toEqual([]);
  await end(sub, pub);
});
