import { MAX_MQTT_PACKET, MAX_PACKET_ID } from "../protocol/limits";
import type { BrokerConfig } from "../config";
import { PacketReader, encode, publishIdOffset, withPacketId, type Packet, type ProtocolVersion, type QoS } from "../protocol/codec";
import { encodedPublish, type Message } from "../session/message";
import type { Session } from "../session/session";
import type { Peer } from "../session/peer";
import { keepAliveDeadline } from "../timers/deadlines";
import type { TopicAcl } from "../auth/acl";
import type { Grant } from "../auth/grant";
import { TokenBucket } from "../limits/token-bucket";
import { Counters } from "./counters";

/** What the runtime gives a connection: a socket to write to and a place that survives hibernation. */
export interface Transport {
  send(bytes: Uint8Array): void;
  close(code: number, reason: string): void;
  saveAttachment(attachment: Attachment): void;
}

/**
 * The per-socket record kept in the WebSocket attachment (≤ 16 KiB), so an object woken from
 * hibernation understands the socket again. Short keys: it is serialized often.
 */
export interface Attachment {
  /** client id, once CONNECT was accepted */
  cid?: string;
  /** protocol version */
  v?: ProtocolVersion;
  /** keep-alive seconds */
  ka?: number;
  /** last time (ms) a packet was seen, refreshed at most every quarter keep-alive */
  seen: number;
  /** when the socket was opened (ms) */
  at: number;
  /** MQTT 5: client's Receive Maximum, Maximum Packet Size, Topic Alias Maximum */
  rm?: number;
  mps?: number;
  tam?: number;
  /** MQTT 5: Request Problem Information was 0 */
  npi?: 1;
  /** MQTT 5: topic aliases the client set towards us */
  ta?: [number, string][];
  /** ...kept in storage instead: they did not fit in the attachment */
  tas?: 1;
  /** what authentication granted (user name, topic patterns), to rebuild the rights after a wake */
  g?: Grant;
  /** the broker closed this socket: a wake that still finds it must not let it hold a session */
  x?: 1;
  /** the client's source address (CF-Connecting-IP), kept until CONNECT is accepted */
  ip?: string;
  /** the bridge (name) this internal socket belongs to (bridge/): no publish rate limit */
  br?: string;
  /** a tunnel's entrance: the id of the tunnel and the home shard its frames go to (src/shards/node.ts) */
  tn?: string;
  th?: number;
}

/** a batch of packets is sent as soon as it reaches this size, even while corked */
const MAX_BATCH_BYTES = 64 * 1024;

export type ConnectionState = "awaiting-connect" | "connected" | "closed";

/**
 * Why a connection ended, recorded where that is decided (core.fail: the broker's reason code;
 * the DISCONNECT handler: the client's); none recorded means the socket was lost. Read by the
 * lifecycle events (lifecycle.ts).
 */
export interface ConnectionEnd {
  /** the MQTT reason code; null when no packet carried one (socket lost, server restart) */
  code: number | null;
  by: "client" | "server" | "socket" | "restart";
}

/**
 * The Connection holding a session. Sessions know their connection as a Peer (session/peer.ts);
 * the only Peer the broker ever attaches is its own Connection, so the broker layer may see it whole.
 */
export function connectionOf(session: Session): Connection | null {
  return session.conn as Connection | null;
}

