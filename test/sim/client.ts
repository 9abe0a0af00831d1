// A scriptable MQTT client for the simulated broker: it encodes with mqtt-packet, records every
// packet it gets, and acknowledges PUBLISH as told (at once, or held until `releaseAcks`).
import * as mqtt from "mqtt-packet";
import type { SimSocket } from "./broker";

/** What a client needs of the runtime it connects to: a SimBroker, or one shard of a SimCluster. */
export interface ClientLink {
  open(onBytes: (b: Uint8Array) => void, onClose: (code: number, reason: string) => void, bridge?: string): SimSocket;
  receive(socket: SimSocket, bytes: Uint8Array): void;
  drop(socket: SimSocket): void;
}

export interface Received {
  /** false for a QoS 2 PUBLISH whose packet id the client already holds (a re-send it discards) */
  fresh: boolean;
  topic: string;
  payload: string;
  qos: 0 | 1 | 2;
  retain: boolean;
  dup: boolean;
  packetId?: number;
  properties?: mqtt.IPublishPacket["properties"];
}

export interface ConnectOptions {
  version?: 4 | 5;
  clean?: boolean;
  /** MQTT 5 Session Expiry Interval */
  expiry?: number;
  keepalive?: number;
  receiveMaximum?: number;
  maximumPacketSize?: number;
  will?: { topic: string; payload: string; qos?: 0 | 1 | 2; retain?: boolean; delay?: number };
  username?: string;
  password?: string;
}

export class SimClient {
  socket: SimSocket | null = null;
  version: 4 | 5 = 4;
  packets: mqtt.Packet[] = [];
  received: Received[] = [];
  /** the QoS 1/2 PUBLISH we acknowledged (PUBACK or PUBREC sent), in order */
  acknowledged: { topic: string; payload: string; retain: boolean }[] = [];
  connack: mqtt.IConnackPacket | null = null;
  closed: { code: number; reason: string } | null = null;
  /** false: a PUBREC for our QoS 2 PUBLISH is not answered with PUBREL (the exchange stays open) */
  releaseOnPubrec = true;
  /** "auto": acknowledge each PUBLISH at once; "hold": keep them for releaseAcks() */
  ackMode: "auto" | "hold" = "auto";
  /** QoS 2 PUBLISH received and not yet released by PUBREL (the client's own exactly-once record) */
  readonly inboundQos2 = new Set<number>();
  /** the frames the broker sent on the current socket, as they came */
  frames: Uint8Array[] = [];
  /** what the client's parser could not read (the broker sent something malformed) */
  parseErrors: string[] = [];
  private held: mqtt.Packet[] = [];
  private parsing = 0;
  private outbox: mqtt.Packet[] = [];
  private nextId = 1;
  /** set: the socket is a bridge object's own (the X-MQTT-Bridge header names this bridge) */
  bridge: string | undefined;

  constructor(
    readonly broker: ClientLink,
    readonly clientId: string,
  ) {}

  get connected(): boolean {
    return this.socket !== null && this.connack !== null && !this.closed && (this.connack.reasonCode ?? this.connack.returnCode ?? 0) === 0;
  }

  /**
   * Opens a socket without sending CONNECT (for tests of what comes first). `version` is how the
   * client parses what the broker sends.
   */
  open(version: 4 | 5 = 4): void {
    this.version = version;
    this.connack = null;
    this.closed = null;
    this.held = [];
    this.frames = [];
    const parser = mqtt.parser({ protocolVersion: this.version });
    parser.on("packet", (p) => this.onPacket(p));
    parser.on("error", (e: Error) => this.parseErrors.push(e.message));
    // mqtt-packet's parser is not re-entrant: what we answer while it parses leaves afterwards
    const onBytes = (b: Uint8Array) => {
      this.frames.push(b.slice());
      this.parsing++;
      try {
        parser.parse(Buffer.from(b));
      } finally {
        this.parsing--;
      }
      if (this.parsing === 0) this.flushOutbox();
    };
    const socket = this.broker.open(
      onBytes,
      (code, reason) => {
        if (this.socket === socket) this.closed = { code, reason }; // not an older socket of ours closing
      },
      this.bridge,
    );
    this.socket = socket;
  }

