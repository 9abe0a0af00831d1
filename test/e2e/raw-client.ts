// A minimal MQTT client over a raw WebSocket, for flows MQTT.js will not perform on purpose
// (withholding acknowledgements, retransmitting, dropping mid-exchange).
import WebSocket from "ws";
import * as mqttPacket from "mqtt-packet";

export type Packet = mqttPacket.Packet;

export class RawClient {
  private readonly queue: Packet[] = [];
  private waiters: { cmd?: string; resolve: (p: Packet) => void; reject: (e: Error) => void }[] = [];
  readonly closed: Promise<{ code: number }>;

  private constructor(
    readonly ws: WebSocket,
    readonly version: 3 | 4 | 5,
  ) {
    const parser = mqttPacket.parser({ protocolVersion: version });
    parser.on("packet", (p: Packet) => this.push(p));
    ws.on("message", (data: Buffer) => parser.parse(data));
    this.closed = new Promise((resolve) => {
      ws.on("close", (code) => {
        for (const w of this.waiters) w.reject(new Error("connection closed"));
        this.waiters = [];
        resolve({ code });
      });
    });
  }

  static async open(url: string, version: 3 | 4 | 5 = 4): Promise<RawClient> {
    const ws = new WebSocket(url, "mqtt");
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return new RawClient(ws, version);
  }

  /** Opens a socket, sends CONNECT and returns the client with its CONNACK. */
  static async connect(url: string, connect: Partial<mqttPacket.IConnectPacket> & { clientId: string }, version: 3 | 4 | 5 = 4) {
    const client = await RawClient.open(url, version);
    client.send({ cmd: "connect", protocolVersion: version, protocolId: "MQTT", clean: true, keepalive: 0, ...connect } as mqttPacket.IConnectPacket);
    const connack = (await client.next("connack")) as mqttPacket.IConnackPacket;
    return { client, connack };
  }

  send(packet: Packet): void {
    this.ws.send(mqttPacket.generate(packet, { protocolVersion: this.version }));
  }

  sendBytes(bytes: Uint8Array | number[]): void {
    this.ws.send(Buffer.from(bytes as Uint8Array));
  }

  /** The next packet (of type `cmd`, skipping others only if they are not of that type). */
  next(cmd?: string, timeoutMs = 5000): Promise<Packet> {
    const i = this.queue.findIndex((p) => !cmd || p.cmd === cmd);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const waiter = {
        cmd,
        resolve: (p: Packet) => {
          clearTimeout(timer);
          resolve(p);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out waiting for ${cmd ?? "a packet"}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Packets received and not yet taken. */
  pending(): Packet[] {
    return [...this.queue];
  }

  private push(p: Packet): void {
    const i = this.waiters.findIndex((w) => !w.cmd || w.cmd === p.cmd);
    if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(p);
    else this.queue.push(p);
  }

  /** Drops the TCP connection without a close frame (the broker sees 1006). */
  destroy(): Promise<{ code: number }> {
    this.ws.terminate();
    return this.closed;
  }

  end(): Promise<{ code: number }> {
    this.ws.close(1000);
    return this.closed;
  }
}
