import type { Message } from "../session/message";
import type { Subscription, Will } from "../session/session";
import type { ProtocolVersion } from "../protocol/codec";

export interface SessionRow {
  clientId: string;
  version: ProtocolVersion;
  expiry: number;
  connected: boolean;
  expiresAt: number | null;
  will: Will | null;
  willAt: number | null;
}

export interface SubscriptionRow {
  clientId: string;
  filter: string;
  qos: 0 | 1 | 2;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId?: number;
}

export interface RetainedRow {
  topic: string;
  msg: Message;
}

/** Everything the broker persists. One implementation over the Durable Object's SQLite. */
export interface Store {
  loadSessions(): SessionRow[];
  loadSubscriptions(): SubscriptionRow[];
  saveSession(row: SessionRow): void;
  /** the connection ended; the session stays until `expiresAt` (null: never) */
  markDisconnected(clientId: string, expiresAt: number | null, willAt: number | null): void;
  clearWill(clientId: string): void;
  deleteSession(clientId: string): void;

  saveSubscription(clientId: string, sub: Subscription): void;
  deleteSubscription(clientId: string, filter: string): void;

  setRetained(msg: Message): void;
  deleteRetained(topic: string): void;
  /** retained messages whose topic starts with `prefix` (the caller matches the filter) */
  retainedWithPrefix(prefix: string): Message[];
  countRetained(): number;
  /** retained messages and the sum of their payload sizes (for the retained quota) */
  retainedUsage(): { count: number; bytes: number };
  /** payload size of the retained message on `topic`, null if there is none */
  retainedSize(topic: string): number | null;
}
