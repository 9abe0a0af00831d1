// Connection output batching: packets sent in one turn leave as one WebSocket frame (pure).
import { describe, expect, test } from "vitest";
import { Connection, type Transport } from "../../src/broker/connection";
import { DEFAULTS } from "../../src/config";

function setup() {
  const frames: Uint8Array[] = [];
  const events: string[] = [];
  const transport: Transport = {
    send: (bytes) => {
      frames.push(bytes.slice());
      events.push("send");
    },
    close: () => void events.push("close"),
    saveAttachment: () => {},
  };
  const conn = new Connection(transport, DEFAULTS, { seen: 0, at: 0 });
  return { conn, frames, events };
}

const packet = (n: number, size = 4) => {
  const bytes = new Uint8Array(size);
  bytes[0] = 0x40;
  bytes[1] = size - 2;
  bytes[size - 1] = n;
  return bytes;
};

describe("batched sends", () => {
  test("uncorked, every packet is its own frame", () => {
    const { conn, frames } = setup();
    conn.sendBytes(packet(1));
    conn.sendBytes(packet(2));
    expect(frames.map((f) => f.at(-1))).toEqual([1, 2]);
  });

  test("corked, packets gather and leave as one frame, in order, at the outermost uncork", () => {
    const { conn, frames } = setup();
    conn.cork();
    conn.sendBytes(packet(1));
    conn.cork(); // nested: a drained queue inside the handling of a frame
    conn.sendBytes(packet(2));
    conn.uncork();
    expect(frames).toHaveLength(0);
    conn.sendBytes(packet(3));
    conn.uncork();
    expect(frames).toHaveLength(1);
    expect([...frames[0]!]).toEqual([...packet(1), ...packet(2), ...packet(3)]);
  });

  test("a single packet in a batch is sent as it is; an empty batch sends nothing", () => {
    const { conn, frames } = setup();
    conn.cork();
    conn.uncork();
    expect(frames).toHaveLength(0);
    conn.cork();
    conn.sendBytes(packet(7));
    conn.uncork();
    expect(frames.map((f) => [...f])).toEqual([[...packet(7)]]);
  });

  test("a batch is cut at 64 KiB, so frames stay bounded", () => {
    const { conn, frames } = setup();
    conn.cork();
    for (let i = 0; i < 100; i++) conn.sendBytes(packet(i, 1000));
    conn.uncork();
    expect(frames.length).toBe(2);
    expect(frames[0]!.byteLength).toBe(66_000); // the packet that crossed 64 KiB ends the frame
    expect(frames[0]!.byteLength + frames[1]!.byteLength).toBe(100_000);
  });

  test("close sends what was gathered first", () => {
    const { conn, frames, events } = setup();
    conn.cork();
    conn.sendBytes(packet(1));
    conn.close(1000, "bye");
    conn.uncork();
    expect(events).toEqual(["send", "close"]);
    expect(frames).toHaveLength(1);
    expect(conn.sendBytes(packet(2))).toBe(false); // closed: nothing more
  });

  test("the client's Maximum Packet Size still applies per packet, not per frame", () => {
    const { conn, frames } = setup();
    conn.maxPacketSize = 10;
    conn.cork();
    expect(conn.sendBytes(packet(1, 8))).toBe(true);
    expect(conn.sendBytes(packet(2, 20))).toBe(false);
    expect(conn.sendBytes(packet(3, 8))).toBe(true);
    conn.uncork();
    expect(frames).toHaveLength(1);
    expect(frames[0]!.byteLength).toBe(16);
  });
});
