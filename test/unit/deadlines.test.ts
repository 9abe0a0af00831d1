// Deadline arithmetic (timers/deadlines.ts) and configuration parsing (config.ts).
import { describe, expect, test } from "vitest";
import { keepAliveDeadline, nextDeadline, type ConnectionDeadlines, type SessionDeadlines } from "../../src/timers/deadlines";
import { DEFAULTS, loadConfig } from "../../src/config";

const conn = (state: string, openedAt: number, deadline: number | null): ConnectionDeadlines => ({ state, openedAt, deadline });
const session = (connected: boolean, willAt: number | null, expiresAt: number | null): SessionDeadlines => ({ conn: connected ? {} : null, willAt, expiresAt });

describe("keepAliveDeadline", () => {
  test.each([
    [1000, 0, null],
    [1000, 1, 2500],
    [1000, 2, 4000],
    [0, 60, 90000],
    [5, 65535, 5 + 65535 * 1500],
  ])("last seen %i, keep-alive %i s → %s [MQTT-3.1.2-24]", (lastSeen, ka, expected) => {
    expect(keepAliveDeadline(lastSeen, ka)).toBe(expected);
  });
});

describe("nextDeadline", () => {
  test("nothing pending → null", () => {
    expect(nextDeadline([], [], 10000)).toBeNull();
    expect(nextDeadline([conn("connected", 0, null)], [session(true, null, null)], 10000)).toBeNull();
  });

  test("a socket waiting for CONNECT is due at open + connect timeout, whatever its deadline field says", () => {
    expect(nextDeadline([conn("awaiting-connect", 500, null)], [], 10000)).toBe(10500);
    expect(nextDeadline([conn("awaiting-connect", 500, 1)], [], 10000)).toBe(10500);
  });

  test("the earliest of keep-alive, connect timeout, delayed will and expiry wins", () => {
    const conns = [conn("connected", 0, 9000), conn("awaiting-connect", 100, null), conn("connected", 0, 7000)];
    expect(nextDeadline(conns, [], 10000)).toBe(7000);
    expect(nextDeadline(conns, [session(false, 6000, 50000)], 10000)).toBe(6000);
    expect(nextDeadline(conns, [session(false, null, 3000)], 10000)).toBe(3000);
    expect(nextDeadline(conns, [session(false, null, 3000)], 1000)).toBe(1100);
  });

  test("a connected session's expiry does not count (its clock runs only while disconnected)", () => {
    expect(nextDeadline([], [session(true, null, 5000)], 10000)).toBeNull();
    expect(nextDeadline([], [session(false, null, 5000)], 10000)).toBe(5000);
  });

  test("a delayed will counts even while connected elsewhere (it is owed until cancelled)", () => {
    expect(nextDeadline([], [session(true, 4000, null)], 10000)).toBe(4000);
  });

  test("accepts any iterables (a Set of connections, a Map's values)", () => {
    const conns = new Set([conn("connected", 0, 42)]);
    const sessions = new Map([["a", session(false, 41, null)]]);
    expect(nextDeadline(conns, sessions.values(), 10000)).toBe(41);
  });
});

describe("loadConfig", () => {
  test("no vars → defaults", () => {
    expect(loadConfig(undefined)).toEqual(DEFAULTS);
    expect(loadConfig({})).toEqual(DEFAULTS);
  });

  test("strings from wrangler.toml [vars] are parsed; bad values are ignored", () => {
    const c = loadConfig({ MAX_PACKET_SIZE: "2048", QUEUE_QOS0: "true", CONNECT_TIMEOUT: "-1", MAX_KEEPALIVE: "abc", RECEIVE_MAXIMUM: "", OTHER: "x", BROKER: {} });
    expect(c.MAX_PACKET_SIZE).toBe(2048);
    expect(c.QUEUE_QOS0).toBe(true);
    expect(c.CONNECT_TIMEOUT).toBe(DEFAULTS.CONNECT_TIMEOUT);
    expect(c.MAX_KEEPALIVE).toBe(DEFAULTS.MAX_KEEPALIVE);
    expect(c.RECEIVE_MAXIMUM).toBe(DEFAULTS.RECEIVE_MAXIMUM);
    expect(loadConfig({ QUEUE_QOS0: "1" }).QUEUE_QOS0).toBe(true);
    expect(loadConfig({ QUEUE_QOS0: "no" }).QUEUE_QOS0).toBe(false);
    expect(DEFAULTS.QUEUE_QOS0).toBe(false);
  });
});
