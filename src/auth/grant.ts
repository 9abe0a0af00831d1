// What authentication grants a connection (plain data: it travels in socket attachments and
// session rows), apart from the authenticator so that storage and sessions can name it.
import type { AclLists } from "./config";

/** What authentication grants a connection; kept in the socket attachment over hibernation. */
export interface Grant extends AclLists {
  /** the user name %u stands for: verified (a password user, a token's subject) unless AUTH_MODE=none */
  username?: string;
  /**
   * Who authenticated, for session ownership: "user:<name>" for a password user or a token's
   * subject (the same person either way), "token:<client_id claim>" for a token without one.
   * Undefined with AUTH_MODE=none: nobody is identified, and sessions belong to nobody.
   */
  identity?: string;
  /** a client id a token pins; used when the client sent an empty one */
  clientId?: string;
  /**
   * The token's `exp` (seconds since the epoch): the connection is ended with 0xA0 (Maximum
   * connect time) then. Kept in the attachment, so the deadline survives hibernation.
   */
  exp?: number;
}
