// One WebSocket frame per MQTT packet from Node, for MQTT.js's `createWebsocket` option:
//
//   import mqtt from "mqtt";
//   import { createWebsocket } from "./client/node-websocket.mjs";
//   const client = mqtt.connect("wss://<worker>/mqtt", { createWebsocket });
//
// Why: in Node, MQTT.js wraps a `ws` WebSocket in `ws.createWebSocketStream`, a stream without
// `_writev`, so each chunk mqtt-packet writes (fixed header, length, topic, properties, payload...)
// leaves as its own WebSocket frame: 6–10 frames per PUBLISH. A Durable Object is billed one event
// per incoming frame. This WebSocket (the `ws` class, with `send` replaced) copies what it is given
// into one buffer and sends it as one binary frame when the current turn of the event loop ends
// (setImmediate), so the chunks of a packet, and the packets written in the same turn, leave as
// one frame. Order is kept: anything else sent (text, fragments, a close, a terminate) first sends
// what is buffered.
//
// Limits: no frame is larger than `maxFrameSize` (default 1 MiB: the broker's default
// MAX_PACKET_SIZE, so any packet it accepts fits one frame, and the Workers runtime's limit for a
// received message in older documentation; workerd 2026-04 takes 31 MiB and refuses 33 MiB); more
// bytes in one turn are cut into frames of that size (the broker reads packets split over frames).
// Backpressure: a send's callback is called on the next tick while the bytes not yet written to
// the socket (`bufferedAmount`, which counts the buffer) stay under `highWaterMark` (default
// 1 MiB); above it, only once the frame holding its bytes has been written, as `ws` does, so a
// writer that waits for callbacks (MQTT.js's stream does) stops until the socket drains.
//
// Plain ESM JavaScript with no dependency beyond `ws` (MQTT.js depends on it); types in
// node-websocket.d.mts. Node only: a browser's MQTT.js already sends a packet as one frame.
import WebSocket from "ws";

const MiB = 1024 * 1024;
const FIRST_BUFFER = 16 * 1024;

export class CoalescingWebSocket extends WebSocket {
  /** frames this socket sent through the buffer (each a billed event at a Durable Object) */
  framesSent = 0;
  #maxFrameSize;
  #highWaterMark;
  /** @type {Buffer | null} */
  #buf = null;
  #len = 0;
  /** callbacks held until the frame with their last byte is written */
  #held = [];
  #scheduled = false;

  /**
   * @param {string | URL} address
   * @param {string | string[]} [protocols]
   * @param {object} [options] `ws` client options
   * @param {{ maxFrameSize?: number, highWaterMark?: number }} [coalescing]
   */
  constructor(address, protocols, options, coalescing = {}) {
    super(address, protocols, options);
    const max = coalescing.maxFrameSize ?? MiB;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`maxFrameSize must be a positive integer, not ${max}`);
    this.#maxFrameSize = max;
    this.#highWaterMark = coalescing.highWaterMark ?? MiB;
  }

  /** `ws`'s count of bytes not yet written to the socket, plus the bytes waiting in the buffer */
  get bufferedAmount() {
    return super.bufferedAmount + this.#len;
  }

  send(data, options, cb) {
    if (typeof options === "function") {
      cb = options;
      options = undefined;
    }
    const bytes = this.readyState === WebSocket.OPEN && coalescible(data, options) ? asBytes(data) : null;
    if (bytes === null) {
      // Not ours to merge (text, a fragment, not open): keep the order.
      this.#flush();
      return super.send(data, options, cb);
    }
    let at = 0;
    while (at < bytes.length) {
      if (this.#buf === null) this.#buf = Buffer.allocUnsafe(Math.min(this.#maxFrameSize, Math.max(FIRST_BUFFER, bytes.length - at)));
      else if (this.#len === this.#buf.length) this.#grow(bytes.length - at);
      const n = Math.min(bytes.length - at, this.#buf.length - this.#len);
      bytes.copy(this.#buf, this.#len, at, at + n);
      this.#len += n;
      at += n;
      if (this.#len === this.#maxFrameSize && at < bytes.length) this.#flush();
    }
    if (cb) {
      if (this.bufferedAmount < this.#highWaterMark) process.nextTick(cb);
      else this.#held.push(cb);
    }
    if (this.#len === this.#maxFrameSize) this.#flush();
    else if (!this.#scheduled && this.#len > 0) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.#flush();
      });
    }
  }

  close(code, reason) {
    this.#flush();
    super.close(code, reason);
  }

  terminate() {
    // What was sent before would already be in the socket without this class: send it first.
    this.#flush();
    super.terminate();
  }

  #grow(more) {
    const size = Math.min(this.#maxFrameSize, Math.max(this.#buf.length * 2, this.#len + more));
    const bigger = Buffer.allocUnsafe(size);
    this.#buf.copy(bigger, 0, 0, this.#len);
    this.#buf = bigger;
  }

  /** Sends what is buffered as one binary frame; held callbacks go with it. */
  #flush() {
    if (this.#len === 0 && this.#held.length === 0) return;
    const frame = this.#buf === null ? null : this.#buf.subarray(0, this.#len);
    const held = this.#held;
    this.#buf = null;
    this.#len = 0;
    this.#held = [];
    const done = held.length === 0 ? undefined : (err) => held.forEach((f) => f(err));
    if (this.readyState !== WebSocket.OPEN) {
      // Closed under us: the bytes cannot leave; tell whoever waits, as `ws` would.
      if (done) process.nextTick(done, new Error(`WebSocket is not open: readyState ${this.readyState} (${["CONNECTING", "OPEN", "CLOSING", "CLOSED"][this.readyState]})`));
      return;
    }
    if (frame === null) {
      if (done) process.nextTick(done);
      return;
    }
    this.framesSent++;
    super.send(frame, { binary: true, fin: true }, done);
  }
}

function coalescible(data, options) {
  if (options) {
    if (options.binary === false || options.fin === false) return false;
  }
  return Buffer.isBuffer(data) || ArrayBuffer.isView(data) || data instanceof ArrayBuffer;
}

function asBytes(data) {
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * MQTT.js's `createWebsocket` option: a `ws` WebSocket, built as MQTT.js builds its own (the URL,
 * the subprotocol it chose, and `options.wsOptions`), that sends one frame per packet.
 * @param {string} url
 * @param {string[]} websocketSubProtocols
 * @param {{ wsOptions?: object }} [options] the MQTT.js client options
 */
export function createWebsocket(url, websocketSubProtocols, options) {
  return new CoalescingWebSocket(url, websocketSubProtocols, options?.wsOptions);
}

/**
 * `createWebsocket` with other limits, e.g. `coalescingWebsocket({ maxFrameSize: 32 * 1024 * 1024 })`.
 * @param {{ maxFrameSize?: number, highWaterMark?: number }} [coalescing]
 */
export function coalescingWebsocket(coalescing = {}) {
  return (url, websocketSubProtocols, options) => new CoalescingWebSocket(url, websocketSubProtocols, options?.wsOptions, coalescing);
}
