// A small MQTT client state machine (3.1.1 and 5), one per side of a bridge: CONNECT/CONNACK,
// SUBSCRIBE/SUBACK, the QoS 1/2 flows both ways, PINGREQ. It owns no socket and no timer: bytes
// come in through receive(), go out through the Channel, and tick(now) drives the keep-alive, so
// it runs the same in a Durable Object and in a unit test. It never retransmits by itself: a
// broken link is closed and rebuilt, and the senders' sessions resend what was not acknowledged.
import { Buffer } from "node:buffer";
import { Decoder, encode, type Packet, type PublishPacket, type PublishProperties } from "./wire";
import type { QoS } from "./config";

export interface Channel {
  send(bytes: Uint8Array): void;
  close(): void;
}

export interface Message {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: PublishProperties;
}

export interface ClientEvents {
  /**
   * A PUBLISH arrived. `ack` acknowledges it (QoS 1: PUBACK, QoS 2: PUBREC; the PUBREL that
   * follows is answered here); call it once the message is safe elsewhere. QoS 0: a no-op.
   */
  message(msg: Message, ack: () => void): void;
  /** The connection ended (once): why, for the status. */
  closed(reason: string): void;
}

export interface ConnectOptions {
  clientId: string;
  clean: boolean;
  keepalive: number;
  username?: string;
  password?: string;
  /** MQTT 3.1.1: the bridge bit in the protocol version (Mosquitto's try_private) */
  bridgeMode?: boolean;
  properties?: NonNullable<import("mqtt-packet").IConnectPacket["properties"]>;
}

export interface Subscription {
  topic: string;
  qos: QoS;
  /** MQTT 5 subscription options */
  nl?: boolean;
  rap?: boolean;
  rh?: 0 | 1 | 2;
}

/** What the server said in CONNACK that matters to a client. */
export interface Connected {
  sessionPresent: boolean;
  /** the keep-alive in force (a v5 server's Server Keep Alive wins) */
  keepalive: number;
  /** the server's Receive Maximum (v5), or 65535 */
  receiveMaximum: number;
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
}

const CONNACK_V4 = ["", "unacceptable protocol version", "client id rejected", "server unavailable", "bad user name or password", "not authorized"];
const REASONS_V5: Record<number, string> = {
  0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error", 0x83: "implementation specific error",
  0x84: "unsupported protocol version", 0x85: "client id not valid", 0x86: "bad user name or password", 0x87: "not authorized",
  0x88: "server unavailable", 0x89: "server busy", 0x8a: "banned", 0x8c: "bad authentication method", 0x95: "packet too large",
  0x97: "quota exceeded", 0x99: "payload format invalid", 0x9a: "retain not supported", 0x9b: "QoS not supported",
  0x9c: "use another server", 0x9d: "server moved", 0x9f: "connection rate exceeded",
};

export function reasonText(code: number, version: 4 | 5): string {
  const text = version === 5 ? REASONS_V5[code] : CONNACK_V4[code];
  return `${text ?? "refused"} (0x${code.toString(16).padStart(2, "0")})`;
}

export class MqttClient {
  state: "new" | "connecting" | "connected" | "closed" = "new";
  keepalive = 0;
  receiveMaximum = 65535;
  /** the server's Maximum Packet Size (MQTT 5 CONNACK); none announced: no limit known */
  maximumPacketSize = Infinity;
  private readonly decoder: Decoder;
  private connecting: Pending | null = null;
  /** our QoS 1/2 PUBLISH (and SUBSCRIBE) waiting for their answer, by packet id */
  private readonly outgoing = new Map<number, Pending>();
  /** QoS 2 sends past PUBREC, waiting for PUBCOMP */
  private readonly releasing = new Set<number>();
  /** inbound QoS 1/2 not acknowledged yet (a resent duplicate is not handed over again) */
  private readonly unacked = new Set<number>();
  /** inbound QoS 2 past our PUBREC, waiting for PUBREL */
  private readonly received = new Set<number>();
  private nextId = 1;
  private lastSent = 0;
  private lastReceived = 0;
  private pingSent = false;
  private closeReason: string | null = null;

  constructor(
    private readonly channel: Channel,
    readonly version: 4 | 5,
    private readonly events: ClientEvents,
    private readonly now: () => number = Date.now,
  ) {
    this.decoder = new Decoder(version, (p) => this.handle(p));
  }

  /** our unacknowledged QoS 1/2 messages */
  get inflight(): number {
    return this.outgoing.size + this.releasing.size;
  }

