import type { BrokerCore } from "../broker/core";
import type { Connection } from "../broker/connection";
import type { QoS, SubscribePacket, UnsubscribePacket } from "../protocol/codec";
import { protocolError } from "../protocol/errors";
import { RC } from "../protocol/reason-codes";
import type { Subscription } from "../session/session";
import { sendRetained } from "../session/delivery";
import { isValidTopicFilter, parseSharedFilter, withinTopicLimits } from "../topics/validate";
import { filterAccess } from "../auth/rights";

export function handleSubscribe(core: BrokerCore, conn: Connection, p: SubscribePacket): void {
  const session = conn.session!;
  const v5 = conn.version === 5;
  const subscriptionId = v5 ? (p.properties?.subscriptionIdentifier as number | undefined) : undefined;
  if (subscriptionId === 0) throw protocolError("subscription identifier 0");
  const granted: number[] = [];
  const retainedFor: { sub: Subscription; existed: boolean }[] = [];

  for (const s of p.subscriptions) {
    const shared = parseSharedFilter(s.topic);
    const valid = shared !== "invalid" && isValidTopicFilter(shared ? shared.filter : s.topic);
    if (!valid) {
      granted.push(v5 ? RC.TOPIC_FILTER_INVALID : 0x80);
      continue;
    }
    if (shared && s.nl) throw protocolError("No Local on a shared subscription"); // [MQTT-3.8.3-4]
    const config = core.config;
    if (!withinTopicLimits(s.topic, config.MAX_TOPIC_LENGTH, config.MAX_TOPIC_LEVELS)) {
      granted.push(v5 ? RC.TOPIC_FILTER_INVALID : 0x80);
      continue;
    }
    const access = filterAccess(conn.readAcl, s.topic);
    if (access === "denied") {
      granted.push(v5 ? RC.NOT_AUTHORIZED : 0x80);
      continue;
    }
    if (config.MAX_SUBSCRIPTIONS > 0 && !session.subscriptions.has(s.topic) && session.subscriptions.size >= config.MAX_SUBSCRIPTIONS) {
      granted.push(v5 ? RC.QUOTA_EXCEEDED : 0x80);
      continue;
    }
    const qos = Math.min(s.qos, 2) as QoS;
    const sub: Subscription = {
      session,
      filter: s.topic,
      qos,
      noLocal: v5 && !!s.nl,
      retainAsPublished: v5 ? !!s.rap : false,
      retainHandling: v5 ? ((s.rh ?? 0) as 0 | 1 | 2) : 0,
      subscriptionId,
      aclCovered: access === "covered",
    };
    const existed = session.subscriptions.has(s.topic);
    session.subscriptions.set(s.topic, sub);
    core.router.add(sub);
    core.store.saveSubscription(session.clientId, sub);
    granted.push(qos);
    // Shared subscriptions get no retained messages [MQTT-4.8.2-?; 5.0 §4.8.2]
    if (!shared) retainedFor.push({ sub, existed });
  }
  conn.send({ cmd: "suback", messageId: p.messageId, granted });
  conn.flush(); // SUBACK in a frame of its own, as CONNACK (see handlers/connect.ts)

  // [MQTT-3.3.1-6] retained messages for the new subscription, with RETAIN set, paced by the window
  for (const { sub, existed } of retainedFor) {
    if (sub.retainHandling === 2 || (sub.retainHandling === 1 && existed)) continue;
    sendRetained(core, session, sub);
  }
}

export function handleUnsubscribe(core: BrokerCore, conn: Connection, p: UnsubscribePacket): void {
  const session = conn.session!;
  const codes: number[] = [];
  for (const filter of p.unsubscriptions) {
    const existed = session.subscriptions.delete(filter);
    if (existed) {
      core.router.remove(session, filter);
      core.store.deleteSubscription(session.clientId, filter);
      codes.push(RC.SUCCESS);
    } else {
      const shared = parseSharedFilter(filter);
      const valid = shared !== "invalid" && isValidTopicFilter(shared ? shared.filter : filter);
      codes.push(valid ? RC.NO_SUBSCRIPTION_EXISTED : RC.TOPIC_FILTER_INVALID);
    }
  }
  // MQTT 3.1.1 UNSUBACK has no payload; the encoder writes the codes only for MQTT 5.
  conn.send({ cmd: "unsuback", messageId: p.messageId, granted: codes });
}
