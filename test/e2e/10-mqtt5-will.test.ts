// MQTT 5 wills: Will Delay Interval, its end with the session, DISCONNECT 0x04, Will Properties
// [MQTT-3.1.2-8, 3.1.2-26, 3.14.4-3; §3.1.3.2].
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startBroker, connect, collect, end, quietFor, type Broker } from "./harness";
import { RawClient } from "./raw";
import type { IConnectPacket } from "mqtt-packet";

let broker: Broker;
beforeAll(async () => {
  broker = await startBroker();
});
afterAll(() => broker.close());

type Will = NonNullable<IConnectPacket["will"]>;

/** A raw MQTT 5 client with a will on `topic`; `expiry` is its Session Expiry Interval. */
function withWill(clientId: string, topic: string, delay: number, expiry: number, will: Partial<Will> = {}) {
  return RawClient.handshake(
    broker.url(),
    {
      clientId,
      clean: true,
      properties: { sessionExpiryInterval: expiry },
      will: { topic, payload: Buffer.from(`will of ${clientId}`), qos: 1, retain: false, ...will, properties: { willDelayInterval: delay, ...will.properties } },
    },
    5,
  );
}

async function watcher(topic: string) {
  const w = await connect(broker.url(), { protocolVersion: 5 });
  await w.subscribeAsync(topic, { qos: 1 });
  return w;
}

describe("Will Delay Interval", () => {
  test("[MQTT-3.1.2-8] the will waits for the Will Delay Interval after the connection is lost", async () => {
    const w = await watcher("will/delay");
    const { client } = await withWill("will-delay", "will/delay", 1, 60);
    const got = collect(w, 1, 6000);
    const lostAt = Date.now();
    await client.destroy();
    const [msg] = await got;
    const waited = Date.now() - lostAt;
    expect(msg!.payload).toBe("will of will-delay");
    expect(waited).toBeGreaterThanOrEqual(900); // not at once …
    expect(waited).toBeLessThan(5000); // … but soon after the 1 s delay
    await end(w);
  });

  test("[MQTT-3.1.2-26] a new connection for the client id within the delay cancels the will", async () => {
    const w = await watcher("will/cancel");
    const { client } = await withWill("will-cancel", "will/cancel", 1, 60);
    await client.destroy();
    const back = await RawClient.handshake(broker.url(), { clientId: "will-cancel", clean: false, properties: { sessionExpiryInterval: 60 } }, 5);
    expect(back.connack.sessionPresent).toBe(true);
    expect(await quietFor(w, 1800)).toEqual([]); // well past the 1 s delay
    back.client.send({ cmd: "disconnect", reasonCode: 0 });
    await back.client.closed;
    await end(w);
  });

  test("a delay longer than the session expiry: the will is published when the session ends", async () => {
    const w = await watcher("will/expiry");
    const { client } = await withWill("will-expiry", "will/expiry", 3600, 1);
    const got = collect(w, 1, 6000);
    const lostAt = Date.now();
    await client.destroy();
    const [msg] = await got;
    const waited = Date.now() - lostAt;
    expect(msg!.payload).toBe("will of will-expiry");
    expect(waited).toBeGreaterThanOrEqual(900);
    expect(waited).toBeLessThan(5000); // with the session after 1 s, not after the hour
    const probe = await RawClient.handshake(broker.url(), { clientId: "will-expiry", clean: false, properties: { sessionExpiryInterval: 1 } }, 5);
    expect(probe.connack.sessionPresent).toBe(false); // the session did end
    await probe.client.end();
    await end(w);
  });

  test("a session that ends with its connection publishes a delayed will at once", async () => {
    const w = await watcher("will/no-session");
    const { client } = await withWill("will-now", "will/no-session", 3600, 0);
    const got = collect(w, 1, 3000);
    const lostAt = Date.now();
    await client.destroy();
    expect((await got)[0]!.payload).toBe("will of will-now");
    expect(Date.now() - lostAt).toBeLessThan(900);
    await end(w);
  });
});

