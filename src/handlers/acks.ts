import type { HandlerContext } from "./context";
import type { Connection } from "../broker/connection";
import { RC } from "../protocol/reason-codes";
import type { Session } from "../session/session";
import { complete, onPubcomp, onPuback, onPubrec } from "../session/delivery";
import { releaseInboundQos2 } from "../session/inbound";

// Acknowledgements of our QoS 1/2 sends, and PUBREL of the client's QoS 2 sends.

export function handlePuback(ctx: HandlerContext, session: Session, packetId: number): void {
  onPuback(ctx, session, packetId);
}

export function handlePubrec(ctx: HandlerContext, conn: Connection, session: Session, packetId: number, reasonCode: number | undefined): void {
  if (reasonCode !== undefined && reasonCode >= 0x80) {
    // MQTT 5: the client refused the message; the exchange ends here [MQTT-4.3.3-4]
    const f = session.inflight.get(packetId);
    if (f && f.qos === 2 && !f.released) complete(ctx, session, packetId, f.seq);
    return;
  }
  const known = onPubrec(ctx, session, packetId);
  conn.send({ cmd: "pubrel", messageId: packetId, reasonCode: known ? RC.SUCCESS : RC.PACKET_IDENTIFIER_NOT_FOUND });
}

export function handlePubcomp(ctx: HandlerContext, session: Session, packetId: number): void {
  onPubcomp(ctx, session, packetId);
}

export function handlePubrel(ctx: HandlerContext, conn: Connection, session: Session, packetId: number): void {
  const known = releaseInboundQos2(ctx.store, session, packetId);
  conn.send({ cmd: "pubcomp", messageId: packetId, reasonCode: known ? RC.SUCCESS : RC.PACKET_IDENTIFIER_NOT_FOUND });
}
