// What a packet handler may use of the broker: this narrow seam, not the whole BrokerCore, so a
// handler is testable alone and cannot reach into what it does not own.
import type { Connection } from "../broker/connection";
import type { Lifecycle } from "../broker/lifecycle";
import type { Authenticator } from "../auth/authenticator";
import type { DeliveryContext } from "../session/delivery";
import type { Message } from "../session/message";
import type { SessionRegistry } from "../session/registry";
import type { Session } from "../session/session";

export interface HandlerContext extends DeliveryContext {
  /** who may connect, with which rights, and who owns a session */
  readonly auth: Authenticator;
  /** the one owner of the namespace's sessions */
  readonly sessions: SessionRegistry;
  /** whether a retained message of `bytes` may be stored on `topic`; books it (broker/limits.ts) */
  admitRetained(topic: string, bytes: number): boolean;
  /** routes a message to every matching session (and stores or clears it when retained) */
  publish(msg: Message): number;
  /** closes the connection holding `session`: DISCONNECT 0x8E [MQTT-3.1.4-3] */
  takeover(session: Session): void;
  closeConnection(conn: Connection, code?: number, reason?: string): void;
  /** clients connected now (for MAX_CONNECTIONS) */
  connectedCount(): number;
  wakeAt(ms: number): void;
  /** the `$events/...` lifecycle events (broker/lifecycle.ts) */
  readonly lifecycle: Lifecycle;
  /**
   * Resolves once the namespace's other shards know of the subscriptions made so far (null: none
   * to wait for, always at one shard): a SUBACK waits, so a publish on any shard after it is routed here.
   */
  interestSettled(): Promise<void> | null;
  /** whether a session for `clientId` lives on this object: its id's home shard (always, at one shard) */
  isHome?(clientId: string): boolean;
}
