import type { BrokerCore } from "../broker/core";
import type { Connection } from "../broker/connection";
import type { PublishPacket } from "../protocol/codec";
import { ProtocolError, protocolError } from "../protocol/errors";
import { RC } from "../protocol/reason-codes";
import type { Message } from "../session/message";
import { isValidTopicName, withinTopicLimits } from "../topics/validate";
import { mayPublish } from "../auth/rights";

/** Inbound PUBLISH, validated in wire order: QoS/packet id, topic (alias), then routed and acknowledged. */
export function handlePublish(core: BrokerCore, conn: Connection, p: PublishPacket): void {
  const session = conn.session!;
  const qos = p.qos;
  const id = p.messageId ?? 0;
  if (qos > 0 && id === 0) throw protocolError("packet id 0"); // [MQTT-2.2.1-3]
  if (!conn.publishRate.take(core.now())) throw new ProtocolError(RC.MESSAGE_RATE_TOO_HIGH, "publish rate exceeded");

  const props = p.properties;
  let topic = p.topic;
  if (conn.version === 5 && props?.topicAlias !== undefined) topic = resolveAlias(core, conn, topic, props.topicAlias);
  // [MQTT-3.3.2-2] no wildcards in a topic name; an empty one closes the connection
  if (!isValidTopicName(topic)) throw new ProtocolError(RC.TOPIC_NAME_INVALID, "invalid topic name");

  if (qos === 2 && session.inboundQos2.has(id)) {
    // A retransmission before PUBREL: already delivered once [MQTT-4.3.3-10]
    conn.send({ cmd: "pubrec", messageId: id });
    return;
  }
  const refused = refusal(core, conn, topic, p);
  if (refused !== 0) return refuse(core, conn, p, refused);

  const msg: Message = { topic, payload: p.payload as Uint8Array, qos, retain: p.retain, origin: session.clientId };
  if (props && conn.version === 5) {
    const { topicAlias: _a, subscriptionIdentifier: _s, ...forwarded } = props;
    if (forwarded.messageExpiryInterval !== undefined) msg.expiresAt = core.now() + forwarded.messageExpiryInterval * 1000;
    for (const _k in forwarded) {
      msg.properties = forwarded;
      break;
    }
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
  session.inboundQos2.add(id);
  conn.send({ cmd: "pubrec", messageId: id, reasonCode });
}

/** Why the broker will not take this message (0: it will): limits, rights, retained quota. */
function refusal(core: BrokerCore, conn: Connection, topic: string, p: PublishPacket): number {
  const config = core.config;
  if (!withinTopicLimits(topic, config.MAX_TOPIC_LENGTH, config.MAX_TOPIC_LEVELS)) return RC.TOPIC_NAME_INVALID;
  if (!mayPublish(conn, topic)) return RC.NOT_AUTHORIZED; // publish ACL; `$` topics are the broker's
  if (p.retain && !core.retainedQuota.admit(topic, (p.payload as Uint8Array).byteLength)) return RC.QUOTA_EXCEEDED;
  return 0;
}

/**
 * A message the broker does not route. MQTT 5 says why in PUBACK/PUBREC (a PUBREC ≥ 0x80 ends
 * the QoS 2 exchange, MQTT 5 §4.3.3); QoS 0 is dropped. MQTT 3.1.1 cannot say no, so the message
 * is acknowledged as usual and dropped, as Mosquitto does [MQTT-3.3.5-2]: the connection stays.
 */
function refuse(core: BrokerCore, conn: Connection, p: PublishPacket, code: number): void {
  const id = p.messageId ?? 0;
  if (p.qos === 0) return;
  if (conn.version === 5) {
    conn.send({ cmd: p.qos === 1 ? "puback" : "pubrec", messageId: id, reasonCode: code });
    return;
  }
  if (p.qos === 1) {
    conn.send({ cmd: "puback", messageId: id });
    return;
  }
  const session = conn.session!;
  if (session.inboundQos2.size >= core.config.RECEIVE_MAXIMUM) {
    throw new ProtocolError(RC.RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded");
  }
  session.inboundQos2.add(id);
  conn.send({ cmd: "pubrec", messageId: id });
}

/** MQTT 5 topic aliases from the client [MQTT-3.3.2-9..12]. */
function resolveAlias(core: BrokerCore, conn: Connection, topic: string, alias: number): string {
  if (alias === 0 || alias > core.config.TOPIC_ALIAS_MAXIMUM) throw new ProtocolError(RC.TOPIC_ALIAS_INVALID, "topic alias out of range");
  const aliases = (conn.inboundAliases ??= new Map());
  if (topic.length > 0) {
    aliases.set(alias, topic);
    return topic;
  }
  const known = aliases.get(alias);
  if (known === undefined) throw new ProtocolError(RC.PROTOCOL_ERROR, "unknown topic alias");
  return known;
}
