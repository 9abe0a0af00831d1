// A raw MQTT-over-WebSocket client (ws + mqtt-packet) for tests that must control the bytes and
// the timing exactly: no automatic acknowledgements, no keep-alive pings, no retransmissions
// (withholding acknowledgements, retransmitting, dropping mid-exchange: flows MQTT.js will not
// perform on purpose).
import WebSocket from "ws";
import * as mqttPacket from "mqtt-packet";
import { hinted } from "./hint";

export type Packet = mqttPacket.Packet;

/** A PUBLISH packet for `RawClient.send`: QoS 0, no DUP, no RETAIN unless `more` says otherwise. */
export function publishPacket(topic: string, payload: string | Buffer, more: Partial<mqttPacket.IPublishPacket> = {}): mqttPacket.IPublishPacket {
  return { cmd: "publish", topic, payload: Buffer.from(payload), qos: 0, dup: false, retain: false, ...more } as mqttPacket.IPublishPacket;
}

export interface Closed {
  code: number;
  reason: string;
  /** ms since the socket was opened */
  at: number;
}

export class RawClient {
  readonly packets: Packet[] = [];
  /** the byte size of every WebSocket frame received, in order */
  readonly frames: number[] = [];
  readonly closed: Promise<Closed>;
  /**
   * The broker's close frame (or the close, whichever comes first). workerd may hold the TCP
   * connection open for a while after the close handshake of a socket that never sent a message,
   * so "the broker closed it" is best measured here.
   */
  readonly closeFrame: Promise<Closed>;
  isClosed = false;
  readonly openedAt = Date.now();
  private readonly parser: mqttPacket.Parser;
  private waiters: (() => void)[] = [];

