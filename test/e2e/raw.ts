// A raw MQTT-over-WebSocket client for hostile-input tests: sends any bytes, records what the
// broker answers and how the socket closes. Plus a look inside a namespace's broker.
import WebSocket from "ws";
import type { Packet } from "mqtt-packet";
import type { Broker } from "./harness";
import type { BrokerSnapshot } from "../../src/broker/inspect";
import { packetParser } from "../packets";

export interface RawClient {
  send(bytes: Uint8Array | Uint8Array[]): void;
  /** server packets so far */
  packets: Packet[];
  /** the next server packet (from `packets` or still to come) */
  next(timeoutMs?: number): Promise<Packet>;
  /** resolves when the socket has closed: the close code */
  closed: Promise<number>;
  isOpen(): boolean;
  close(): void;
}

export function rawConnect(url: string, version: 3 | 4 | 5 = 4, headers: Record<string, string> = {}): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, "mqtt", { headers });
    const packets: Packet[] = [];
    let read = 0;
    let waiting: ((p: Packet) => void) | null = null;
    const parse = packetParser(version, (p) => {
      packets.push(p);
      if (waiting) {
        const w = waiting;
        waiting = null;
        read++;
        w(p);
      }
    });
    let open = false;
    let closingByUs = false;
    // The server's close frame counts as closed: workerd (locally) may keep the TCP connection
    // half-open after a close sent from an alarm, leaving the client in CLOSING for a while.
    const closed = new Promise<number>((r) => {
      ws.on("close", (code) => r(code));
      const poll = setInterval(() => {
        if (ws.readyState === WebSocket.CLOSED) clearInterval(poll);
        else if (ws.readyState === WebSocket.CLOSING && !closingByUs) {
          clearInterval(poll);
          r((ws as unknown as { _closeCode: number })._closeCode);
          ws.terminate();
        }
      }, 10);
    });
    ws.on("message", (data: Buffer) => parse(new Uint8Array(data)));
    ws.on("error", (e) => {
      if (!open) reject(e);
    });
    ws.on("open", () => {
      open = true;
      resolve({
        packets,
        closed,
        send(bytes) {
          for (const b of Array.isArray(bytes) ? bytes : [bytes]) if (ws.readyState === WebSocket.OPEN) ws.send(b);
        },
        next(timeoutMs = 3000) {
          if (read < packets.length) return Promise.resolve(packets[read++]!);
          return new Promise((res, rej) => {
            const timer = setTimeout(() => {
              waiting = null;
              rej(new Error(`no packet within ${timeoutMs} ms (got ${packets.map((p) => p.cmd).join(",")})`));
            }, timeoutMs);
            waiting = (p) => {
              clearTimeout(timer);
              res(p);
            };
          });
        },
        isOpen: () => ws.readyState === WebSocket.OPEN,
        close: () => {
          closingByUs = true;
          ws.terminate();
        },
      });
    });
  });
}

/** Resolves with the close code, or "open" if the socket is still open after `ms`. */
export function closedWithin(c: RawClient, ms: number): Promise<number | "open"> {
  return Promise.race([c.closed, new Promise<"open">((r) => setTimeout(() => r("open"), ms))]);
}

/** The namespace's broker state and its consistency problems (Durable Object RPC). */
export async function inspectBroker(broker: Broker, namespace = "default"): Promise<BrokerSnapshot> {
  const ns = await broker.mf.getDurableObjectNamespace("BROKER");
  const stub = ns.get(ns.idFromName(namespace)) as unknown as { inspect(): Promise<BrokerSnapshot> };
  return JSON.parse(JSON.stringify(await stub.inspect())) as BrokerSnapshot;
}

/** workerd log lines that mean an exception escaped to the runtime. */
export function uncaught(broker: Broker): string[] {
  return broker.logs.join("").split("\n").filter((l) => /Uncaught|internal error/i.test(l));
}

/** Records every message a client receives from now on, as "topic=payload". */
export function record(client: { on(e: "message", f: (t: string, p: Buffer) => void): unknown }): string[] {
  const got: string[] = [];
  client.on("message", (topic: string, payload: Buffer) => got.push(`${topic}=${payload.toString()}`));
  return got;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
