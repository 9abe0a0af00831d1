import type { HandlerContext } from "./context";
import type { Connection } from "../broker/connection";
import type { PublishPacket } from "../protocol/codec";
import type { Session } from "../session/session";
import { ProtocolError, protocolError } from "../protocol/errors";
import { RC } from "../protocol/reason-codes";
import { setProperties, type Message } from "../session/message";
import { isInboundQos2Pending, rememberInboundQos2 } from "../session/inbound";
import { isValidTopicName, withinTopicLimits } from "../topics/validate";
import { isUtf8 } from "../protocol/utf8";
import { mayPublish } from "../auth/rights";
import { DROP, countDrop } from "../session/drops";

/** Inbound PUBLISH, validated in wire order: QoS/packet id, topic (alias), then routed and acknowledged. */
export function handlePublish(ctx: HandlerContext, conn: Connection, session: Session, p: PublishPacket): void {
  const qos = p.qos;
  const id = p.messageId ?? 0;
  if (qos > 0 && id === 0) throw protocolError("packet id 0"); // [MQTT-2.2.1-3]
  if (!conn.publishRate.take(ctx.now())) {
    countDrop(ctx, DROP.RATE_LIMITED);
    throw new ProtocolError(RC.MESSAGE_RATE_TOO_HIGH, "publish rate exceeded");
  }

  const props = p.properties;
  let topic = p.topic;
  if (conn.version === 5 && props?.topicAlias !== undefined) topic = resolveAlias(ctx, conn, topic, props.topicAlias);
  // MQTT 5 §3.3.2.1: an empty topic name without a topic alias is a Protocol Error
  if (topic.length === 0) throw protocolError("empty topic name");
  // [MQTT-3.3.2-2] no wildcards in a topic name
  if (!isValidTopicName(topic)) throw new ProtocolError(RC.TOPIC_NAME_INVALID, "invalid topic name");

  if (qos === 2) {
    if (isInboundQos2Pending(session, id)) {
      // A retransmission before PUBREL: already delivered once [MQTT-4.3.3-10]
      conn.send({ cmd: "pubrec", messageId: id });
      return;
    }
    // [MQTT-3.3.4-7] one more unreleased QoS 2 than the Receive Maximum we announced: refused before routing
    if (session.inboundQos2.size >= ctx.config.RECEIVE_MAXIMUM) {
      throw new ProtocolError(RC.RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded");
    }
  }
  // Every field the message may get later is in the literal, so the object is made with room for
  // them (a field added afterwards costs an allocation per message).
  const msg: Message = {
    topic,
    payload: p.payload as Uint8Array,
    qos,
    retain: p.retain,
    origin: session.clientId,
    properties: undefined,
    expiresAt: undefined,
    storedId: undefined,
    encoded: undefined,
    encodedSlot: undefined,
    encodings: undefined,
  };
  if (props && conn.version === 5) {
    // [MQTT-3.3.4-6] subscription identifiers are the server's to send
    if (props.subscriptionIdentifier !== undefined) throw protocolError("subscription identifier in a client PUBLISH");
    const { topicAlias: _a, ...forwarded } = props;
    setProperties(msg, forwarded, ctx.now());
  }
  // MQTT 5 Payload Format Indicator 1 promises UTF-8 [MQTT-3.3.2-4]
  if (msg.properties?.payloadFormatIndicator && !isUtf8(msg.payload)) {
    countDrop(ctx, DROP.INVALID_PAYLOAD);
    if (qos === 0) throw new ProtocolError(RC.PAYLOAD_FORMAT_INVALID, "payload is not UTF-8");
    refuse(conn, qos, id, RC.PAYLOAD_FORMAT_INVALID, "payload is not UTF-8");
    return;
  }
  // Last, as it books room for a retained message: limits, the publish ACL, the retained quota.
  const refused = refusal(ctx, conn, topic, p);
  if (refused !== 0) {
    countDrop(ctx, refused === RC.NOT_AUTHORIZED ? DROP.NOT_AUTHORIZED : DROP.LIMITS);
    return deny(ctx, conn, session, p, refused);
  }
  const matched = ctx.publish(msg);

  if (qos === 0) return;
  const reasonCode = conn.version === 5 && matched === 0 ? RC.NO_MATCHING_SUBSCRIBERS : RC.SUCCESS;
  if (qos === 1) {
    conn.send({ cmd: "puback", messageId: id, reasonCode });
    return;
  }
  acceptQos2(ctx, conn, session, id, reasonCode);
}

/** PUBREC for a QoS 2 PUBLISH taken on: its id is remembered until PUBREL [MQTT-4.3.3-10]. */
function acceptQos2(ctx: HandlerContext, conn: Connection, session: Session, id: number, reasonCode: number): void {
  rememberInboundQos2(ctx.store, session, id);
  conn.send({ cmd: "pubrec", messageId: id, reasonCode });
}

const DENIED: Record<number, string> = {
  [RC.TOPIC_NAME_INVALID]: "topic exceeds the topic limits",
  [RC.NOT_AUTHORIZED]: "not authorized to publish to this topic",
  [RC.QUOTA_EXCEEDED]: "retained message quota exceeded",
};

/** Why the broker will not take this message (0: it will): limits, rights, retained quota (booked when it fits). */
function refusal(ctx: HandlerContext, conn: Connection, topic: string, p: PublishPacket): number {
  const config = ctx.config;
  if (!withinTopicLimits(topic, config.MAX_TOPIC_LENGTH, config.MAX_TOPIC_LEVELS)) return RC.TOPIC_NAME_INVALID;
  if (!mayPublish(conn, topic)) return RC.NOT_AUTHORIZED; // publish ACL; `$` topics are the broker's
  if (p.retain && !ctx.admitRetained(topic, (p.payload as Uint8Array).byteLength)) return RC.QUOTA_EXCEEDED;
  return 0;
}

/**
 * A message the broker does not route. MQTT 5 says why in PUBACK/PUBREC (a PUBREC ≥ 0x80 ends
 * the QoS 2 exchange, MQTT 5 §4.3.3); QoS 0 is dropped. MQTT 3.1.1 cannot say no, so the message
 * is acknowledged as usual and dropped, as Mosquitto does [MQTT-3.3.5-2]: the connection stays.
 */
function deny(ctx: HandlerContext, conn: Connection, session: Session, p: PublishPacket, code: number): void {
  const id = p.messageId ?? 0;
  if (p.qos === 0) return;
  if (conn.version === 5) {
    refuse(conn, p.qos, id, code, DENIED[code] ?? "refused");
    return;
  }
  if (p.qos === 1) {
    conn.send({ cmd: "puback", messageId: id });
    return;
  }
  acceptQos2(ctx, conn, session, id, RC.SUCCESS); // (the Receive Maximum was checked before any refusal)
}

/**
 * Answers a QoS 1/2 PUBLISH with an MQTT 5 error reason code; the message is not routed. Only an
 * error (≥ 0x80) carries a Reason String: strict clients refuse properties on a success acknowledgement.
 */
export function refuse(conn: Connection, qos: 1 | 2, id: number, reasonCode: number, reason: string): void {
  const properties = conn.problemInformation && reasonCode >= 0x80 ? { reasonString: reason } : undefined;
  conn.send({ cmd: qos === 1 ? "puback" : "pubrec", messageId: id, reasonCode, properties });
}

/** MQTT 5 topic aliases from the client [MQTT-3.3.2-9..12]. */
function resolveAlias(ctx: HandlerContext, conn: Connection, topic: string, alias: number): string {
  if (alias === 0 || alias > ctx.config.TOPIC_ALIAS_MAXIMUM) throw new ProtocolError(RC.TOPIC_ALIAS_INVALID, "topic alias out of range");
  const aliases = (conn.inboundAliases ??= new Map());
  if (topic.length > 0) {
    if (aliases.get(alias) !== topic) {
      aliases.set(alias, topic);
      // survive hibernation; only when an alias changes, not per message
      const stored = conn.aliasesStored;
      if (conn.save()) return topic;
      // outgrown the attachment: all of them go to storage once, then each change is one row
      if (stored) ctx.store.saveTopicAlias(conn.clientId, alias, topic);
      else ctx.store.saveTopicAliases(conn.clientId, [...aliases]);
    }
    return topic;
  }
  const known = aliases.get(alias);
  if (known === undefined) throw new ProtocolError(RC.PROTOCOL_ERROR, "unknown topic alias");
  return known;
}
