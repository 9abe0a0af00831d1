import type { BrokerCore } from "../broker/core";
import type { Connection } from "../broker/connection";
import { RC } from "../protocol/reason-codes";
import { complete, onPubcomp, onPuback, onPubrec } from "../session/delivery";
import { releaseInboundQos2 } from "../session/inbound";

// Acknowledgements of our QoS 1/2 sends, and PUBREL of the client's QoS 2 sends.

export function handlePuback(core: BrokerCore, conn: Connection, packetId: number): void {
  onPuback(core, conn.session!, packetId);
}

export function handlePubrec(core: BrokerCore, conn: Connection, packetId: number, reasonCode: number | undefined): void {
  const session = conn.session!;
  if (reasonCode !== undefined && reasonCode >= 0x80) {
    // MQTT 5: the client refused the message; the exchange ends here [MQTT-4.3.3-4]
    const f = session.inflight.get(packetId);
    if (f && f.qos === 2 && !f.released) complete(core, session, packetId, f.seq);
    return;
  }
  const known = onPubrec(core, session, packetId);
  conn.send({ cmd: "pubrel", messageId: packetId, reasonCode: known ? RC.SUCCESS : RC.PACKET_IDENTIFIER_NOT_FOUND });
}

export function handlePubcomp(core: BrokerCore, conn: Connection, packetId: number): void {
  onPubcomp(core, conn.session!, packetId);
}

export function handlePubrel(core: BrokerCore, conn: Connection, packetId: number): void {
  const session = conn.session!;
  const known = releaseInboundQos2(core.store, session, packetId);
  conn.send({ cmd: "pubcomp", messageId: packetId, reasonCode: known ? RC.SUCCESS : RC.PACKET_IDENTIFIER_NOT_FOUND });
}
