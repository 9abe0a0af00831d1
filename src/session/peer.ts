// What the session layer needs of a client's connection: its state, the limits it announced,
// its read rights, and a way to send. The broker's Connection (broker/connection.ts) is one;
// keeping this an interface keeps sessions, delivery and rights below the broker layer.
import type { Packet, ProtocolVersion, QoS } from "../protocol/codec";
import type { TopicAcl } from "../auth/acl";
import type { Message } from "./message";

export interface Peer {
  readonly state: "awaiting-connect" | "connected" | "closed";
  readonly version: ProtocolVersion;
  readonly clientId: string;
  /** the client's Receive Maximum: cap on our unacknowledged QoS 1/2 sends */
  readonly receiveMaximum: number;
  /** read rights (null: unrestricted) */
  readonly readAcl: TopicAcl | null;
  publishAcl: TopicAcl | null;
  send(packet: Packet): void;
  /**
   * Sends one PUBLISH of `msg` (framing, topic aliases and per-client properties are the
   * connection's business); false when it would exceed the client's Maximum Packet Size.
   */
  sendPublish(msg: Message, qos: QoS, retain: boolean, subIds: number[] | null, packetId: number, dup: boolean, now: number): boolean;
  /** packets sent until uncork() leave as one frame */
  cork(): void;
  uncork(): void;
}