/** One live WebSocket: its parser, its keep-alive clock and the session it holds. */
export class Connection implements Peer {
  state: ConnectionState = "awaiting-connect";
  version: ProtocolVersion = 4;
  clientId = "";
  keepalive = 0;
  lastSeen: number;
  readonly openedAt: number;
  /** the client's source address (CF-Connecting-IP), for the login throttle; until CONNECT is accepted */
  address: string | undefined;
  /** the bridge this socket belongs to (an internal client, authenticated by where it came from) */
  bridge: string | undefined;
  session: Session | null = null;
  /** client's Receive Maximum: cap on our unacknowledged QoS 1/2 sends */
  receiveMaximum = MAX_PACKET_ID;
  /** client's Maximum Packet Size */
  maxPacketSize = MAX_MQTT_PACKET;
  /** MQTT 5 topic aliases the client set towards us (kept in the attachment across hibernation) */
  inboundAliases: Map<number, string> | null = null;
  /** the inbound aliases outgrew the attachment and live in storage (loaded again at a wake) */
  aliasesStored = false;
  /** MQTT 5: the client's Topic Alias Maximum, and the aliases we chose towards it */
  topicAliasMaximum = 0;
  outboundAliases: Map<string, number> | null = null;
  /** MQTT 5 Request Problem Information: may we add Reason Strings to acknowledgements */
  problemInformation = true;
  /** set when the client ended with DISCONNECT (no will, unless reason 0x04) */
  disconnected = false;
  /** why the connection ended, once decided (null while open, and for a lost socket) */
  end: ConnectionEnd | null = null;
  reader: PacketReader;
  /** the dispatcher bound to this connection, made once rather than per frame */
  onPacket: ((packet: Packet, size: number) => void) | null = null;
  /** what authentication granted, and its compiled ACLs (null: unrestricted); see auth/ */
  grant: Grant = {};
  publishAcl: TopicAcl | null = null;
  readAcl: TopicAcl | null = null;
  /** while CONNECT is being verified (asynchronously): the packets that arrived after it */
  authQueue: Packet[] | null = null;
  authWork: Promise<void> | null = null;
  /** a SUBACK waiting for the namespace's other shards (handlers/subscribe.ts); later SUBACKs wait behind it */
  subackWait: Promise<void> | null = null;
  /** bytes of the CONNECT being verified, and of the packets held behind it (dispatcher.ts) */
  connectBytes = 0;
  heldBytes = 0;
  /** this socket's share of the namespace's bytes held for sockets not yet connected (core.holdPending) */
  pendingBytes = 0;
  /** inbound PUBLISH rate limit */
  readonly publishRate: TokenBucket;
  private seenSaved: number;
  /** while > 0, sent packets gather in `batch` and leave together as one frame (see cork) */
  private corked = 0;
  private batch: Uint8Array[] | null = null;
  private batchBytes = 0;

  constructor(
    readonly transport: Transport,
    private readonly config: BrokerConfig,
    attachment: Attachment,
    /** the broker's traffic counters (a private set when none is given, e.g. in unit tests) */
    private readonly counters: Counters = new Counters(0),
  ) {
    this.openedAt = attachment.at;
    this.address = attachment.ip;
    this.bridge = attachment.br;
    this.lastSeen = attachment.seen;
    this.seenSaved = attachment.seen;
    if (attachment.x === 1) this.state = "closed";
    else if (attachment.cid !== undefined) {
      this.state = "connected";
      this.clientId = attachment.cid;
      this.version = attachment.v ?? 4;
      this.keepalive = attachment.ka ?? 0;
      this.receiveMaximum = attachment.rm ?? MAX_PACKET_ID;
      this.maxPacketSize = attachment.mps ?? MAX_MQTT_PACKET;
      this.grant = attachment.g ?? {};
      this.topicAliasMaximum = attachment.tam ?? 0;
      this.problemInformation = attachment.npi !== 1;
      if (attachment.ta) this.inboundAliases = new Map(attachment.ta);
      this.aliasesStored = attachment.tas === 1;
    }
    // A bridge carries many publishers' messages, paced by the remote and its in-flight window.
    this.publishRate = new TokenBucket(this.bridge === undefined ? config.MAX_PUBLISH_RATE : 0, config.PUBLISH_BURST);
    // A parser is stateful; after hibernation it is rebuilt for the known version (partial bytes
    // of a packet that straddled hibernation are lost; the next bytes then fail to parse).
    this.reader = new PacketReader(attachment.cid !== undefined ? this.version : undefined, config.MAX_PACKET_SIZE, config.MAX_CONNECT_PACKET_SIZE);
  }

  /** Marks activity. The attachment is refreshed at most every quarter keep-alive, not per packet. */
  touch(now: number): void {
    this.lastSeen = now;
    if (this.keepalive > 0 && now - this.seenSaved > this.keepalive * 250) this.save();
  }

