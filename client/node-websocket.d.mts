// Types for node-websocket.mjs (see there): MQTT.js's `createWebsocket` option, one frame per packet.
import WebSocket from "ws";

export interface CoalescingOptions {
  /** Largest frame sent, in bytes; more in one turn is cut into frames of this size. Default 1 MiB. */
  maxFrameSize?: number;
  /**
   * Bytes not yet written to the socket (the buffer included) above which a send's callback waits
   * until its frame is written, instead of being called on the next tick. Default 1 MiB.
   */
  highWaterMark?: number;
}

/** A `ws` WebSocket whose binary sends in one turn of the event loop leave as one frame. */
export declare class CoalescingWebSocket extends WebSocket {
  constructor(address: string | URL, protocols?: string | string[], options?: WebSocket.ClientOptions, coalescing?: CoalescingOptions);
  /** Frames sent through the buffer so far. */
  framesSent: number;
}

/** MQTT.js's `createWebsocket` option: `mqtt.connect(url, { createWebsocket })`. */
export declare function createWebsocket(url: string, websocketSubProtocols: string[], options?: { wsOptions?: WebSocket.ClientOptions | object }): CoalescingWebSocket;

/** `createWebsocket` with other limits. */
export declare function coalescingWebsocket(coalescing?: CoalescingOptions): typeof createWebsocket;