  private constructor(
    readonly ws: WebSocket,
    public version: 3 | 4 | 5,
  ) {
    this.parser = mqttPacket.parser({ protocolVersion: version });
    this.parser.on("packet", (p: Packet) => {
      this.packets.push(p);
      this.wake();
    });
    this.parser.on("error", (e: Error) => this.packets.push({ cmd: "error", message: e.message } as unknown as Packet));
    ws.on("message", (data: Buffer) => {
      this.frames.push(data.byteLength);
      this.parser.parse(data);
    });
    this.closed = new Promise((resolve) => {
      ws.on("close", (code, reason) => {
        this.isClosed = true;
        resolve({ code, reason: reason.toString(), at: Date.now() - this.openedAt });
        this.wake();
      });
    });
    this.closeFrame = new Promise((resolve) => {
      void this.closed.then(resolve);
      // ws's receiver reports a close frame as "conclude" (internal, ws 8.x)
      ws.once("open", () => {
        const receiver = (ws as unknown as { _receiver?: { once(e: string, f: (code: number, reason: Buffer) => void): void } })._receiver;
        receiver?.once("conclude", (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() - this.openedAt }));
      });
    });
  }

  /** Opens a WebSocket to `url` offering `protocols`, resolves once it is open. */
  static open(url: string, version: 3 | 4 | 5 = 4, protocols: string | string[] = "mqtt"): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols);
      const client = new RawClient(ws, version);
      ws.once("open", () => resolve(client));
      ws.once("error", reject);
    });
  }

  /** Opens a socket and completes CONNECT/CONNACK; rejects unless the CONNACK accepts. */
  static async connect(url: string, connect: Partial<mqttPacket.IConnectPacket> = {}): Promise<RawClient> {
    const version = (connect.protocolVersion ?? 4) as 3 | 4 | 5;
    const client = await RawClient.open(hinted(url, connect.clientId), version);
    const connack = await client.connect(connect);
    const code = (connack as mqttPacket.IConnackPacket).reasonCode ?? (connack as mqttPacket.IConnackPacket).returnCode;
    if (code !== 0) throw new Error(`CONNECT refused: ${code}`);
    return client;
  }

  /**
   * Opens a socket, sends CONNECT (clean, keep-alive 0 unless given) and returns the client with
   * its CONNACK, whatever the CONNACK's code.
   */
  static async handshake(
    url: string,
    connect: Partial<mqttPacket.IConnectPacket> & { clientId: string },
    version: 3 | 4 | 5 = 4,
  ): Promise<{ client: RawClient; connack: mqttPacket.IConnackPacket }> {
    const client = await RawClient.open(hinted(url, connect.clientId), version);
    const connack = (await client.connect(connect)) as mqttPacket.IConnackPacket;
    return { client, connack };
  }

  /** Sends CONNECT (clean, keep-alive 0 unless given) and returns the CONNACK. */
  async connect(connect: Partial<mqttPacket.IConnectPacket> = {}): Promise<Packet> {
    this.send({
      cmd: "connect",
      protocolId: this.version === 3 ? "MQIsdp" : "MQTT",
      protocolVersion: this.version,
      clientId: `raw-${Math.random().toString(16).slice(2)}`,
      clean: true,
      keepalive: 0,
      ...connect,
    } as mqttPacket.IConnectPacket);
    return this.next("connack");
  }

  send(packet: Packet): void {
    this.ws.send(mqttPacket.generate(packet, { protocolVersion: this.version }));
  }

  /** Sends raw bytes in a binary frame (a string goes as a text frame). */
  sendBytes(bytes: Uint8Array | number[] | string): void {
    this.ws.send(Array.isArray(bytes) ? Buffer.from(bytes) : bytes);
  }

  /** Encodes a packet without sending it. */
  encode(packet: Packet): Buffer {
    return mqttPacket.generate(packet, { protocolVersion: this.version });
  }

  /**
   * The next received packet (optionally of one type; other packets before it are skipped).
   * Rejects when the socket closes or after `timeoutMs`.
   */
  async next<C extends Packet["cmd"]>(cmd?: C, timeoutMs = 5000): Promise<Extract<Packet, { cmd: C }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.packets.length > 0) {
        const p = this.packets.shift()!;
        if ((p.cmd as string) === "error") throw unparsable(p);
        if (!cmd || p.cmd === cmd) return p as Extract<Packet, { cmd: C }>;
      }
      await this.waitUntil(deadline, cmd);
    }
  }

  /**
   * The first received packet not yet taken (optionally of one type), leaving packets of other
   * types queued for later (unlike `next`, which drops them). Rejects when the socket closes or
   * after `timeoutMs`.
   */
  async take(cmd?: Packet["cmd"], timeoutMs = 5000): Promise<Packet> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.packets.findIndex((p) => (p.cmd as string) === "error" || !cmd || p.cmd === cmd);
      if (i >= 0) {
        const p = this.packets.splice(i, 1)[0]!;
        if ((p.cmd as string) === "error") throw unparsable(p);
        return p;
      }
      await this.waitUntil(deadline, cmd);
    }
  }

  /** Packets received and not yet taken. */
  pending(): Packet[] {
    return [...this.packets];
  }

  /** The packets received within `ms` (to show that nothing arrives). */
  async quietFor(ms: number): Promise<Packet[]> {
    await new Promise((r) => setTimeout(r, ms));
    return this.packets.splice(0);
  }

  /** Resolves with the close, or rejects if the socket is still open after `timeoutMs`. */
  closedWithin(timeoutMs: number): Promise<Closed> {
    return Promise.race([
      this.closed,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs)),
    ]);
  }

  /** Drops the TCP connection without a close handshake (the broker sees 1006); resolves once closed. */
  destroy(): Promise<Closed> {
    this.ws.terminate();
    return this.closed;
  }

  /** Starts a close handshake without a status code (the broker sees 1005). */
  close(): void {
    if (!this.isClosed) this.ws.close();
  }

  /** Closes with a normal closure (1000) and resolves once closed. */
  end(): Promise<Closed> {
    this.ws.close(1000);
    return this.closed;
  }

  /** Waits for a packet or the close; throws if the socket is closed or `deadline` has passed. */
  private async waitUntil(deadline: number, cmd: string | undefined): Promise<void> {
    if (this.isClosed) throw new Error(`socket closed while waiting for ${cmd ?? "a packet"}`);
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out waiting for ${cmd ?? "a packet"}`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, left);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

function unparsable(p: Packet): Error {
  return new Error(`unparsable bytes from the broker: ${(p as unknown as { message: string }).message}`);
}
