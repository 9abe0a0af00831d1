import { RC } from "./reason-codes";

/**
 * A reason to end a connection. Handlers throw it; the dispatcher turns it into a CONNACK
 * (during CONNECT) or an MQTT 5 DISCONNECT, closes the socket and lets the will go out.
 */
export class ProtocolError extends Error {
  constructor(
    readonly reasonCode: number,
    message: string,
  ) {
    super(message);
    this.name = "ProtocolError";
  }
}

export const protocolError = (message: string) => new ProtocolError(RC.PROTOCOL_ERROR, message);
export const malformed = (message: string) => new ProtocolError(RC.MALFORMED_PACKET, message);

/** A refused CONNECT: answered with a CONNACK carrying the reason code, then closed. */
export class ConnectRefused extends ProtocolError {
  constructor(reasonCode: number, message: string) {
    super(reasonCode, message);
    this.name = "ConnectRefused";
  }
}
