// Table-driven protocol tests on the real BrokerCore in plain Node (test/sim): a row is one rule
// of the spec, the packet a client sends (after a good CONNECT, or as the first packet) and the
// broker's answer. After every row: nothing failed inside the broker, memory, router and store
// agree (inspect), and a bystander pair (a 5.0 listener on by/#, a 3.1.1 talker) is undisturbed.
import { expect } from "vitest";
import type * as mqtt from "mqtt-packet";
import { SimBroker } from "./broker";
import { SimClient } from "./client";
import { inspect } from "../../src/broker/inspect";
import type { BrokerConfig } from "../../src/config";

export type V = 4 | 5;
export type Answer =
  /** CONNACK with this code (3.1.1 return code / 5.0 reason code), then the close */
  | { connack: number }
  /** MQTT 5: DISCONNECT with this reason code, then the close; 3.1.1: the close, no answer */
  | { disconnect: number }
  /** closed without any answer, whatever the version */
  | "silent"
  /** no answer, the connection stays open */
  | "accepted"
  /** one acknowledgement, the connection stays open */
  | { ack: "suback" | "unsuback"; codes: number[] }
  | { ack: "puback" | "pubrec" | "pubrel" | "pubcomp"; code: number };

export interface Row {
  name: string;
  /** the protocol versions the row applies to */
  v: V[];
  /** sent on a fresh socket instead of after a good CONNECT */
  beforeConnect?: boolean;
  /** what the client's parser expects on a socket opened without CONNECT (default: the row's version) */
  parseAs?: V;
  /** done first on the connected client (subscriptions to leave, exchanges to finish) */
  setup?: (c: SimClient) => void;
  send: (v: V) => Uint8Array | mqtt.Packet;
  /** topics under by/ the row's PUBLISH may reach the bystander on (default: none) */
  forwards?: string[];
  answer: Answer | ((v: V) => Answer);
  /** the broker's configuration for this row (default: MAX_PACKET_SIZE below, the rest DEFAULTS) */
  config?: Partial<BrokerConfig>;
  /** wrangler [vars] for the authenticator (ACL_DEFAULT, ...) */
  authVars?: Record<string, string>;
}

export const BOTH: V[] = [4, 5];
export const FIVE: V[] = [5];
export const FOUR: V[] = [4];
/** an empty property block in MQTT 5, nothing in 3.1.1 */
export const p0 = (v: V) => (v === 5 ? [0] : []);
export const MAX_PACKET_SIZE = 4096;
export const invalidFilter = (v: V) => (v === 5 ? 0x8f : 0x80);
export const badUtf8 = Buffer.from([0xc3, 0x28]);
export const pub = (topic: string, more: Partial<mqtt.IPublishPacket> = {}): mqtt.IPublishPacket => ({
  cmd: "publish",
  topic,
  payload: Buffer.from("x"),
  qos: 0,
  retain: false,
  dup: false,
  ...more,
});
export const sub = (messageId: number, ...subscriptions: mqtt.ISubscription[]): mqtt.ISubscribePacket => ({ cmd: "subscribe", messageId, subscriptions });
export const connectPacket = (v: V, more: Partial<mqtt.IConnectPacket> = {}): mqtt.IConnectPacket => ({
  cmd: "connect",
  protocolId: "MQTT",
  protocolVersion: v,
  clientId: "offender",
  clean: true,
  keepalive: 0,
  ...more,
});

/** A broker with the bystanders connected: a 5.0 listener on by/#, a 3.1.1 talker. */
export function withBystanders(config: Partial<BrokerConfig> = {}, authVars?: Record<string, string>) {
  const b = new SimBroker({ config: { MAX_PACKET_SIZE, ...config }, authVars });
  const listener = new SimClient(b, "bystander-listener");
  listener.connect({ version: 5 });
  listener.subscribe("by/#", 1);
  const talker = new SimClient(b, "bystander-talker");
  talker.connect({ version: 4 });
  talker.publish("by/before", "before", 1);
  return {
    b,
    listener,
    /**
     * Nothing failed inside the broker, memory/router/store agree, `gone` left no session, and
     * the bystanders carry on, having got from others only the topics in `forwards`.
     */
    done(forwards: string[] = [], gone?: string) {
      expect(b.logs.filter((l) => l.startsWith("error:"))).toEqual([]);
      const state = inspect(b.core);
      expect(state.problems).toEqual([]);
      if (gone) expect(state.sessions.map((s) => s.clientId)).not.toContain(gone);
      talker.publish("by/after", "after", 1);
      const topics = listener.received.map((r) => r.topic);
      expect(topics.filter((t) => t === "by/before" || t === "by/after")).toEqual(["by/before", "by/after"]);
      expect(topics.filter((t) => t !== "by/before" && t !== "by/after")).toEqual(forwards); // refused messages are not forwarded
      expect([listener.connected, talker.connected]).toEqual([true, true]);
    },
  };
}

