// peekClientId: the client id of a raw CONNECT, as mqtt-packet writes it, at every split point.
import { describe, expect, test } from "vitest";
import fc from "fast-check";
import * as mqttPacket from "mqtt-packet";
import { peekClientId } from "../../src/shards/connect-peek";

function connect(clientId: string, version: 3 | 4 | 5, extra: Record<string, unknown> = {}): Uint8Array {
  return new Uint8Array(
    mqttPacket.generate(
      { cmd: "connect", protocolId: version === 3 ? "MQIsdp" : "MQTT", protocolVersion: version, clientId, clean: true, keepalive: 30, ...extra } as mqttPacket.IConnectPacket,
      { protocolVersion: version },
    ),
  );
}

describe("peekClientId", () => {
  test("reads the id of 3.1, 3.1.1 and 5 CONNECTs, with properties, will and credentials", () => {
    expect(peekClientId(connect("dev-1", 4))).toEqual({ clientId: "dev-1" });
    expect(peekClientId(connect("dev-1", 3))).toEqual({ clientId: "dev-1" });
    const v5 = connect("ü/σ", 5, {
      properties: { sessionExpiryInterval: 60, userProperties: { a: "b" }, authenticationMethod: "x" },
      will: { topic: "w", payload: Buffer.from("x"), qos: 1, retain: false, properties: { willDelayInterval: 5 } },
      username: "u",
      password: Buffer.from("p"),
    });
    expect(peekClientId(v5)).toEqual({ clientId: "ü/σ" });
    expect(peekClientId(connect("", 4))).toEqual({ clientId: "" });
  });

  test("asks for more at every proper prefix, and answers the same with trailing packets", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 40 }), fc.constantFrom(3 as const, 4 as const, 5 as const), (id, v) => {
        const bytes = connect(id, v, v === 5 ? { properties: { receiveMaximum: 10 } } : {});
        const idEnd = bytes.length; // the id is the last field here
        for (let cut = 0; cut < idEnd; cut++) expect(peekClientId(bytes.subarray(0, cut))).toEqual({ more: true });
        const tail = new Uint8Array([...bytes, 0xc0, 0x00]); // a PINGREQ behind it
        expect(peekClientId(tail)).toEqual({ clientId: id });
      }),
    );
  });

  test("anything else is left to the broker's parser, never throws", () => {
    expect(peekClientId(new Uint8Array([0x30, 0x02, 0, 0]))).toEqual({ local: true }); // PUBLISH first
    expect(peekClientId(new Uint8Array([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]))).toEqual({ local: true }); // 5-byte length
    expect(peekClientId(new Uint8Array([0x10, 0x03, 0, 9, 1]))).toEqual({ local: true }); // name longer than the packet
    const badUtf8 = connect("ab", 4);
    badUtf8[badUtf8.length - 1] = 0xff;
    expect(peekClientId(badUtf8)).toEqual({ local: true });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => void peekClientId(b)));
  });
});
