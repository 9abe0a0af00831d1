// The will: the one place that decides when it is owed and publishes it. Stored at CONNECT;
// published when a connection ends without a normal DISCONNECT (socket lost, keep-alive, protocol
// error, takeover, the runtime dying) [MQTT-3.1.2-8], never after one except MQTT 5 reason 0x04
// [MQTT-3.14.4-3]; after the Will Delay Interval, or when the session ends first, and not at all
// when a new connection takes the session in time [MQTT-3.1.3-9]; removed once published.
import type { Message } from "./message";
import { setProperties } from "./message";
import type { Session } from "./session";
import type { Store } from "../storage/store";

export interface WillContext {
  readonly store: Store;
  now(): number;
  /** whether a retained will may be stored (the retained quota); else it goes out not retained */
  admitRetained(topic: string, bytes: number): boolean;
  /** routes the will like any message */
  publish(msg: Message): number;
}

/**
 * A session's connection ended. `clean`: with a normal DISCONNECT, which discards the will.
 * Returns when a delayed will falls due (ms), else null (published now, or none owed).
 */
export function willOnConnectionEnd(ctx: WillContext, session: Session, clean: boolean): number | null {
  if (clean) session.will = null;
  const will = session.will;
  if (!will) return null;
  // A session that ends with its connection ends its will delay too [MQTT-3.1.3-9].
  const delay = session.persistent ? Math.min(will.delay, session.expiryInterval) : 0;
  if (delay === 0) {
    publishWill(ctx, session);
    return null;
  }
  session.willAt = ctx.now() + delay * 1000;
  return session.willAt;
}

/** A new connection took the session before a delayed will fell due: it is not sent [MQTT-3.1.3-9]. */
export function cancelDelayedWill(session: Session): void {
  session.willAt = null;
}

/** The session ends (Clean Start, expiry): a will still waiting for its delay goes out now. */
export function willOnSessionEnd(ctx: WillContext, session: Session): void {
  if (session.willAt !== null) publishWill(ctx, session);
}

/** The alarm: a delayed will whose time has come. */
export function willIfDue(ctx: WillContext, session: Session, now: number): void {
  if (session.willAt !== null && session.willAt <= now) publishWill(ctx, session);
}

/** Publishes the will and forgets it (in storage too, while the session is kept). */
function publishWill(ctx: WillContext, session: Session): void {
  const will = session.will;
  session.will = null;
  session.willAt = null;
  if (!will) return;
  ctx.store.clearWill(session.clientId);
  // A will over the retained quota still goes out, just not retained.
  const retain = will.retain && ctx.admitRetained(will.topic, will.payload.byteLength);
  const msg: Message = { topic: will.topic, payload: will.payload, qos: will.qos, retain, origin: session.clientId };
  setProperties(msg, will.properties, ctx.now());
  ctx.publish(msg);
}
