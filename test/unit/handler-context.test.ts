// Handlers against a fake context: the HandlerContext seam (handlers/context.ts) is all a handler
// sees, so a few fields and a recording connection are enough to test one alone.
import { describe, expect, test } from "vitest";
import { handleUnsubscribe } from "../../src/handlers/subscribe";
import { handleDisconnect } from "../../src/handlers/disconnect";
import type { HandlerContext } from "../../src/handlers/context";
import type { Connection } from "../../src/broker/connection";
import { Session } from "../../src/session/session";
import { DEFAULTS } from "../../src/config";
import type { Packet } from "../../src/protocol/codec";

function fakes(version: 4 | 5 = 5) {
  const calls: string[] = [];
  const sent: Packet[] = [];
  const ctx = {
    config: DEFAULTS,
    now: () => 0,
    sessions: {
      unsubscribe: (_s: Session, filter: string) => {
        calls.push(`unsubscribe ${filter}`);
        return filter === "held/#";
      },
    },
    closeConnection: (_c: Connection) => void calls.push("close"),
    lifecycle: { enabled: () => false },
  } as unknown as HandlerContext;
  const conn = { version, send: (p: Packet) => void sent.push(p), disconnected: false } as unknown as Connection;
  return { ctx, conn, calls, sent, session: new Session("c", true) };
}

describe("UNSUBSCRIBE answers from the registry's verdict [MQTT-3.10.4-5, 5.0 §3.11.3]", () => {
  test("0x00 for a subscription that existed, 0x11 for one that did not, 0x8F for an invalid filter", () => {
    const { ctx, conn, calls, sent, session } = fakes();
    handleUnsubscribe(ctx, conn, session, { cmd: "unsubscribe", messageId: 7, unsubscriptions: ["held/#", "never/#", "a/#/b"] });
    expect(calls).toEqual(["unsubscribe held/#", "unsubscribe never/#", "unsubscribe a/#/b"]);
    expect(sent).toEqual([{ cmd: "unsuback", messageId: 7, granted: [0x00, 0x11, 0x8f] }]);
  });
});

describe("DISCONNECT [MQTT-3.14.4-3]", () => {
  test.each([
    [0x00, true],
    [0x04, false],
  ])("MQTT 5 reason %i: the will is discarded = %s, and the connection closes", (reasonCode, discarded) => {
    const { ctx, conn, calls, session } = fakes();
    handleDisconnect(ctx, conn, session, { cmd: "disconnect", reasonCode });
    expect(conn.disconnected).toBe(discarded);
    expect(calls).toEqual(["close"]);
  });

  test("MQTT 5: Session Expiry 0 at CONNECT cannot become more at DISCONNECT [MQTT-3.14.2-2]", () => {
    const { ctx, conn, session } = fakes();
    session.expiryInterval = 0;
    expect(() => handleDisconnect(ctx, conn, session, { cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 60 } })).toThrow(/session expiry/);
  });
});
