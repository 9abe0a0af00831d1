// Inbound QoS 2 packet ids between PUBLISH and PUBREL [MQTT-4.3.3-10]: a retransmission in
// that window is acknowledged but not delivered again. Stored for durable sessions so this
// holds across a restart.
import type { Session } from "./session";
import type { Store } from "../storage/store";

export function isInboundQos2Pending(session: Session, packetId: number): boolean {
  return session.inboundQos2.has(packetId);
}

export function rememberInboundQos2(store: Store, session: Session, packetId: number): void {
  session.inboundQos2.add(packetId);
  if (session.durable) store.addInboundQos2(session.clientId, packetId);
}

/** PUBREL: forgets the id; returns whether it was known. */
export function releaseInboundQos2(store: Store, session: Session, packetId: number): boolean {
  const known = session.inboundQos2.delete(packetId);
  if (known && session.durable) store.deleteInboundQos2(session.clientId, packetId);
  return known;
}