describe("DISCONNECT and the will", () => {
  test("[MQTT-3.14.4-3] DISCONNECT 0x00 discards the will, also a delayed one", async () => {
    const w = await watcher("will/normal");
    const a = await withWill("will-normal", "will/normal", 0, 0);
    a.client.send({ cmd: "disconnect", reasonCode: 0x00 });
    await a.client.closed;
    const b = await withWill("will-normal-delayed", "will/normal", 1, 60);
    b.client.send({ cmd: "disconnect", reasonCode: 0x00 });
    await b.client.closed;
    expect(await quietFor(w, 1800)).toEqual([]);
    await end(w);
  });

  test("DISCONNECT 0x04 (Disconnect with Will Message) publishes the will", async () => {
    const w = await watcher("will/with-will");
    const { client } = await withWill("will-0x04", "will/with-will", 0, 0);
    const got = collect(w, 1, 3000);
    client.send({ cmd: "disconnect", reasonCode: 0x04 });
    await client.closed;
    expect((await got)[0]!.payload).toBe("will of will-0x04");
    await end(w);
  });

  test("DISCONNECT 0x04 with a Will Delay Interval: the delay still applies", async () => {
    const w = await watcher("will/with-will-delayed");
    const { client } = await withWill("will-0x04-delayed", "will/with-will-delayed", 1, 60);
    const got = collect(w, 1, 6000);
    const leftAt = Date.now();
    client.send({ cmd: "disconnect", reasonCode: 0x04 });
    await client.closed;
    await got;
    expect(Date.now() - leftAt).toBeGreaterThanOrEqual(900);
    await end(w);
  });
});

describe("Will Properties", () => {
  test("§3.1.3.2 message expiry, content type, response topic, correlation data, user properties and payload format reach subscribers", async () => {
    const w = await watcher("will/props");
    const correlationData = Buffer.from([0, 1, 2, 250]);
    const { client } = await withWill("will-props", "will/props", 0, 0, {
      payload: Buffer.from("gone ✓"),
      properties: {
        messageExpiryInterval: 120,
        contentType: "text/plain; charset=utf-8",
        responseTopic: "will/props/answer",
        correlationData,
        payloadFormatIndicator: true,
        userProperties: { reason: "test", tag: ["a", "b"] },
      },
    });
    const got = collect(w, 1, 3000);
    await client.destroy();
    const [msg] = await got;
    expect(msg!.payload).toBe("gone ✓");
    const p = msg!.packet.properties!;
    expect(p.contentType).toBe("text/plain; charset=utf-8");
    expect(p.responseTopic).toBe("will/props/answer");
    expect(Buffer.from(p.correlationData!)).toEqual(correlationData);
    expect(p.payloadFormatIndicator).toBe(true);
    expect(p.userProperties).toEqual({ reason: "test", tag: ["a", "b"] });
    expect(p.messageExpiryInterval).toBeGreaterThan(115);
    expect(p.messageExpiryInterval).toBeLessThanOrEqual(120);
    expect((p as Record<string, unknown>).willDelayInterval).toBeUndefined();
    await end(w);
  });

  test("a delayed will keeps its properties (stored with the session) and its Message Expiry counts from publication", async () => {
    const w = await watcher("will/props-delayed");
    const { client } = await withWill("will-props-delayed", "will/props-delayed", 1, 60, {
      properties: { messageExpiryInterval: 30, contentType: "application/x-test", userProperties: { k: "v" } },
    });
    const got = collect(w, 1, 6000);
    await client.destroy();
    const p = (await got)[0]!.packet.properties!;
    expect(p.contentType).toBe("application/x-test");
    expect(p.userProperties).toEqual({ k: "v" });
    expect(p.messageExpiryInterval).toBe(30); // not 29: the will waited, the message did not
    await end(w);
  });

  test("[MQTT-3.1.2-17] a will with Will Retain 1 is published retained", async () => {
    const w = await watcher("will/retained");
    const { client } = await withWill("will-retained", "will/retained", 0, 0, { retain: true });
    const live = collect(w, 1, 3000);
    await client.destroy();
    await live; // published
    const later = await connect(broker.url(), { protocolVersion: 5 });
    const got = collect(later, 1, 3000);
    await later.subscribeAsync("will/retained", { qos: 1 });
    const [msg] = await got;
    expect(msg!.packet.retain).toBe(true);
    expect(msg!.payload).toBe("will of will-retained");
    await later.publishAsync("will/retained", "", { qos: 1, retain: true }); // clean up
    await end(later, w);
  });

  test("MQTT 3.1.1 wills are published at once (no delay in 3.1.1)", async () => {
    const w = await watcher("will/v4");
    const { client } = await RawClient.handshake(broker.url(), {
      clientId: "will-v4",
      clean: true,
      will: { topic: "will/v4", payload: Buffer.from("v4 will"), qos: 0, retain: false },
    });
    const got = collect(w, 1, 3000);
    await client.destroy();
    expect((await got)[0]!.payload).toBe("v4 will");
    await end(w);
  });
});
