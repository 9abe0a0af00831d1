// npm run bench:core — the broker's own JavaScript per message, without the runtime: BrokerCore
// in plain Node over a storage stub (clean sessions write nothing), fed PUBLISH frames by one
// publisher and acknowledged by one subscriber, both with hand-rolled framing so the figure is
// the broker's. Prints µs per message for QoS 0 and QoS 1 (median of RUNS).
import { BrokerCore } from "../src/broker/core";
import { Connection } from "../src/broker/connection";
import { DEFAULTS } from "../src/config";
import { Authenticator } from "../src/auth/authenticator";
import { encode, type Packet } from "../src/protocol/codec";
import type { Store } from "../src/storage/store";

const N = Number(process.env.N ?? 200_000);
const RUNS = Number(process.env.RUNS ?? 5);

// Clean sessions only read empty lists and write nothing per message.
const lists = /^(load|retainedWithPrefix|retainedAfter|nextQueued|queueStats)/;
const store = new Proxy({} as Store, {
  get: (_t, p) => (lists.test(String(p)) ? () => [] : p === "countRetained" ? () => 0 : p === "retainedUsage" ? () => ({ count: 0, bytes: 0 }) : p === "retainedSize" ? () => null : () => undefined),
});

function measure(qos: 0 | 1): number {
  const now = 1_000_000;
  const runtime = { now: () => now, wakeAt: () => {}, rearm: () => {}, later: (fn: () => void) => fn(), log: () => {} };
  const config = { ...DEFAULTS, MAX_PUBLISH_RATE: 0, SYS_INTERVAL: 0 };
  const core = new BrokerCore(store, config, runtime, Authenticator.open());
  const toBuffer = (p: Packet) => {
    const b = encode(p, 4);
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
  };
  const unacked: number[] = [];
  let received = 0;
  const client = (clientId: string, onPublish: (id: number) => void) => {
    const transport = {
      // splits a frame into packets and reports each PUBLISH's packet id
      send(b: Uint8Array) {
        let i = 0;
        while (i < b.length) {
          const type = b[i]! >> 4;
          const q = (b[i]! >> 1) & 3;
          let len = 0;
          let mul = 1;
          let j = i + 1;
          for (;;) {
            const d = b[j++]!;
            len += (d & 127) * mul;
            mul *= 128;
            if (!(d & 128)) break;
          }
          if (type === 3) {
            const topicLength = (b[j]! << 8) | b[j + 1]!;
            onPublish(q ? (b[j + 2 + topicLength]! << 8) | b[j + 3 + topicLength]! : 0);
          }
          i = j + len;
        }
      },
      close() {},
      saveAttachment() {},
    };
    const conn = new Connection(transport, config, { seen: now, at: now }, core.counters);
    core.open(conn);
    core.receive(conn, toBuffer({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clientId, clean: true, keepalive: 0 } as Packet));
    return conn;
  };
  const sub = client("sub", (id) => {
    received++;
    if (qos) unacked.push(id);
  });
  core.receive(sub, toBuffer({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t/#", qos }] } as Packet));
  const pub = client("pub", () => {});
  const payload = new Uint8Array(64) as Buffer;
  const frames = Array.from({ length: 1000 }, (_, i) => toBuffer({ cmd: "publish", topic: "t/a", payload, qos, retain: false, dup: false, messageId: qos ? i + 1 : undefined } as Packet));
  const acks = new Map<number, ArrayBuffer>();
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      core.receive(pub, frames[i % 1000]!);
      while (unacked.length) {
        const id = unacked.pop()!;
        let ack = acks.get(id);
        if (!ack) acks.set(id, (ack = toBuffer({ cmd: "puback", messageId: id } as Packet)));
        core.receive(sub, ack);
      }
    }
  };
  run(20_000); // warm-up
  const before = received;
  const t0 = process.hrtime.bigint();
  run(N);
  const us = Number(process.hrtime.bigint() - t0) / 1000 / N;
  if (received - before !== N) throw new Error(`delivered ${received - before} of ${N}`);
  return us;
}

for (const qos of [0, 1] as const) {
  const runs = Array.from({ length: RUNS }, () => measure(qos)).sort((a, b) => a - b);
  console.log(`QoS ${qos}: ${runs[Math.floor(RUNS / 2)]!.toFixed(2)} µs per message (median of ${RUNS}; runs ${runs.map((r) => r.toFixed(2)).join(", ")})`);
}