  /** The keep-alive deadline: 1.5 × keep-alive after the last packet [MQTT-3.1.2-24]. */
  get deadline(): number | null {
    return this.state === "connected" ? keepAliveDeadline(this.lastSeen, this.keepalive) : null;
  }

  /** When the token it connected with expires (ms; from the attachment after a wake): it is cut then. */
  get tokenDeadline(): number | null {
    return this.state === "connected" && this.grant.exp !== undefined ? this.grant.exp * 1000 : null;
  }

  accept(clientId: string, version: ProtocolVersion, keepalive: number): void {
    this.state = "connected";
    this.clientId = clientId;
    this.version = version;
    this.keepalive = keepalive;
    this.save();
  }

  /** Refreshes the attachment; false when the topic aliases did not fit and were left out. */
  save(): boolean {
    this.seenSaved = this.lastSeen;
    const a: Attachment = { seen: this.lastSeen, at: this.openedAt };
    if (this.state !== "awaiting-connect") {
      a.cid = this.clientId;
      a.v = this.version;
      a.ka = this.keepalive;
      if (this.receiveMaximum !== MAX_PACKET_ID) a.rm = this.receiveMaximum;
      if (this.maxPacketSize !== MAX_MQTT_PACKET) a.mps = this.maxPacketSize;
      const g = this.grant;
      if (g.username !== undefined || g.publish || g.subscribe || g.deny || g.exp !== undefined) a.g = g;
      if (this.topicAliasMaximum) a.tam = this.topicAliasMaximum;
      if (!this.problemInformation) a.npi = 1;
      // once in storage, the aliases stay there (each change is one row: handlers/publish.ts)
      if (this.aliasesStored) a.tas = 1;
      else if (this.inboundAliases?.size) a.ta = [...this.inboundAliases];
    } else if (this.address !== undefined) a.ip = this.address;
    if (this.bridge !== undefined) a.br = this.bridge;
    try {
      this.transport.saveAttachment(a);
      return !this.aliasesStored;
    } catch {
      // Too large for an attachment (very long aliased topics): the aliases go to storage.
      delete a.ta;
      a.tas = 1;
      this.transport.saveAttachment(a);
      this.aliasesStored = true;
      return false;
    }
  }

  send(packet: Packet): void {
    let bytes = encode(packet, this.version);
    const props = (packet as { properties?: { reasonString?: string } }).properties;
    if (bytes.byteLength > this.maxPacketSize && props?.reasonString !== undefined) {
      // A Reason String is optional: left out rather than exceed the client's maximum [MQTT-3.2.2-19, 3.4.2-2, 3.14.2-3]
      const { reasonString: _omitted, ...rest } = props;
      bytes = encode({ ...packet, properties: rest } as Packet, this.version);
    }
    this.sendBytes(bytes);
  }

  /** Sends bytes; returns false when the packet was not sent (closed, or over the client's maximum). */
  sendBytes(bytes: Uint8Array): boolean {
    if (this.state === "closed") return false;
    if (bytes.byteLength > this.maxPacketSize) return false; // [MQTT-3.1.2-25] never exceed the client's maximum
    this.counters.bytesSent += bytes.byteLength;
    if (this.corked > 0) {
      (this.batch ??= []).push(bytes);
      this.batchBytes += bytes.byteLength;
      if (this.batchBytes >= MAX_BATCH_BYTES) this.flush();
      return true;
    }
    return this.write(bytes);
  }

  /**
   * Sends one PUBLISH of `msg`: the shared encoding, patched with the packet id, unless it needs
   * properties of its own for this client. False when it would exceed the client's Maximum Packet
   * Size: it is then not sent [MQTT-3.1.2-25].
   */
  sendPublish(msg: Message, qos: QoS, retain: boolean, subIds: number[] | null, packetId: number, dup: boolean, now: number): boolean {
    const bytes = this.publishBytes(msg, qos, retain, subIds, packetId, dup, now);
    if (bytes === null) return false;
    if (this.sendBytes(bytes)) {
      const c = this.counters;
      c.messagesSent++;
      c.sentByQos[qos]!++;
      c.sentBytesByQos[qos]! += msg.payload.byteLength;
    }
    return true;
  }