  connect(o: ConnectOptions): Promise<Connected> {
    this.state = "connecting";
    this.keepalive = o.keepalive;
    this.lastReceived = this.now();
    const packet: import("mqtt-packet").IConnectPacket & { bridgeMode?: boolean } = {
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: this.version,
      clientId: o.clientId,
      clean: o.clean,
      keepalive: o.keepalive,
    };
    if (o.username !== undefined) packet.username = o.username;
    if (o.password !== undefined) packet.password = Buffer.from(o.password) as never;
    if (o.bridgeMode && this.version === 4) packet.bridgeMode = true;
    if (this.version === 5 && o.properties) packet.properties = o.properties;
    return new Promise<Connected>((resolve, reject) => {
      this.connecting = { resolve: resolve as (v: unknown) => void, reject };
      this.send(packet);
    });
  }

  subscribe(subs: Subscription[]): Promise<number[]> {
    const id = this.allocate();
    const subscriptions = subs.map((s) => (this.version === 5 ? { topic: s.topic, qos: s.qos, nl: !!s.nl, rap: !!s.rap, rh: s.rh ?? 0 } : { topic: s.topic, qos: s.qos }));
    return new Promise<number[]>((resolve, reject) => {
      this.outgoing.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.send({ cmd: "subscribe", messageId: id, subscriptions } as Packet);
    });
  }

  unsubscribe(topics: string[]): Promise<void> {
    const id = this.allocate();
    return new Promise<void>((resolve, reject) => {
      this.outgoing.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.send({ cmd: "unsubscribe", messageId: id, unsubscriptions: topics } as Packet);
    });
  }

