import type { ProtocolVersion, PublishProperties, QoS } from "../protocol/codec";
import type { MessageRow } from "../storage/store";
import { encode, publishIdOffset } from "../protocol/codec";
import type { PublishEntry } from "../shards/wire";

/** An application message on its way through the broker: as stored, plus what routing and sending add. */
export interface Message extends MessageRow {
  /** publishing client id (No Local) */
  origin?: string;
  /** the encoded PUBLISH of the first variant asked for (most messages need only one), and which */
  encoded?: Uint8Array;
  encodedSlot?: number;
  /** encodings of further variants, by slot */
  encodings?: (Uint8Array | undefined)[];
}

/**
 * Gives a message its MQTT 5 properties (none when empty); the Message Expiry Interval becomes an
 * absolute time counted from `now`, so queues and retained storage can drop it when it passes.
 */
export function setProperties(msg: Message, properties: PublishProperties | undefined, now: number): void {
  if (!properties) return;
  for (const _key in properties) {
    msg.properties = properties;
    if (properties.messageExpiryInterval !== undefined) msg.expiresAt = now + properties.messageExpiryInterval * 1000;
    return;
  }
}

/**
 * What a message weighs against the queue and in-flight bounds: its payload's bytes and its
 * topic's length (UTF-16 units: the bound's unit, not exact bytes for non-ASCII topics).
 */
export function sizeOf(msg: { topic: string; payload: Uint8Array }): number {
  return msg.payload.byteLength + msg.topic.length;
}

/**
 * Whether a message's MQTT 5 Message Expiry has passed [MQTT-3.3.2-5]. A message is live through
 * its last millisecond, so an Expiry Interval of 0 still reaches the subscribers online now.
 */
export function isExpired(msg: { expiresAt?: number }, now: number): boolean {
  return msg.expiresAt !== undefined && msg.expiresAt < now;
}

/**
 * The encoded PUBLISH for one variant (protocol family, QoS, RETAIN), cached on the message so a
 * fan-out to many subscribers encodes once. QoS > 0 variants carry packet id 0; the caller patches it.
 */
export function encodedPublish(msg: Message, version: ProtocolVersion, qos: QoS, retain: boolean): Uint8Array {
  const slot = (version === 5 ? 6 : 0) + qos * 2 + (retain ? 1 : 0);
  if (msg.encodedSlot === slot) return msg.encoded!;
  let bytes = msg.encodings?.[slot];
  if (!bytes) {
    bytes = encode(
      {
        cmd: "publish",
        topic: msg.topic,
        payload: msg.payload as Buffer, // encode() makes it a Buffer view
        qos,
        retain,
        dup: false,
        messageId: qos > 0 ? 1 : undefined,
        properties: version === 5 ? msg.properties : undefined,
      },
      version,
    );
    if (msg.encoded === undefined) {
      msg.encoded = bytes;
      msg.encodedSlot = slot;
    } else (msg.encodings ??= new Array<Uint8Array | undefined>(12).fill(undefined))[slot] = bytes;
  }
  return bytes;
}

export { publishIdOffset };

/** A message as a link entry for another shard (src/shards/wire.ts): `share`, a group's copy; `version`, a retained write's. */
export function messageEntry(msg: Message, version = 0, share: string | null = null): PublishEntry {
  return { kind: "publish", topic: msg.topic, payload: msg.payload, qos: msg.qos, retain: msg.retain, properties: msg.properties, expiresAt: msg.expiresAt, origin: msg.origin ?? null, share, version };
}

/** A link entry from another shard as a message (its payload a view into the call's bytes). */
export function entryMessage(e: PublishEntry): Message {
  return { topic: e.topic, payload: e.payload, qos: e.qos, retain: e.retain, origin: e.origin ?? undefined, properties: e.properties, expiresAt: e.expiresAt, storedId: undefined, encoded: undefined, encodedSlot: undefined, encodings: undefined };
}