/** Runs one row for protocol version `v`. */
export function runRow(row: Row, v: V): void {
  const world = withBystanders(row.config, row.authVars);
  const c = new SimClient(world.b, "offender");
  if (row.beforeConnect) c.open(row.parseAs ?? v);
  else {
    c.connect({ version: v });
    expect(c.connected).toBe(true);
    row.setup?.(c);
  }
  const seen = c.packets.length;
  const out = row.send(v);
  if (out instanceof Uint8Array) c.sendRaw(out);
  else c.send(out);
  const got = c.packets.slice(seen);
  const answer = typeof row.answer === "function" ? row.answer(v) : row.answer;

  if (answer === "silent" || (typeof answer === "object" && "disconnect" in answer)) {
    const code = answer === "silent" ? undefined : answer.disconnect;
    if (v === 5 && code !== undefined) {
      expect(got.map((p) => p.cmd)).toEqual(["disconnect"]); // nothing after it [MQTT-3.14.4-1]
      expect(c.disconnectReason).toBe(code);
      const d = got[0] as mqtt.IDisconnectPacket;
      expect(d.properties?.sessionExpiryInterval).toBeUndefined(); // [MQTT-3.14.2-2]
      expect(d.properties?.reasonString).toBeTruthy();
    } else {
      expect(got).toEqual([]);
    }
    expect(c.closed).not.toBeNull();
  } else if (typeof answer === "object" && "connack" in answer) {
    expect(got.map((p) => p.cmd)).toEqual(["connack"]);
    const connack = got[0] as mqtt.IConnackPacket;
    expect(row.parseAs === 4 || v === 4 ? connack.returnCode : connack.reasonCode).toBe(answer.connack);
    if (answer.connack !== 0) {
      expect(connack.sessionPresent).toBe(false); // [MQTT-3.2.2-6]
      expect(c.closed).not.toBeNull(); // [MQTT-3.2.2-7]
    } else {
      expect(c.closed).toBeNull();
      if (v === 5) expect(connack.properties?.assignedClientIdentifier).toMatch(/.+/);
    }
  } else if (answer === "accepted") {
    expect(got).toEqual([]);
    expect(c.closed).toBeNull();
  } else {
    // (after a PUBREC the sim client sends its PUBREL at once unless told not to: PUBCOMP follows)
    const expected = answer.ack === "pubrec" && c.releaseOnPubrec ? ["pubrec", "pubcomp"] : [answer.ack];
    expect(got.map((p) => p.cmd)).toEqual(expected);
    const ack = got[0] as { granted?: unknown[]; reasonCode?: number };
    if ("codes" in answer) expect(ack.granted ?? []).toEqual(answer.codes);
    else expect(ack.reasonCode ?? 0).toBe(answer.code);
    expect(c.closed).toBeNull();
  }
  if (c.closed) expect(c.closed.code).not.toBe(1011); // 1011: an internal error, not a judged packet
  else {
    c.send({ cmd: "pingreq" }); // still usable
    expect(c.packets.at(-1)?.cmd).toBe("pingresp");
  }
  expect(c.parseErrors).toEqual([]); // what the broker sent is well-formed
  world.done(row.forwards ?? [], c.closed ? "offender" : undefined);
}

/** test.each cases: one per row and protocol version, the version in the name. */
export const rowCases = (rows: Row[]) => rows.flatMap((row) => row.v.map((v) => [`${row.name} (${v === 5 ? "5.0" : "3.1.1"})`, row, v] as const));
