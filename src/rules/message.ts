// The message a rule sends: one JSON shape for Queues, Workers and JSON webhooks (docs/rules.md).
// Built when the send starts, never on the publish path.
import { Buffer } from "node:buffer";
import type { MessageRow } from "../storage/store";
import type { QoS } from "../protocol/codec";

export interface RuleMessage {
  /** the broker namespace (Durable Object) the message was published in */
  namespace: string;
  /** the rule that matched */
  rule: string;
  topic: string;
  /** the payload, base64 (always) */
  payload: string;
  /** the payload as text, only when it is well-formed UTF-8 */
  payloadText?: string;
  qos: QoS;
  retain: boolean;
  /** the publishing MQTT client; null for the HTTP API / RPC publish */
  clientId: string | null;
  /** ms since the epoch: when the broker took the message */
  time: number;
  /** 1 for the first send; higher for retries (at least once: the receiver may see a message again) */
  attempt: number;
  /** MQTT 5 properties the publisher set (absent when none) */
  properties?: RuleMessageProperties;
}

export interface RuleMessageProperties {
  payloadFormatIndicator?: boolean;
  contentType?: string;
  responseTopic?: string;
  /** base64 */
  correlationData?: string;
  /** as MQTT.js gives them: a repeated key has an array of values */
  userProperties?: Record<string, string | string[]>;
  /** seconds, as the publisher set it */
  messageExpiryInterval?: number;
}

/** What a send needs of a taken message: stored (QoS >= 1) or held in memory (QoS 0). */
export interface TakenMessage {
  msg: MessageRow;
  clientId: string | null;
  createdAt: number;
  attempts: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function ruleMessage(t: TakenMessage, namespace: string, rule: string): RuleMessage {
  const m = t.msg;
  const out: RuleMessage = {
    namespace,
    rule,
    topic: m.topic,
    payload: base64(m.payload),
    qos: m.qos,
    retain: m.retain,
    clientId: t.clientId,
    time: t.createdAt,
    attempt: t.attempts + 1,
  };
  try {
    out.payloadText = utf8.decode(m.payload);
  } catch {
    // binary: base64 only
  }
  const props = m.properties;
  if (props) {
    const p: RuleMessageProperties = {};
    if (props.payloadFormatIndicator !== undefined) p.payloadFormatIndicator = props.payloadFormatIndicator;
    if (props.contentType !== undefined) p.contentType = props.contentType;
    if (props.responseTopic !== undefined) p.responseTopic = props.responseTopic;
    if (props.correlationData !== undefined) p.correlationData = base64(props.correlationData);
    if (props.userProperties !== undefined) p.userProperties = props.userProperties as Record<string, string | string[]>;
    if (props.messageExpiryInterval !== undefined) p.messageExpiryInterval = props.messageExpiryInterval;
    for (const _ in p) {
      out.properties = p;
      break;
    }
  }
  return out;
}

export function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}
