// The fuzz sequence the sharded run once reported as unanswered through a tunnel (45-fuzz, seed
// -59337576, path 149), replayed byte for byte on a socket that lands on a shard other than the
// client id's home, and on one that lands at the home. Both answer alike: the PUBLISH's remaining
// length lies by 2 (12 instead of 10), so it ends after the marker PINGREQ the fuzz sent last,
// which becomes its payload; no PINGRESP is owed. The fuzz's reading of the stream was wrong
// (test/e2e/fuzz-stream.ts), not the tunnel.
import { afterAll, beforeAll, expect, test } from "vitest";
import { startBroker, type Broker } from "./harness";
import { RawClient } from "./raw";
import { home } from "../../src/shards/layout";
import { hashPassword } from "../../src/auth/password";

const K = 4;
let broker: Broker;
beforeAll(async () => {
  // as 45-fuzz: every CONNECT is verified asynchronously, so the packets behind it are held
  broker = await startBroker({
    SHARDS: String(K),
    AUTH_MODE: "password",
    AUTH_USERS: JSON.stringify({ fz: await hashPassword("fz", 1000) }),
    MAX_PACKET_SIZE: "8192",
  });
});
afterAll(async () => broker?.close());

function idOn(shard: number, prefix: string): string {
  for (let i = 0; ; i++) if (home(`${prefix}${i}`, K) === shard) return `${prefix}${i}`;
}
/** a URL whose socket lands on `shard` whatever client id the CONNECT then carries */
const via = (namespace: string, shard: number) => `${broker.url(namespace)}?client=${encodeURIComponent(idOn(shard, "placer"))}`;
const hex = (s: string) => Uint8Array.from(Buffer.from(s, "hex"));

// CONNECT fz-b (user fz, password fz, 3.1.1) cut inside its client id's length; PUBREL 3;
// PUBREC 6; PUBLISH QoS 1 id 5 to fz// with remaining length 12 for its 10 bytes; PINGREQ.
const FRAMES = ["101800044d51545404c2003c00", "04667a2d620002667a0002667a62", "02000350020006320c0004667a2f2f0005879f", "c000"].map(hex);

for (const where of ["through a tunnel", "at the home"] as const) {
  test(`seed -59337576 path 149 ${where}: each packet answered, the PINGREQ taken as payload, the socket open`, async () => {
    const ns = `fz-${where === "at the home" ? "home" : "tunnel"}`;
    const at = home("fz-b", K);
    const shard = where === "at the home" ? at : (at + 1) % K;
    const watcher = await RawClient.connect(broker.url(ns), { clientId: idOn(at, "w"), username: "fz", password: Buffer.from("fz") });
    watcher.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "fz//", qos: 0 }] });
    await watcher.next("suback");

    const c = await RawClient.open(via(ns, shard), 4);
    for (const f of FRAMES) c.sendBytes(f);
    const connack = await c.next("connack");
    expect(connack.returnCode).toBe(0);
    const answers = [await c.next(), await c.next(), await c.next()].map((p) => `${p.cmd} ${(p as { messageId?: number }).messageId}`);
    expect(answers).toEqual(["pubcomp 3", "pubrel 6", "puback 5"]);
    const got = await watcher.next("publish");
    expect(Buffer.from(got.payload as Buffer).toString("hex")).toBe("879fc000");
    // nothing more is owed; the next PINGREQ is one of its own, and answered
    expect(await c.quietFor(300)).toEqual([]);
    expect(c.isClosed).toBe(false);
    c.sendBytes(hex("c000"));
    await c.next("pingresp");
    await Promise.all([c.end(), watcher.end()]);
  });
}