  /**
   * The bytes of one PUBLISH to one connection: the shared encoding unless it needs its own
   * properties (subscription ids, a decremented expiry, a topic alias). Null when the packet would
   * exceed the client's Maximum Packet Size: it is then not sent to that client [MQTT-3.1.2-25].
   */
  private publishBytes(msg: Message, qos: QoS, retain: boolean, subIds: number[] | null, packetId: number, dup: boolean, now: number): Uint8Array | null {
    let bytes: Uint8Array;
    if (this.version === 5) {
      // forward the expiry interval less the time the message waited [MQTT-3.3.2-6]
      const expiry = msg.expiresAt !== undefined ? Math.max(1, Math.ceil((msg.expiresAt - now) / 1000)) : undefined;
      const alias = this.topicAliasMaximum > 0 ? this.outboundAlias(msg.topic) : null;
      if (subIds !== null || alias !== null || (expiry !== undefined && expiry !== msg.properties?.messageExpiryInterval)) {
        const properties = { ...msg.properties };
        if (subIds) properties.subscriptionIdentifier = subIds.length === 1 ? subIds[0]! : subIds;
        if (expiry !== undefined) properties.messageExpiryInterval = expiry;
        if (alias) properties.topicAlias = alias.id;
        bytes = encode(
          { cmd: "publish", topic: alias?.known ? "" : msg.topic, payload: msg.payload as Buffer, qos, retain, dup, messageId: qos > 0 ? packetId : undefined, properties },
          5,
        );
        if (bytes.byteLength > this.maxPacketSize) return null;
        if (alias && !alias.known) this.outboundAliases!.set(msg.topic, alias.id); // the client learns it with this packet
        return bytes;
      }
    }
    const base = encodedPublish(msg, this.version, qos, retain);
    bytes = qos === 0 ? base : withPacketId(base, publishIdOffset(base), packetId, dup);
    return bytes.byteLength > this.maxPacketSize ? null : bytes;
  }

  /** Outbound topic aliases: the first Topic Alias Maximum distinct topics get one, for the connection's life. */
  private outboundAlias(topic: string): { id: number; known: boolean } | null {
    const aliases = (this.outboundAliases ??= new Map());
    const id = aliases.get(topic);
    if (id !== undefined) return { id, known: true };
    if (aliases.size >= this.topicAliasMaximum) return null;
    return { id: aliases.size + 1, known: false };
  }

  /**
   * Until the matching uncork(), packets sent to this connection gather and then leave as one
   * WebSocket frame: a turn that sends many (a queue drained, retained messages, acknowledgements
   * of a frame of packets) pays the runtime's per-frame cost once. A frame may hold several MQTT
   * packets [MQTT-6.0.0-2]. Calls nest; callers uncork in `finally`.
   */
  cork(): void {
    this.corked++;
  }

  uncork(): void {
    if (--this.corked === 0) this.flush();
  }

  /** Sends what has gathered now, as one frame; later packets gather again while corked. */
  flush(): void {
    if (this.batchBytes === 0) return;
    const parts = this.batch!;
    let bytes = parts[0]!;
    if (parts.length > 1) {
      bytes = new Uint8Array(this.batchBytes);
      let at = 0;
      for (const part of parts) {
        bytes.set(part, at);
        at += part.byteLength;
      }
    }
    parts.length = 0;
    this.batchBytes = 0;
    this.write(bytes);
  }

  private write(bytes: Uint8Array): boolean {
    try {
      this.transport.send(bytes);
      return true;
    } catch {
      // The socket is already gone; its close event will follow and clean up.
      return false;
    }
  }

  close(code = 1000, reason = ""): void {
    if (this.state === "closed") return;
    this.flush(); // what was sent before the close goes first
    this.state = "closed";
    try {
      // The runtime may still list the socket while its close completes: a wake must know it is done.
      this.transport.saveAttachment({ seen: this.lastSeen, at: this.openedAt, x: 1 });
    } catch {
      // already gone
    }
    try {
      this.transport.close(code, reason);
    } catch {
      // Already closed, or a reason over the 123 bytes a close frame allows: close without it.
      try {
        this.transport.close(code, "");
      } catch {
        // already closed
      }
    }
  }
}