  /** Bytes as they are, no encoder in between (malformed packets, several packets in one frame). */
  sendRaw(bytes: Uint8Array | number[]): void {
    if (!this.socket || this.closed) return;
    this.broker.receive(this.socket, bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes));
  }

  /** The reason code of the DISCONNECT the broker sent (MQTT 5), undefined when none came. */
  get disconnectReason(): number | undefined {
    const d = this.packets.find((p) => p.cmd === "disconnect") as mqtt.IDisconnectPacket | undefined;
    return d ? (d.reasonCode ?? 0) : undefined;
  }

  connect(opts: ConnectOptions = {}): mqtt.IConnackPacket | null {
    this.open(opts.version ?? 4);
    const packet: mqtt.IConnectPacket = {
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: this.version,
      clientId: this.clientId,
      clean: opts.clean ?? true,
      keepalive: opts.keepalive ?? 0,
    };
    if (opts.username !== undefined) packet.username = opts.username;
    if (opts.password !== undefined) packet.password = Buffer.from(opts.password);
    if (this.version === 5) {
      packet.properties = {};
      if (opts.expiry !== undefined) packet.properties.sessionExpiryInterval = opts.expiry;
      if (opts.receiveMaximum !== undefined) packet.properties.receiveMaximum = opts.receiveMaximum;
      if (opts.maximumPacketSize !== undefined) packet.properties.maximumPacketSize = opts.maximumPacketSize;
    }
    if (opts.will) {
      packet.will = { topic: opts.will.topic, payload: Buffer.from(opts.will.payload), qos: opts.will.qos ?? 0, retain: opts.will.retain ?? false };
      if (this.version === 5 && opts.will.delay) packet.will.properties = { willDelayInterval: opts.will.delay };
    }
    this.send(packet);
    return this.connack;
  }

  subscribe(filter: string, qos: 0 | 1 | 2 = 1, opts: { nl?: boolean; rap?: boolean; rh?: number; id?: number } = {}): number[] {
    const messageId = this.id();
    const sub: mqtt.ISubscription = { topic: filter, qos };
    if (this.version === 5) Object.assign(sub, { nl: opts.nl ?? false, rap: opts.rap ?? false, rh: opts.rh ?? 0 });
    const packet: mqtt.ISubscribePacket = { cmd: "subscribe", messageId, subscriptions: [sub] };
    if (opts.id && this.version === 5) packet.properties = { subscriptionIdentifier: opts.id };
    const before = this.packets.length;
    this.send(packet);
    const ack = this.packets.slice(before).find((p) => p.cmd === "suback" && p.messageId === messageId) as mqtt.ISubackPacket | undefined;
    return ack ? ack.granted.map((g) => (typeof g === "number" ? g : (g as { qos: number }).qos)) : [];
  }

  publish(topic: string, payload: string, qos: 0 | 1 | 2 = 0, retain = false, properties?: mqtt.IPublishPacket["properties"]): number | undefined {
    const messageId = qos > 0 ? this.id() : undefined;
    const packet: mqtt.IPublishPacket = { cmd: "publish", topic, payload: Buffer.from(payload), qos, retain, dup: false, messageId };
    if (properties && this.version === 5) packet.properties = properties;
    this.send(packet);
    return messageId;
  }

  /** The acknowledgement the broker sent for our PUBLISH `id` (PUBACK, or PUBREC then PUBCOMP). */
  ackOf(id: number): mqtt.Packet | undefined {
    return this.packets.find((p) => (p.cmd === "puback" || p.cmd === "pubcomp") && p.messageId === id);
  }

  disconnect(reasonCode = 0): void {
    const packet: mqtt.IDisconnectPacket = { cmd: "disconnect" };
    if (this.version === 5) packet.reasonCode = reasonCode;
    this.send(packet);
  }

  /** The socket goes away without DISCONNECT. */
  drop(): void {
    if (this.socket) this.broker.drop(this.socket);
    this.closed ??= { code: 1006, reason: "dropped" };
  }

  /** Sends the acknowledgements held so far (in order). */
  releaseAcks(): void {
    const held = this.held;
    this.held = [];
    for (const p of held) this.ack(p);
  }

  get heldCount(): number {
    return this.held.length;
  }

  send(packet: mqtt.Packet): void {
    if (this.parsing > 0) {
      this.outbox.push(packet);
      return;
    }
    if (!this.socket || this.closed) return;
    const bytes = mqtt.generate(packet, { protocolVersion: this.version });
    this.broker.receive(this.socket, new Uint8Array(bytes));
  }

  private flushOutbox(): void {
    while (this.outbox.length) this.send(this.outbox.shift()!);
  }

  private id(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= 65535 ? 1 : this.nextId + 1;
    return id;
  }

  private onPacket(p: mqtt.Packet): void {
    this.packets.push(p);
    if (p.cmd === "connack") {
      this.connack = p;
      if (!p.sessionPresent) this.inboundQos2.clear(); // a new session: nothing is pending
    }
    if (p.cmd === "publish") {
      const fresh = p.qos !== 2 || !this.inboundQos2.has(p.messageId!);
      if (p.qos === 2) this.inboundQos2.add(p.messageId!); // delivered on receipt; PUBREL forgets the id
      this.received.push({
        fresh,
        topic: p.topic,
        payload: Buffer.from(p.payload as Buffer).toString(),
        qos: p.qos,
        retain: p.retain,
        dup: p.dup,
        packetId: p.messageId,
        properties: p.properties,
      });
      if (p.qos > 0) {
        if (this.ackMode === "auto") this.ack(p);
        else this.held.push(p);
      }
    }
    if (p.cmd === "pubrec" && this.releaseOnPubrec) this.send({ cmd: "pubrel", messageId: p.messageId! });
    if (p.cmd === "pubrel") {
      this.inboundQos2.delete(p.messageId!);
      this.send({ cmd: "pubcomp", messageId: p.messageId! });
    }
  }

  private ack(p: mqtt.Packet): void {
    if (p.cmd !== "publish" || !this.socket || this.closed) return;
    this.acknowledged.push({ topic: p.topic, payload: Buffer.from(p.payload as Buffer).toString(), retain: p.retain });
    if (p.qos === 1) this.send({ cmd: "puback", messageId: p.messageId! });
    if (p.qos === 2) this.send({ cmd: "pubrec", messageId: p.messageId! });
  }
}
