// Every packet from a client passes here: the CONNECT gate, then one handler per packet type.
import type { BrokerCore } from "./core";
import type { Connection } from "./connection";
import type { ConnectPacket, Packet } from "../protocol/codec";
import { ConnectRefused, protocolError } from "../protocol/errors";
import { RC } from "../protocol/reason-codes";
import { authenticateConnect, handleConnect } from "../handlers/connect";
import type { Grant } from "../auth/authenticator";
import { handlePublish } from "../handlers/publish";
import { handlePuback, handlePubcomp, handlePubrec, handlePubrel } from "../handlers/acks";
import { handleSubscribe, handleUnsubscribe } from "../handlers/subscribe";
import { handleDisconnect } from "../handlers/disconnect";

export function dispatch(core: BrokerCore, conn: Connection, packet: Packet): void {
  if (conn.state === "closed") return; // bytes after the end (e.g. behind a DISCONNECT in one frame)
  if (conn.state === "awaiting-connect") {
    if (conn.authQueue) return hold(core, conn, packet);
    // [MQTT-3.1.0-1] the first packet must be CONNECT
    if (packet.cmd !== "connect") throw protocolError(`${packet.cmd} before CONNECT`);
    const verdict = authenticateConnect(core, conn, packet);
    if (!(verdict instanceof Promise)) return accept(core, conn, packet, verdict);
    // Verification is asynchronous (crypto.subtle). Other connections' events may run meanwhile;
    // this connection's later packets wait in order and run once CONNECT is accepted.
    conn.authQueue = [];
    conn.authWork = verdict.then(
      (grant) => resume(core, conn, packet, grant),
      (err: unknown) => {
        conn.authQueue = null;
        conn.authWork = null;
        core.fail(conn, err);
      },
    );
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

/** CONNECT after its verdict: the session logic, then the $SYS counters. */
function accept(core: BrokerCore, conn: Connection, connect: ConnectPacket, grant: Grant): void {
  handleConnect(core, conn, connect, grant);
  if (conn.session) core.sys.sessionConnected(conn.session);
}

/** Packets held while a CONNECT is verified; bounded, since nothing has been authenticated yet. */
const MAX_HELD_PACKETS = 64;

function hold(core: BrokerCore, conn: Connection, packet: Packet): void {
  const queue = conn.authQueue!;
  let bytes = packet.length ?? 0;
  for (const p of queue) bytes += p.length ?? 0;
  if (queue.length >= MAX_HELD_PACKETS || bytes > core.config.MAX_PACKET_SIZE) {
    throw new ConnectRefused(RC.QUOTA_EXCEEDED, "too many packets before CONNACK");
  }
  queue.push(packet);
}

/** The verdict came: accept CONNECT (unless the socket went away meanwhile), then the held packets. */
function resume(core: BrokerCore, conn: Connection, connect: ConnectPacket, grant: Grant): void {
  const held = conn.authQueue ?? [];
  conn.authQueue = null;
  conn.authWork = null;
  if (conn.state !== "awaiting-connect") return; // closed, or timed out, while verifying
  try {
    accept(core, conn, connect, grant);
    for (const p of held) dispatch(core, conn, p);
  } catch (err) {
    core.fail(conn, err);
  }
}
