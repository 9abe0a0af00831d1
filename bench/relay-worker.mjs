// The baseline: a Durable Object that only relays raw WebSocket frames, no MQTT. A socket with
// ?role=pub sends; every frame it sends goes to every ?role=sub socket. The first frame of each
// socket (the client's CONNECT) is answered with a fixed CONNACK so the same clients can drive it.
import { DurableObject } from "cloudflare:workers";

const CONNACK = new Uint8Array([0x20, 2, 0, 0]);

/** PUBACK for a QoS 1 PUBLISH (one-byte remaining length, as the benchmark's packets have) */
function puback(bytes) {
  const idAt = 2 + 2 + ((bytes[2] << 8) | bytes[3]);
  return new Uint8Array([0x40, 2, bytes[idAt], bytes[idAt + 1]]);
}

export class Relay extends DurableObject {
  subs = new Set();

  async fetch(request) {
    const role = new URL(request.url).searchParams.get("role") ?? "sub";
    const pair = new WebSocketPair();
    this.ctx.acceptWebSocket(pair[1], [role]);
    if (role === "sub") this.subs.add(pair[1]);
    const offered = request.headers.get("Sec-WebSocket-Protocol");
    return new Response(null, { status: 101, webSocket: pair[0], headers: offered ? { "Sec-WebSocket-Protocol": "mqtt" } : {} });
  }

  webSocketMessage(ws, message) {
    const first = new Uint8Array(message)[0];
    if (first === 0x10) return ws.send(CONNACK); // CONNECT
    if (first === 0x82) return ws.send(new Uint8Array([0x90, 3, 0, 1, 0])); // SUBSCRIBE → SUBACK
    if (this.subs.size === 0) for (const s of this.ctx.getWebSockets("sub")) this.subs.add(s); // after a wake
    if (this.ctx.getTags(ws)[0] !== "pub") return; // a subscriber's PUBACK: nothing to do
    for (const s of this.subs) s.send(message);
    if ((first & 0x06) === 0x02) ws.send(puback(new Uint8Array(message))); // QoS 1: acknowledge
  }

  webSocketClose(ws) {
    this.subs.delete(ws);
    try {
      ws.close(1000, "");
    } catch {}
  }
}

export default {
  fetch(request, env) {
    return env.RELAY.get(env.RELAY.idFromName("relay")).fetch(request);
  },
};
