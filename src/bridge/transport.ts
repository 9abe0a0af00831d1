// The sockets of a bridge: TCP or TLS (cloudflare:sockets), WebSocket to a remote broker, and the
// WebSocket into the bridge's own namespace object. Each becomes a Channel plus a Sink that gets
// the bytes and, once, the reason the socket ended.
import { connect } from "cloudflare:sockets";
import type { Channel } from "./client";
import { concat } from "../protocol/codec";

export interface Sink {
  data(bytes: Uint8Array): void;
  /** once, whatever ended the socket */
  closed(reason: string): void;
}

/** How long opening a socket (TCP/TLS handshake, WebSocket upgrade) may take. */
const OPEN_TIMEOUT_MS = 10_000;

export async function openTcp(host: string, port: number, tls: boolean, sink: Sink): Promise<Channel> {
  const socket = connect({ hostname: host, port }, { secureTransport: tls ? "on" : "off", allowHalfOpen: false });
  try {
    await withTimeout(socket.opened, `connecting to ${host}:${port}`);
  } catch (e) {
    socket.close().catch(() => undefined);
    throw new Error(`cannot connect to ${host}:${port}: ${message(e)}`);
  }
  const once = onceSink(sink);
  const writer = socket.writable.getWriter();
  const reader = socket.readable.getReader();
  void (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (value) once.data(value);
      }
      once.closed("the remote closed the connection");
    } catch (e) {
      once.closed(`socket error: ${message(e)}`);
    }
  })();
  // Packets sent in one turn leave in one write: each write is a trip through the runtime.
  let pending: Uint8Array[] = [];
  /** bytes given to send() and not written to the socket yet (the remote reads slowly) */
  let buffered = 0;
  const flush = () => {
    const bytes = concat(pending, pending.reduce((n, c) => n + c.byteLength, 0));
    pending = [];
    writer.write(bytes).then(
      () => void (buffered -= bytes.byteLength),
      (e: unknown) => once.closed(`socket write failed: ${message(e)}`),
    );
  };
  return {
    send: (bytes) => {
      buffered += bytes.byteLength;
      if (pending.push(bytes) === 1) queueMicrotask(flush);
    },
    buffered: () => buffered,
    close: () => void socket.close().catch(() => undefined),
  };
}


/** A WebSocket from an upgrade response (a remote's, or the namespace object's). */
export function channelOf(response: Response, what: string, sink: Sink): Channel {
  const ws = response.webSocket;
  if (!ws) throw new Error(`${what} answered HTTP ${response.status} instead of a WebSocket upgrade`);
  // Newer compatibility dates make binary frames Blobs by default: ask for ArrayBuffers.
  (ws as { binaryType?: string }).binaryType = "arraybuffer";
  ws.accept();
  const once = onceSink(sink);
  ws.addEventListener("message", (e) => {
    if (typeof e.data === "string") once.closed(`${what} sent a text frame (MQTT over WebSocket is binary)`);
    else if (e.data instanceof ArrayBuffer) once.data(new Uint8Array(e.data));
    else once.closed(`${what} sent a frame the bridge cannot read`);
  });
  ws.addEventListener("close", (e) => once.closed(`${what} closed the WebSocket (${e.code}${e.reason ? ` ${e.reason}` : ""})`));
  ws.addEventListener("error", (e) => once.closed(`${what} WebSocket error: ${(e as ErrorEvent).message ?? "unknown"}`));
  return {
    send: (bytes) => ws.send(bytes),
    close: () => {
      try {
        ws.close(1000, "bridge closing");
      } catch {
        // already closed
      }
    },
  };
}

/** `shown`: the address for messages (the status, logs), without a query that may hold a token. */
export async function openWebSocket(url: string, sink: Sink, shown = url): Promise<Channel> {
  let response: Response;
  try {
    response = await withTimeout(
      fetch(url.replace(/^ws/, "http"), { headers: { Upgrade: "websocket", "Sec-WebSocket-Protocol": "mqtt" } }),
      `connecting to ${shown}`,
    );
  } catch (e) {
    throw new Error(`cannot connect to ${shown}: ${message(e)}`);
  }
  return channelOf(response, shown, sink);
}

function onceSink(sink: Sink): Sink {
  let done = false;
  return {
    data: (b) => {
      if (!done) sink.data(b);
    },
    closed: (r) => {
      if (done) return;
      done = true;
      sink.closed(r);
    },
  };
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out ${what} after ${OPEN_TIMEOUT_MS / 1000} s`)), OPEN_TIMEOUT_MS);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
