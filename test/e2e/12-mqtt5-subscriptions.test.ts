// MQTT 5 subscription options (No Local, Retain As Published, Retain Handling) and shared
// subscriptions `$share/<group>/<filter>` [MQTT-3.8.3-3, 3.3.1-9..13, 4.8.2-3..6]. The rules
// tables (malformed shared filters, No Local on a shared subscription) run in Node:
// test/unit/handler-rules.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startBroker, connect, collect, end, quietFor, SHARDED, type Broker } from "./harness";
import { RawClient } from "./raw";
import type { IPublishPacket, ISubackPacket } from "mqtt-packet";
import type { MqttClient } from "mqtt";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker();
});
afterAll(() => broker.close());

const v5 = { protocolVersion: 5 as const };

describe("subscription options", () => {
  test("[MQTT-3.8.3-3] No Local: a client's own messages are not sent back to it", async () => {
    const self = await connect(broker.url(), { ...v5, clientId: "nl-self" });
    await self.subscribeAsync("nl/t", { qos: 1, nl: true });
    const echo = await connect(broker.url(), v5);
    await echo.subscribeAsync("nl/t", { qos: 1 }); // No Local 0: gets everything
    const other = await connect(broker.url(), v5);
    const selfGot = collect(self, 1);
    const echoGot = collect(echo, 2);
    await self.publishAsync("nl/t", "mine", { qos: 1 });
    await other.publishAsync("nl/t", "theirs", { qos: 1 });
    expect((await selfGot).map((m) => m.payload)).toEqual(["theirs"]);
    expect((await echoGot).map((m) => m.payload)).toEqual(["mine", "theirs"]);
    expect(await quietFor(self, 300)).toEqual([]);
    await end(self, echo, other);
  });

  test("No Local follows the client id, not the connection", async () => {
    const a = await connect(broker.url(), { ...v5, clientId: "nl-id", clean: false, properties: { sessionExpiryInterval: 60 } });
    await a.subscribeAsync("nl2/t", { qos: 1, nl: true });
    await end(a);
    const b = await connect(broker.url(), { ...v5, clientId: "nl-id", clean: false, properties: { sessionExpiryInterval: 0 } });
    await b.publishAsync("nl2/t", "own", { qos: 1 });
    expect(await quietFor(b, 400)).toEqual([]);
    await end(b);
  });

  test("[MQTT-3.3.1-12][MQTT-3.3.1-13] Retain As Published: RETAIN is kept only when asked for", async () => {
    const rap = await connect(broker.url(), v5);
    await rap.subscribeAsync("rap/t", { qos: 1, rap: true });
    const plain = await connect(broker.url(), v5);
    await plain.subscribeAsync("rap/t", { qos: 1, rap: false });
    const pub = await connect(broker.url(), v5);
    const a = collect(rap, 2);
    const b = collect(plain, 2);
    await pub.publishAsync("rap/t", "retained", { qos: 1, retain: true });
    await pub.publishAsync("rap/t", "live", { qos: 1, retain: false });
    expect((await a).map((m) => `${m.payload}:${m.packet.retain}`)).toEqual(["retained:true", "live:false"]);
    expect((await b).map((m) => `${m.payload}:${m.packet.retain}`)).toEqual(["retained:false", "live:false"]);
    await pub.publishAsync("rap/t", "", { qos: 1, retain: true });
    await end(rap, plain, pub);
  });

  describe("Retain Handling", () => {
    let pub: MqttClient;
    beforeAll(async () => {
      pub = await connect(broker.url(), v5);
      await pub.publishAsync("rh/t", "kept", { qos: 1, retain: true });
    });
    afterAll(async () => {
      await pub.publishAsync("rh/t", "", { qos: 1, retain: true });
      await end(pub);
    });

    test("[MQTT-3.3.1-9] 0: retained messages on every subscribe, also when re-subscribing [MQTT-3.8.4-4]", async () => {
      const c = await connect(broker.url(), v5);
      let got = collect(c, 1);
      await c.subscribeAsync("rh/t", { qos: 1, rh: 0 });
      expect((await got)[0]!.packet.retain).toBe(true);
      got = collect(c, 1);
      await c.subscribeAsync("rh/t", { qos: 1, rh: 0 });
      expect((await got)[0]!.payload).toBe("kept");
      await end(c);
    });

    test("[MQTT-3.3.1-10] 1: retained messages only when the subscription is new", async () => {
      const c = await connect(broker.url(), v5);
      const got = collect(c, 1);
      await c.subscribeAsync("rh/t", { qos: 1, rh: 1 });
      expect((await got)[0]!.payload).toBe("kept");
      await c.subscribeAsync("rh/t", { qos: 1, rh: 1 });
      expect(await quietFor(c, 400)).toEqual([]);
      await end(c);
    });

    test("[MQTT-3.3.1-11] 2: no retained messages at subscribe, live ones still arrive", async () => {
      const c = await connect(broker.url(), v5);
      await c.subscribeAsync("rh/t", { qos: 1, rh: 2 });
      expect(await quietFor(c, 400)).toEqual([]);
      const got = collect(c, 1);
      await pub.publishAsync("rh/t", "kept", { qos: 1, retain: true });
      expect((await got)[0]!.payload).toBe("kept");
      await end(c);
    });
  });
});

