// A token's expiry is a connection deadline (timers/deadlines.ts), kept in the grant that the
// socket attachment carries over hibernation (broker/connection.ts).
import { describe, expect, test } from "vitest";
import { nextDeadline } from "../../src/timers/deadlines";
import { Connection, type Attachment, type Transport } from "../../src/broker/connection";
import { DEFAULTS } from "../../src/config";

describe("token expiry as a deadline", () => {
  test("the earliest of keep-alive and token expiry wins; awaiting CONNECT ignores it", () => {
    expect(nextDeadline([{ state: "connected", openedAt: 0, deadline: 9000, tokenDeadline: 5000 }], [], 10000)).toBe(5000);
    expect(nextDeadline([{ state: "connected", openedAt: 0, deadline: null, tokenDeadline: 5000 }], [], 10000)).toBe(5000);
    expect(nextDeadline([{ state: "connected", openedAt: 0, deadline: 4000, tokenDeadline: 5000 }], [], 10000)).toBe(4000);
    expect(nextDeadline([{ state: "connected", openedAt: 0, deadline: null, tokenDeadline: null }], [], 10000)).toBeNull();
  });

  test("the grant's exp survives the attachment: a woken connection knows its deadline", () => {
    let saved: Attachment | null = null;
    const transport: Transport = { send() {}, close() {}, saveAttachment: (a) => (saved = structuredClone(a)) };
    const conn = new Connection(transport, DEFAULTS, { seen: 0, at: 0 });
    conn.grant = { identity: "token:", exp: 1_900_000_000 };
    expect(conn.tokenDeadline).toBeNull(); // not connected yet
    conn.accept("c1", 5, 0);
    expect(conn.tokenDeadline).toBe(1_900_000_000_000);
    const woken = new Connection(transport, DEFAULTS, saved!);
    expect(woken.tokenDeadline).toBe(1_900_000_000_000);
    // no token, no deadline (and no grant in the attachment)
    const plain = new Connection(transport, DEFAULTS, { seen: 0, at: 0 });
    plain.accept("c2", 4, 0);
    expect(saved!.g).toBeUndefined();
    expect(plain.tokenDeadline).toBeNull();
  });
});