  /**
   * Sends a message. Resolves with the receiver's reason code once the receiver owns it: at
   * once for QoS 0, at PUBACK for QoS 1, at PUBREC for QoS 2 (the PUBREL/PUBCOMP that follow are
   * handled here). Rejects if the connection ends first.
   */
  publish(m: Message): Promise<number> {
    const payload = Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength); // mqtt-packet wants a Buffer
    const packet: PublishPacket = { cmd: "publish", topic: m.topic, payload, qos: m.qos, retain: m.retain, dup: false };
    if (this.version === 5 && m.properties) packet.properties = m.properties;
    if (m.qos > 0) packet.messageId = this.allocate();
    const bytes = encode(packet, this.version);
    // Over the server's Maximum Packet Size it would disconnect us, and the sender would resend
    // it for ever: refused here instead, as the server would (0x95 packet too large).
    if (bytes.byteLength > this.maximumPacketSize) return Promise.resolve(0x95);
    if (m.qos === 0) {
      this.sendBytes(bytes);
      return Promise.resolve(0);
    }
    const id = packet.messageId!;
    return new Promise<number>((resolve, reject) => {
      this.outgoing.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.sendBytes(bytes);
    });
  }

  /** Bytes from the socket. A broken stream closes the connection. */
  receive(bytes: Uint8Array): void {
    if (this.state === "closed") return;
    this.lastReceived = this.now();
    this.pingSent = false;
    try {
      this.decoder.feed(bytes);
    } catch (e) {
      this.close(`malformed packet from the server: ${(e as Error).message}`);
    }
  }

  /**
   * Keep-alive: a PINGREQ when we or the server have been quiet for most of a keep-alive period, and
   * the connection closed when the server has said nothing for 1.5 periods [MQTT-3.1.2-24].
   */
  tick(now: number): void {
    if (this.state !== "connected" || this.keepalive <= 0) return;
    const period = this.keepalive * 1000;
    if (now - this.lastReceived > period * 1.5) {
      this.close(`keep-alive timeout: the server answered nothing for ${Math.round((now - this.lastReceived) / 1000)} s`);
      return;
    }
    // at three quarters of the period: ticks are a second apart, and the server allows 1.5 periods
    const due = period * 0.75;
    if (!this.pingSent && (now - this.lastSent >= due || now - this.lastReceived >= due)) {
      this.pingSent = true;
      this.send({ cmd: "pingreq" });
    }
  }

  /** Ends the connection (idempotent): pending work is rejected, the channel closed, `closed` told. */
  close(reason: string, disconnect = false): void {
    if (this.state === "closed") return;
    if (disconnect && this.state === "connected") {
      try {
        this.send({ cmd: "disconnect" } as Packet);
      } catch {
        // the socket is gone already
      }
    }
    this.state = "closed";
    this.closeReason = reason;
    const err = new Error(reason);
    this.connecting?.reject(err);
    this.connecting = null;
    for (const p of this.outgoing.values()) p.reject(err);
    this.outgoing.clear();
    this.releasing.clear();
    try {
      this.channel.close();
    } catch {
      // already closed
    }
    this.events.closed(reason);
  }

  private handle(p: Packet): void {
    if (this.state === "closed") return;
    switch (p.cmd) {
      case "connack": {
        const code = this.version === 5 ? (p.reasonCode ?? 0) : (p.returnCode ?? 0);
        if (code !== 0) {
          this.close(`the server refused the connection: ${reasonText(code, this.version)}`); // rejects connect()
          return;
        }
        const pending = this.connecting;
        this.connecting = null;
        this.state = "connected";
        if (p.properties?.serverKeepAlive !== undefined) this.keepalive = p.properties.serverKeepAlive;
        this.receiveMaximum = p.properties?.receiveMaximum ?? 65535;
        this.maximumPacketSize = p.properties?.maximumPacketSize ?? Infinity;
        pending?.resolve({ sessionPresent: !!p.sessionPresent, keepalive: this.keepalive, receiveMaximum: this.receiveMaximum } satisfies Connected);
        return;
      }
      case "publish":
        return this.onPublish(p);
      case "puback":
      case "pubrec": {
        const pending = this.outgoing.get(p.messageId!);
        if (!pending) {
          // unknown id (e.g. from before a reconnect): answer a PUBREC so the server can finish
          if (p.cmd === "pubrec") this.send({ cmd: "pubrel", messageId: p.messageId! } as Packet);
          return;
        }
        this.outgoing.delete(p.messageId!);
        const code = p.reasonCode ?? 0;
        if (p.cmd === "pubrec" && code < 0x80) {
          this.releasing.add(p.messageId!);
          this.send({ cmd: "pubrel", messageId: p.messageId! } as Packet);
        }
        pending.resolve(code);
        return;
      }
      case "pubcomp":
        this.releasing.delete(p.messageId!);
        return;
      case "pubrel":
        this.received.delete(p.messageId!);
        this.send({ cmd: "pubcomp", messageId: p.messageId! } as Packet);
        return;
      case "suback": {
        const pending = this.outgoing.get(p.messageId!);
        this.outgoing.delete(p.messageId!);
        pending?.resolve(p.granted.map((g) => (typeof g === "number" ? g : (g as { qos: number }).qos)));
        return;
      }
      case "unsuback": {
        const pending = this.outgoing.get(p.messageId!);
        this.outgoing.delete(p.messageId!);
        pending?.resolve(undefined);
        return;
      }
      case "pingresp":
        return;
      case "disconnect": {
        const code = p.reasonCode ?? 0;
        const why = p.properties?.reasonString ? `: ${p.properties.reasonString}` : "";
        this.close(`the server disconnected the bridge: ${reasonText(code, 5)}${why}`);
        return;
      }
      default:
        this.close(`unexpected ${p.cmd} packet from the server`);
    }
  }

  private onPublish(p: PublishPacket): void {
    const id = p.messageId;
    const qos = p.qos;
    if (qos > 0 && id !== undefined) {
      // A resend of what we are still forwarding: its acknowledgement is on its way.
      if (this.unacked.has(id)) return;
      // A QoS 2 resend after our PUBREC (which the server missed): acknowledge again, not forward.
      if (qos === 2 && this.received.has(id)) {
        this.send({ cmd: "pubrec", messageId: id } as Packet);
        return;
      }
      this.unacked.add(id);
    }
    const msg: Message = { topic: p.topic, payload: toBytes(p.payload), qos, retain: p.retain };
    if (p.properties) msg.properties = p.properties;
    let acked = false;
    const ack = () => {
      if (acked || qos === 0 || id === undefined || this.state !== "connected") return;
      acked = true;
      this.unacked.delete(id);
      if (qos === 2) this.received.add(id);
      this.send({ cmd: qos === 1 ? "puback" : "pubrec", messageId: id } as Packet);
    };
    this.events.message(msg, ack);
  }

  private allocate(): number {
    for (let i = 0; i < 65535; i++) {
      const id = this.nextId;
      this.nextId = id === 65535 ? 1 : id + 1;
      if (!this.outgoing.has(id) && !this.releasing.has(id)) return id;
    }
    throw new Error("no free packet id");
  }

  private send(p: Packet): void {
    if (this.state === "closed") return;
    this.sendBytes(encode(p, this.version));
  }

  private sendBytes(bytes: Uint8Array): void {
    if (this.state === "closed") return;
    this.lastSent = this.now();
    this.channel.send(bytes);
  }

  /** why the connection ended, once it has */
  get reason(): string | null {
    return this.closeReason;
  }
}

function toBytes(payload: unknown): Uint8Array {
  if (payload instanceof Uint8Array) return payload;
  if (typeof payload === "string") return new TextEncoder().encode(payload);
  return new Uint8Array(0);
}
