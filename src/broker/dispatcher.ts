// Every packet from a client passes here: the CONNECT gate, then one handler per packet type.
import type { BrokerCore } from "./core";
import type { Connection } from "./connection";
import type { Packet } from "../protocol/codec";
import { protocolError } from "../protocol/errors";
import { handleConnect } from "../handlers/connect";
import { handlePublish } from "../handlers/publish";
import { handlePuback, handlePubcomp, handlePubrec, handlePubrel } from "../handlers/acks";
import { handleSubscribe, handleUnsubscribe } from "../handlers/subscribe";
import { handleDisconnect } from "../handlers/disconnect";

export function dispatch(core: BrokerCore, conn: Connection, packet: Packet): void {
  if (conn.state === "closed") return; // bytes after the end (e.g. behind a DISCONNECT in one frame)
  if (conn.state === "awaiting-connect") {
    // [MQTT-3.1.0-1] the first packet must be CONNECT
    if (packet.cmd !== "connect") throw protocolError(`${packet.cmd} before CONNECT`);
    handleConnect(core, conn, packet);
    if (conn.session) core.sys.sessionConnected(conn.session);
    return;
  }
  switch (packet.cmd) {
    case "publish":
      return handlePublish(core, conn, packet);
    case "puback":
      return handlePuback(core, conn, packet.messageId!);
    case "pubrec":
      return handlePubrec(core, conn, packet.messageId!, packet.reasonCode);
    case "pubrel":
      return handlePubrel(core, conn, packet.messageId!);
    case "pubcomp":
      return handlePubcomp(core, conn, packet.messageId!);
    case "subscribe":
      return handleSubscribe(core, conn, packet);
    case "unsubscribe":
      return handleUnsubscribe(core, conn, packet);
    case "pingreq":
      return conn.send({ cmd: "pingresp" });
    case "disconnect":
      return handleDisconnect(core, conn, packet);
    case "connect":
      throw protocolError("second CONNECT"); // [MQTT-3.1.0-2]
    case "auth":
      throw protocolError("AUTH without an authentication method"); // [MQTT-4.12.0-1]
    default:
      throw protocolError(`unexpected ${packet.cmd} from a client`);
  }
}