describe("shared subscriptions", () => {
  /** Connects `n` MQTT.js members of `$share/<group>/<filter>`; `version` 4 or 5. */
  async function members(n: number, group: string, filter: string, version: 4 | 5 = 5, qos: 0 | 1 | 2 = 1) {
    const out: MqttClient[] = [];
    for (let i = 0; i < n; i++) {
      const c = await connect(broker.url(), { protocolVersion: version });
      await c.subscribeAsync(`$share/${group}/${filter}`, { qos });
      out.push(c);
    }
    return out;
  }

  /** Counts the messages each client receives until all `total` arrived. */
  function tally(clients: MqttClient[], total: number) {
    const seen: string[][] = clients.map(() => []);
    return new Promise<string[][]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out: ${JSON.stringify(seen)}`)), 5000);
      clients.forEach((c, i) =>
        c.on("message", (_t, payload) => {
          seen[i]!.push(payload.toString());
          if (seen.flat().length === total) {
            clearTimeout(timer);
            resolve(seen);
          }
        }),
      );
    });
  }

  // sharded: round robin holds within a shard; across shards the group's copy goes to the member shards in turn
  test.skipIf(SHARDED)("each message goes to one member of each group, round robin; ordinary subscribers get every message", async () => {
    const g1 = await members(3, "g1", "sh/rr/+");
    const g2 = await members(2, "g2", "sh/rr/#");
    const plain = await connect(broker.url(), v5);
    await plain.subscribeAsync("sh/rr/+", { qos: 1 });
    const t1 = tally(g1, 6);
    const t2 = tally(g2, 6);
    const all = collect(plain, 6);
    const pub = await connect(broker.url(), v5);
    for (let i = 0; i < 6; i++) await pub.publishAsync(`sh/rr/${i}`, `m${i}`, { qos: 1 });
    const [s1, s2, p] = await Promise.all([t1, t2, all]);
    expect(s1.map((m) => m.length)).toEqual([2, 2, 2]); // round robin over three
    expect(s2.map((m) => m.length)).toEqual([3, 3]);
    expect(s1.flat().sort()).toEqual(["m0", "m1", "m2", "m3", "m4", "m5"]); // each exactly once
    expect(s2.flat().sort()).toEqual(["m0", "m1", "m2", "m3", "m4", "m5"]);
    expect(p.map((m) => m.payload)).toEqual(["m0", "m1", "m2", "m3", "m4", "m5"]);
    expect(await quietFor(g1[0]!, 200)).toEqual([]);
    await end(...g1, ...g2, plain, pub);
  });

  // sharded: round robin holds within a shard; across shards the group's copy goes to the member shards in turn
  test.skipIf(SHARDED)("MQTT 3.1.1 clients can be members, also mixed with MQTT 5 members", async () => {
    const v4 = await members(2, "mixed", "sh/v4", 4);
    const [five] = await members(1, "mixed", "sh/v4", 5);
    const t = tally([...v4, five!], 6);
    const pub = await connect(broker.url(), { protocolVersion: 4 });
    for (let i = 0; i < 6; i++) await pub.publishAsync("sh/v4", `m${i}`, { qos: 1 });
    const seen = await t;
    expect(seen.map((m) => m.length)).toEqual([2, 2, 2]);
    expect(seen.flat().sort()).toEqual(["m0", "m1", "m2", "m3", "m4", "m5"]);
    await end(...v4, five, pub);
  });

  test("[MQTT-4.8.2-3] QoS is the member's granted QoS, and acknowledgements work as usual", async () => {
    const { client } = await RawClient.handshake(broker.url(), { clientId: "sh-qos", clean: true }, 5);
    client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/q/sh/qos", qos: 1 }] });
    expect(((await client.take("suback")) as ISubackPacket).granted).toEqual([1]);
    const pub = await connect(broker.url(), v5);
    await pub.publishAsync("sh/qos", "two", { qos: 2 });
    const p = (await client.take("publish")) as IPublishPacket;
    expect(p.qos).toBe(1);
    client.send({ cmd: "puback", messageId: p.messageId! });
    await pub.publishAsync("sh/qos", "zero", { qos: 0 });
    expect(((await client.take("publish")) as IPublishPacket).qos).toBe(0);
    // QoS 2 end to end through a QoS 2 member
    const q2 = await connect(broker.url(), v5);
    await q2.subscribeAsync("$share/q2/sh/qos2", { qos: 2 });
    const got = collect(q2, 1);
    await pub.publishAsync("sh/qos2", "exactly-once", { qos: 2 });
    expect((await got)[0]!.packet.qos).toBe(2);
    expect(await quietFor(q2, 300)).toEqual([]);
    await client.end();
    await end(pub, q2);
  });

  test("retained messages are not sent on a shared subscribe", async () => {
    const pub = await connect(broker.url(), v5);
    await pub.publishAsync("sh/ret", "kept", { qos: 1, retain: true });
    const shared = await connect(broker.url(), v5);
    await shared.subscribeAsync("$share/r/sh/ret", { qos: 1 });
    const plain = await connect(broker.url(), v5);
    const got = collect(plain, 1);
    await plain.subscribeAsync("sh/ret", { qos: 1 });
    expect((await got)[0]!.payload).toBe("kept"); // it is there …
    expect(await quietFor(shared, 300)).toEqual([]); // … but not for the shared subscription
    await pub.publishAsync("sh/ret", "", { qos: 1, retain: true });
    await end(pub, shared, plain);
  });

  /** Two raw members; the first message goes to one of them: the `holder`, which does not acknowledge it yet. */
  async function pairWithHeldMessage(group: string, topic: string, qos: 1 | 2, properties: Record<string, number> = {}) {
    const ids = [`${group}-a`, `${group}-b`];
    const raws: RawClient[] = [];
    for (const [n, clientId] of ids.entries()) {
      const { client } = await RawClient.handshake(broker.url(), { clientId, clean: true, properties }, 5);
      const subscriptionIdentifier = n + 1; // each member's own
      client.send({ cmd: "subscribe", messageId: 1, properties: { subscriptionIdentifier }, subscriptions: [{ topic: `$share/${group}/${topic}`, qos }] });
      await client.take("suback");
      raws.push(client);
    }
    const pub = await connect(broker.url(), v5);
    await pub.publishAsync(topic, "held", { qos });
    // Whichever member got it (polled, so no waiter is left behind on the other one).
    const deadline = Date.now() + 3000;
    let i = -1;
    while ((i = raws.findIndex((r) => r.pending().some((p) => p.cmd === "publish"))) < 0) {
      if (Date.now() > deadline) throw new Error("no member got the message");
      await new Promise((r) => setTimeout(r, 20));
    }
    const holder = raws[i]!;
    const p = (await holder.take("publish")) as IPublishPacket;
    expect(p.payload.toString()).toBe("held");
    expect(p.properties?.subscriptionIdentifier).toBe(i + 1);
    return { holder, holderId: ids[i]!, other: raws[1 - i]!, otherSubscriptionId: 2 - i, p, pub };
  }

  test("a member that drops with an unacknowledged QoS 1 message: it is re-routed to another member", async () => {
    const { holder, other, otherSubscriptionId, pub } = await pairWithHeldMessage("reroute", "sh/reroute", 1);
    await holder.destroy(); // no PUBACK
    const again = (await other.take("publish", 3000)) as IPublishPacket;
    expect(again.payload.toString()).toBe("held");
    expect(again.qos).toBe(1);
    expect(again.dup).toBe(false); // a first delivery to this member
    expect(again.properties?.subscriptionIdentifier).toBe(otherSubscriptionId); // as its own subscription asks
    other.send({ cmd: "puback", messageId: again.messageId! });
    // and the group goes on with the remaining member
    await pub.publishAsync("sh/reroute", "next", { qos: 1 });
    expect(((await other.take("publish", 3000)) as IPublishPacket).payload.toString()).toBe("next");
    await other.end();
    await end(pub);
  });

  test("[MQTT-4.8.2-6] a message refused with PUBACK ≥ 0x80 is discarded, not re-routed", async () => {
    const { holder, other, p, pub } = await pairWithHeldMessage("refused", "sh/refused", 1);
    holder.send({ cmd: "puback", messageId: p.messageId!, reasonCode: 0x80 });
    holder.send({ cmd: "pingreq" });
    await holder.take("pingresp"); // the PUBACK has been processed
    await holder.destroy();
    await expect(other.take("publish", 600)).rejects.toThrow(/timed out/);
    await other.end();
    await end(pub);
  });

  test("[MQTT-4.8.2-5] an unfinished QoS 2 delivery is not sent to another member when the member's session ends", async () => {
    const { holder, other, pub } = await pairWithHeldMessage("q2drop", "sh/q2drop", 2);
    await holder.destroy(); // no PUBREC; its session ends with the connection
    await expect(other.take("publish", 600)).rejects.toThrow(/timed out/);
    await other.end();
    await end(pub);
  });

  test("[MQTT-4.8.2-4] an unfinished QoS 2 delivery completes with the same member when it reconnects", async () => {
    const properties = { sessionExpiryInterval: 60 };
    const { holder, holderId, other, p, pub } = await pairWithHeldMessage("q2keep", "sh/q2keep", 2, properties);
    await holder.destroy(); // no PUBREC
    await expect(other.take("publish", 600)).rejects.toThrow(/timed out/);
    const back = await RawClient.handshake(broker.url(), { clientId: holderId, clean: false, properties }, 5);
    expect(back.connack.sessionPresent).toBe(true);
    const again = (await back.client.take("publish")) as IPublishPacket;
    expect(again).toMatchObject({ dup: true, qos: 2, messageId: p.messageId });
    expect(again.payload.toString()).toBe("held");
    back.client.send({ cmd: "pubrec", messageId: again.messageId! });
    await back.client.take("pubrel");
    back.client.send({ cmd: "pubcomp", messageId: again.messageId! });
    back.client.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    await back.client.closed;
    other.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    await other.closed;
    await end(pub);
  });

  test("unsubscribing a shared subscription leaves the group", async () => {
    const [a, b] = await members(2, "leave", "sh/leave");
    await a!.unsubscribeAsync("$share/leave/sh/leave");
    const pub = await connect(broker.url(), v5);
    const got = collect(b!, 4);
    for (let i = 0; i < 4; i++) await pub.publishAsync("sh/leave", `m${i}`, { qos: 1 });
    expect((await got).length).toBe(4);
    expect(await quietFor(a!, 200)).toEqual([]);
    await end(a, b, pub);
  });
});
