// Every packet from a client passes here: the CONNECT gate, then one handler per packet type.
import type { Connection } from "./connection";
import type { HandlerContext } from "../handlers/context";
import type { Session } from "../session/session";
import type { ConnectPacket, Packet } from "../protocol/codec";
import { ConnectRefused, protocolError } from "../protocol/errors";
import { RC } from "../protocol/reason-codes";
import { authenticateConnect, handleConnect } from "../handlers/connect";
import type { Grant } from "../auth/grant";
import { handlePublish } from "../handlers/publish";
import { handlePuback, handlePubcomp, handlePubrec, handlePubrel } from "../handlers/acks";
import { handleSubscribe, handleUnsubscribe } from "../handlers/subscribe";
import { handleDisconnect } from "../handlers/disconnect";

/** What the dispatcher needs beyond the handlers' context: the one error → reason code place, and the CONNECT gate's books. */
export interface DispatchContext extends HandlerContext {
  fail(conn: Connection, err: unknown): void;
  /** books the bytes held for a socket whose CONNECT is not accepted yet (broker/core.ts) */
  holdPending(conn: Connection): void;
  /** a CONNECT was accepted ($SYS counters) */
  sessionConnected(session: Session): void;
}

export function dispatch(core: DispatchContext, conn: Connection, packet: Packet, size = 0): void {
  if (conn.state === "closed") return; // bytes after the end (e.g. behind a DISCONNECT in one frame)
  if (conn.state === "awaiting-connect") {
    if (conn.authQueue) return hold(core, conn, packet, size);
    // [MQTT-3.1.0-1] the first packet must be CONNECT
    if (packet.cmd !== "connect") throw protocolError(`${packet.cmd} before CONNECT`);
    const verdict = authenticateConnect(core, conn, packet);
    if (!(verdict instanceof Promise)) return accept(core, conn, packet, verdict);
    // Verification is asynchronous (crypto.subtle). Other connections' events may run meanwhile;
    // this connection's later packets wait in order and run once CONNECT is accepted.
    conn.authQueue = [];
    conn.connectBytes = size;
    conn.authWork = verdict.then(
      (grant) => afterVerdict(core, conn, packet, grant),
      (err: unknown) => {
        conn.authQueue = null;
        conn.authWork = null;
        core.fail(conn, err);
      },
    );
    return;
  }
  // Past the gate every connection holds its session: the handlers get it.
  const session = conn.session!;
  switch (packet.cmd) {
    case "publish":
      return handlePublish(core, conn, session, packet);
    case "puback":
      return handlePuback(core, session, packet.messageId!);
    case "pubrec":
      return handlePubrec(core, conn, session, packet.messageId!, packet.reasonCode);
    case "pubrel":
      return handlePubrel(core, conn, session, packet.messageId!);
    case "pubcomp":
      return handlePubcomp(core, session, packet.messageId!);
    case "subscribe":
      return handleSubscribe(core, conn, session, packet);
    case "unsubscribe":
      return handleUnsubscribe(core, conn, session, packet);
    case "pingreq":
      return conn.send({ cmd: "pingresp" });
    case "disconnect":
      return handleDisconnect(core, conn, session, packet);
    case "connect":
      throw protocolError("second CONNECT"); // [MQTT-3.1.0-2]
    case "auth":
      throw protocolError("AUTH without an authentication method"); // [MQTT-4.12.0-1]
    default:
      throw protocolError(`unexpected ${packet.cmd} from a client`);
  }
}

/** CONNECT after its verdict: the session logic, then the $SYS counters. */
function accept(core: DispatchContext, conn: Connection, connect: ConnectPacket, grant: Grant): void {
  handleConnect(core, conn, connect, grant);
  if (conn.session) core.sessionConnected(conn.session);
}

/**
 * Packets held while a CONNECT is verified; bounded, since nothing has been authenticated yet:
 * at most this many, and MAX_HELD_BYTES of them counted by their size on the wire (the bytes
 * held, whatever the decoded packet records). The unfinished packet behind them counts too
 * (core.holdPending).
 */
const MAX_HELD_PACKETS = 64;

function hold(core: DispatchContext, conn: Connection, packet: Packet, size: number): void {
  const queue = conn.authQueue!;
  conn.heldBytes += size;
  const maxBytes = core.config.MAX_HELD_BYTES;
  if (queue.length >= MAX_HELD_PACKETS || (maxBytes > 0 && conn.heldBytes > maxBytes)) {
    throw new ConnectRefused(RC.QUOTA_EXCEEDED, "too much sent before CONNACK");
  }
  queue.push(packet);
}

/** The verdict came: accept CONNECT (unless the socket went away meanwhile), then the held packets. */
function afterVerdict(core: DispatchContext, conn: Connection, connect: ConnectPacket, grant: Grant): void {
  const held = conn.authQueue ?? [];
  conn.authQueue = null;
  conn.authWork = null;
  conn.connectBytes = 0;
  conn.heldBytes = 0;
  if (conn.state !== "awaiting-connect") return; // closed, or timed out, while verifying
  try {
    accept(core, conn, connect, grant);
    core.holdPending(conn); // connected: its bytes are no longer held for an unconnected socket
    for (const p of held) dispatch(core, conn, p);
  } catch (err) {
    core.fail(conn, err);
  }
}
