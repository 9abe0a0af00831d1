import type { BrokerCore } from "../broker/core";
import type { Connection } from "../broker/connection";
import type { PublishPacket } from "../protocol/codec";
import { ProtocolError, protocolError } from "../protocol/errors";
import { RC } from "../protocol/reason-codes";
import type { Message } from "../session/message";
import { isInboundQos2Pending, rememberInboundQos2 } from "../session/inbound";
import { isValidTopicName } from "../topics/validate";
import { isUtf8 } from "../protocol/utf8";

/** Inbound PUBLISH, validated in wire order: QoS/packet id, topic (alias), then routed and acknowledged. */
export function handlePublish(core: BrokerCore, conn: Connection, p: PublishPacket): void {
  const session = conn.session!;
  const qos = p.qos;
  const id = p.messageId ?? 0;
  if (qos > 0 && id === 0) throw protocolError("packet id 0"); // [MQTT-2.2.1-3]

  const props = p.properties;
  let topic = p.topic;
  if (conn.version === 5 && props?.topicAlias !== undefined) topic = resolveAlias(core, conn, topic, props.topicAlias);
  // [MQTT-3.3.2-2] no wildcards in a topic name; an empty one closes the connection
  if (!isValidTopicName(topic)) throw new ProtocolError(RC.TOPIC_NAME_INVALID, "invalid topic name");

  if (qos === 2 && isInboundQos2Pending(session, id)) {
    // A retransmission before PUBREL: already delivered once [MQTT-4.3.3-10]
    conn.send({ cmd: "pubrec", messageId: id });
    return;
  }

  const msg: Message = { topic, payload: p.payload as Uint8Array, qos, retain: p.retain, origin: session.clientId };
  if (props && conn.version === 5) {
    const { topicAlias: _a, subscriptionIdentifier: _s, ...forwarded } = props;
    if (forwarded.messageExpiryInterval !== undefined) msg.expiresAt = core.now() + forwarded.messageExpiryInterval * 1000;
    for (const _k in forwarded) {
      msg.properties = forwarded;
      break;
    }
  }
  // MQTT 5 Payload Format Indicator 1 promises UTF-8 [MQTT-3.3.2-4]
  if (msg.properties?.payloadFormatIndicator && !isUtf8(msg.payload)) {
    if (qos === 0) throw new ProtocolError(RC.PAYLOAD_FORMAT_INVALID, "payload is not UTF-8");
    refuse(conn, qos, id, RC.PAYLOAD_FORMAT_INVALID, "payload is not UTF-8");
    return;
  }
  const matched = core.publish(msg);

  if (qos === 0) return;
  const reasonCode = conn.version === 5 && matched === 0 ? RC.NO_MATCHING_SUBSCRIBERS : RC.SUCCESS;
  if (qos === 1) {
    conn.send({ cmd: "puback", messageId: id, reasonCode });
    return;
  }
  if (session.inboundQos2.size >= core.config.RECEIVE_MAXIMUM) {
    throw new ProtocolError(RC.RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded");
  }
  rememberInboundQos2(core.store, session, id);
  conn.send({ cmd: "pubrec", messageId: id, reasonCode });
}

/** Answers a QoS 1/2 PUBLISH with an MQTT 5 error reason code; the message is not routed. */
export function refuse(conn: Connection, qos: 1 | 2, id: number, reasonCode: number, reason: string): void {
  const properties = conn.problemInformation ? { reasonString: reason } : undefined;
  conn.send({ cmd: qos === 1 ? "puback" : "pubrec", messageId: id, reasonCode, properties });
}

/** MQTT 5 topic aliases from the client [MQTT-3.3.2-9..12]. */
function resolveAlias(core: BrokerCore, conn: Connection, topic: string, alias: number): string {
  if (alias === 0 || alias > core.config.TOPIC_ALIAS_MAXIMUM) throw new ProtocolError(RC.TOPIC_ALIAS_INVALID, "topic alias out of range");
  const aliases = (conn.inboundAliases ??= new Map());
  if (topic.length > 0) {
    if (aliases.get(alias) !== topic) {
      aliases.set(alias, topic);
      conn.save(); // survive hibernation; only when an alias changes, not per message
    }
    return topic;
  }
  const known = aliases.get(alias);
  if (known === undefined) throw new ProtocolError(RC.PROTOCOL_ERROR, "unknown topic alias");
  return known;
}
