// What the session layer needs of a client's connection: its state, the limits it announced,
// its read rights, and a way to send. The broker's Connection (broker/connection.ts) is one;
// keeping this an interface keeps sessions, delivery and rights below the broker layer.
import type { Packet, ProtocolVersion } from "../protocol/codec";
import type { TopicAcl } from "../auth/acl";

export interface Peer {
  readonly state: "awaiting-connect" | "connected" | "closed";
  readonly version: ProtocolVersion;
  readonly clientId: string;
  /** the client's Receive Maximum: cap on our unacknowledged QoS 1/2 sends */
  readonly receiveMaximum: number;
  /** the client's Maximum Packet Size */
  readonly maxPacketSize: number;
  /** MQTT 5: the client's Topic Alias Maximum, and the aliases we chose towards it */
  readonly topicAliasMaximum: number;
  outboundAliases: Map<string, number> | null;
  /** read rights (null: unrestricted) */
  readonly readAcl: TopicAcl | null;
  publishAcl: TopicAcl | null;
  send(packet: Packet): void;
  /** false when not sent (closed, or over the client's maximum) */
  sendBytes(bytes: Uint8Array): boolean;
  /** packets sent until uncork() leave as one frame */
  cork(): void;
  uncork(): void;
}
