import type { HandlerContext } from "./context";
import type { Connection } from "../broker/connection";
import type { DisconnectPacket } from "../protocol/codec";
import { protocolError } from "../protocol/errors";
import { RC } from "../protocol/reason-codes";
import type { Session } from "../session/session";

export function handleDisconnect(ctx: HandlerContext, conn: Connection, session: Session, p: DisconnectPacket): void {
  if (conn.version === 5) {
    const expiry = p.properties?.sessionExpiryInterval;
    if (expiry !== undefined) {
      // [MQTT-3.14.2-2] a session that was to end with the connection cannot be extended here
      if (session.expiryInterval === 0 && expiry > 0) throw protocolError("session expiry set at DISCONNECT after 0 at CONNECT");
      session.expiryInterval = Math.min(expiry, ctx.config.MAX_SESSION_EXPIRY);
    }
  }
  // [MQTT-3.14.4-3] a normal DISCONNECT discards the will; MQTT 5 reason 0x04 asks for it
  const withWill = conn.version === 5 && p.reasonCode === RC.DISCONNECT_WITH_WILL;
  conn.disconnected = !withWill;
  conn.end = { code: p.reasonCode ?? RC.SUCCESS, by: "client" };
  ctx.closeConnection(conn);
}
