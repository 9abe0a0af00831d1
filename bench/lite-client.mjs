// A load-generator MQTT client: raw WebSocket + hand-rolled framing, cheap per message, so
// the generator is not what the benchmark measures (its CPU is reported anyway).
import WebSocket from "ws";
import mqttPacket from "mqtt-packet";

const enc = (packet, version = 4) => mqttPacket.generate(packet, { protocolVersion: version });

export class LiteClient {
  constructor(ws, version) {
    this.ws = ws;
    this.version = version;
    this.pending = null; // partial bytes across frames
    this.waiters = new Map(); // packet type → [resolve]
    this.onPublish = null; // (buf, start, end, qos, packetId, topicStart, topicLen) => void
    this.onAck = null; // (type, packetId) => void
    this.closed = new Promise((resolve) => ws.on("close", (code) => resolve(code)));
    ws.on("message", (data) => this.receive(data));
  }

  static async connect(url, { clientId, clean = true, keepalive = 0, version = 4, will, properties } = {}) {
    const ws = new WebSocket(url, "mqtt", { perMessageDeflate: false });
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    const c = new LiteClient(ws, version);
    const connack = c.wait(2);
    ws.send(enc({ cmd: "connect", protocolId: "MQTT", protocolVersion: version, clientId, clean, keepalive, will, properties }, version));
    c.connack = await connack;
    return c;
  }

  /** resolves with the bytes of the next packet of this type (2 CONNACK, 9 SUBACK, …) */
  wait(type) {
    return new Promise((resolve) => {
      const list = this.waiters.get(type) ?? [];
      list.push(resolve);
      this.waiters.set(type, list);
    });
  }

  async subscribe(filter, qos) {
    const ack = this.wait(9);
    this.ws.send(enc({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos }] }, this.version));
    return ack;
  }

  send(bytes) {
    this.ws.send(bytes);
  }

  receive(data) {
    let buf = this.pending ? Buffer.concat([this.pending, data]) : data;
    this.pending = null;
    let i = 0;
    while (i < buf.length) {
      if (buf.length - i < 2) break;
      let len = 0;
      let mul = 1;
      let j = i + 1;
      let complete = false;
      for (let k = 0; k < 4 && j < buf.length; k++) {
        const b = buf[j++];
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete || j + len > buf.length) break;
      const type = buf[i] >> 4;
      if (type === 3) {
        const qos = (buf[i] >> 1) & 3;
        const topicLen = buf.readUInt16BE(j);
        const id = qos > 0 ? buf.readUInt16BE(j + 2 + topicLen) : 0;
        if (qos === 1) this.ws.send(Buffer.from([0x40, 2, id >> 8, id & 0xff]));
        else if (qos === 2) this.ws.send(Buffer.from([0x50, 2, id >> 8, id & 0xff]));
        this.onPublish?.(buf, j, j + len, qos, id, j + 2, topicLen);
      } else if (type === 6) {
        const id = buf.readUInt16BE(j);
        this.ws.send(Buffer.from([0x70, 2, id >> 8, id & 0xff])); // PUBREL → PUBCOMP
      } else {
        const list = this.waiters.get(type);
        if (list?.length) list.shift()(buf.subarray(i, j + len));
        if ((type === 4 || type === 5 || type === 7) && this.onAck) this.onAck(type, buf.readUInt16BE(j));
      }
      i = j + len;
    }
    if (i < buf.length) this.pending = Buffer.from(buf.subarray(i));
  }

  terminate() {
    this.ws.terminate();
    return this.closed;
  }

  disconnect() {
    this.ws.send(Buffer.from([0xe0, 0]));
    this.ws.close();
    return this.closed;
  }
}

/** A PUBLISH encoded once; `withId` patches the packet id for QoS > 0. */
export function publishBytes(topic, payload, qos, retain = false, version = 4) {
  const bytes = enc({ cmd: "publish", topic, payload, qos, retain, messageId: qos ? 1 : undefined, dup: false }, version);
  let off = 1;
  while (bytes[off] & 0x80) off++;
  off += 1;
  const idOffset = off + 2 + bytes.readUInt16BE(off);
  return {
    bytes,
    withId(id) {
      const b = Buffer.from(bytes);
      b[idOffset] = id >> 8;
      b[idOffset + 1] = id & 0xff;
      return b;
    },
  };
}

/** waits until the socket's send buffer drains below `limit` bytes */
export async function backpressure(ws, limit = 1 << 20) {
  while (ws.bufferedAmount > limit) await new Promise((r) => setTimeout(r, 1));
}
