// Review of the bridges (2026-11-27, review-c): each test fails on the code it was written against.
import { describe, expect, test } from "vitest";
import { SimBroker } from "../sim/broker";
import { SimClient } from "../sim/client";

const code = (c: SimClient) => c.connack?.reasonCode ?? c.connack?.returnCode;

/** The bridge's local side as BridgeLink opens it: MQTT 5, Clean Start 0, a long expiry, on a bridge socket. */
function bridgeClient(b: SimBroker, name: string): SimClient {
  const c = new SimClient(b, `bridge/${name}`);
  c.bridge = name;
  return c;
}

describe("review-c: the bridge's local session belongs to the bridge", () => {
  // AUTH_MODE none: no identity, so no owner check stands in the way (with users, another identity
  // could still create the session first and lock the bridge out: the same reservation covers it)
  {
    const authVars = {};
    const mode = "none";
    test(`AUTH_MODE ${mode}: a client on an ordinary socket cannot take bridge/<name> and drain its queue`, () => {
      const b = new SimBroker({ authVars });
      const bridge = bridgeClient(b, "b1");
      bridge.connect({ version: 5, clean: false, expiry: 100000 });
      expect(code(bridge)).toBe(0);
      bridge.subscribe("t/#", 1);
      bridge.drop(); // the link is down: the namespace keeps its messages
      const pub = new SimClient(b, "pub");
      pub.connect({ version: 5 });
      pub.publish("t/1", "secret", 1);

      const thief = new SimClient(b, "bridge/b1");
      thief.connect({ version: 5, clean: false, expiry: 100000 });
      expect(code(thief)).toBe(0x85); // client identifier not valid: reserved
      expect(thief.received).toEqual([]);
      // the bridge comes back and gets its message
      bridge.connect({ version: 5, clean: false, expiry: 100000 });
      expect(bridge.connack?.sessionPresent).toBe(true);
      expect(bridge.received.map((r) => r.payload)).toEqual(["secret"]);
    });

    test(`AUTH_MODE ${mode}: a client cannot squat bridge/<name> before the bridge's first connection`, () => {
      const b = new SimBroker({ authVars });
      const squatter = new SimClient(b, "bridge/b2");
      squatter.connect({ version: 5, clean: false, expiry: 100000 });
      expect(code(squatter)).toBe(0x85);
      const bridge = bridgeClient(b, "b2");
      bridge.connect({ version: 5, clean: false, expiry: 100000 });
      expect(code(bridge)).toBe(0);
      expect(bridge.connack?.sessionPresent).toBe(false);
    });
  }

  test("MQTT 3.1.1 clients are refused the reserved ids too (identifier rejected)", () => {
    const b = new SimBroker();
    const c = new SimClient(b, "bridge/x");
    c.connect({ version: 4, clean: true });
    expect(code(c)).toBe(2);
  });

  test("a bridge socket takes its own session only", () => {
    const b = new SimBroker();
    const other = new SimClient(b, "bridge/b2");
    other.bridge = "b1";
    other.connect({ version: 5, clean: false, expiry: 100000 });
    expect(code(other)).toBe(0x85);
    const plain = new SimClient(b, "someone");
    plain.bridge = "b1";
    plain.connect({ version: 5 });
    expect(code(plain)).toBe(0x85);
  });
});

describe("review-c: an idle bridge does not wake its namespace", () => {
  test("MAX_KEEPALIVE does not give the bridge's socket a keep-alive (each PINGREQ would wake the hibernated object)", () => {
    const b = new SimBroker({ config: { MAX_KEEPALIVE: 60 } });
    const bridge = bridgeClient(b, "b1");
    bridge.connect({ version: 5, clean: false, expiry: 100000, keepalive: 0 });
    expect(code(bridge)).toBe(0);
    expect(bridge.connack?.properties?.serverKeepAlive).toBeUndefined();
    // an ordinary client still gets the bound
    const c = new SimClient(b, "c");
    c.connect({ version: 5, keepalive: 0 });
    expect(c.connack?.properties?.serverKeepAlive).toBe(60);
  });
});
