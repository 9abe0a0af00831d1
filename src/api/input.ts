// Validation of everything the HTTP API and the RPC entry point accept from outside, in one place,
// so both refuse the same things with the same messages. Failures throw InputError (→ HTTP 4xx).
import { Buffer } from "node:buffer";
import type { ExternalMessage } from "../broker/admin";
import { isSysTopic } from "../broker/stats";
import { isEventTopic } from "../broker/lifecycle";
import type { PublishProperties, QoS } from "../protocol/codec";
import { isValidTopicFilter, isValidTopicName } from "../topics/validate";

export class InputError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = "InputError";
  }
}

/** Namespace names, the same rule for /mqtt/<namespace> and /api/<namespace>/... */
export const NAMESPACE = /^[A-Za-z0-9_.-]{1,64}$/;

export function namespaceOf(value: unknown): string {
  if (typeof value !== "string" || !NAMESPACE.test(value)) {
    throw new InputError("invalid namespace: use 1-64 characters of A-Z a-z 0-9 _ . -");
  }
  return value;
}

export function topicOf(value: unknown, what = "topic"): string {
  if (typeof value !== "string" || value === "") throw new InputError(`${what} is required`);
  if (!isValidTopicName(value) || tooLong(value)) {
    throw new InputError(`invalid ${what} "${value}": no wildcards (+ #) or NUL characters, at most ${MAX_STRING} bytes`);
  }
  if (isSysTopic(value)) throw new InputError(`invalid ${what} "${value}": $SYS topics belong to the broker`);
  return value;
}

export function filterOf(value: unknown): string {
  if (value === undefined || value === null || value === "") return "#";
  if (typeof value !== "string" || !isValidTopicFilter(value) || value.startsWith("$share/")) {
    throw new InputError(`invalid topic filter "${String(value)}"`);
  }
  return value;
}

export function clientIdOf(value: unknown): string {
  if (typeof value !== "string" || value === "") throw new InputError("client id is required");
  return value;
}

/** An optional integer within [min, max] (query strings arrive as text). */
export function integerOf(value: unknown, what: string, min: number, max: number, fallback: number): number {
  if (value === undefined || value === null || value === "") return fallback;
  const n = typeof value === "string" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
    throw new InputError(`${what} must be an integer from ${min} to ${max}`);
  }
  return n;
}

const MAX_STRING = 65535;

const PUBLISH_FIELDS = new Set(["topic", "payload", "payloadBase64", "qos", "retain", "properties"]);
const PROPERTY_FIELDS = new Set([
  "payloadFormatIndicator",
  "messageExpiryInterval",
  "contentType",
  "responseTopic",
  "correlationData",
  "correlationDataBase64",
  "userProperties",
]);

/**
 * A publish request: `{ topic, payload | payloadBase64, qos, retain, properties }`. `payload` is
 * UTF-8 text (or bytes, over RPC); MQTT 5 properties use MQTT.js names. Unknown fields are refused
 * so a typo (`"retained": true`) does not pass unnoticed.
 */
export function publishOf(body: unknown, maxPayload: number): ExternalMessage {
  const o = objectOf(body, "the request");
  for (const key of Object.keys(o)) if (!PUBLISH_FIELDS.has(key)) throw new InputError(`unknown field "${key}"`);
  const topic = topicOf(o.topic);
  // the lifecycle events are the broker's word (their retained presence may still be deleted)
  if (isEventTopic(topic)) throw new InputError(`invalid topic "${topic}": $events topics belong to the broker`);
  const qos = o.qos ?? 0;
  if (qos !== 0 && qos !== 1 && qos !== 2) throw new InputError("qos must be 0, 1 or 2");
  if (o.retain !== undefined && typeof o.retain !== "boolean") throw new InputError("retain must be true or false");
  const payload = bytesOf(o.payload, o.payloadBase64, "payload");
  if (payload.byteLength > maxPayload) throw new InputError(`payload exceeds ${maxPayload} bytes`, 413);
  const msg: ExternalMessage = { topic, payload, qos: qos as QoS, retain: o.retain === true };
  if (o.properties !== undefined) msg.properties = propertiesOf(o.properties);
  return msg;
}

function propertiesOf(value: unknown): PublishProperties | undefined {
  const o = objectOf(value, "properties");
  const out: PublishProperties = {};
  for (const key of Object.keys(o)) if (!PROPERTY_FIELDS.has(key)) throw new InputError(`unknown property "${key}"`);
  if (o.payloadFormatIndicator !== undefined) {
    if (typeof o.payloadFormatIndicator !== "boolean") throw new InputError("payloadFormatIndicator must be true or false");
    out.payloadFormatIndicator = o.payloadFormatIndicator;
  }
  if (o.messageExpiryInterval !== undefined) {
    out.messageExpiryInterval = integerOf(o.messageExpiryInterval, "messageExpiryInterval", 0, 0xffffffff, 0);
  }
  if (o.contentType !== undefined) out.contentType = stringOf(o.contentType, "contentType");
  if (o.responseTopic !== undefined) out.responseTopic = topicOf(o.responseTopic, "responseTopic");
  if (o.correlationData !== undefined || o.correlationDataBase64 !== undefined) {
    const data = bytesOf(o.correlationData, o.correlationDataBase64, "correlationData");
    if (data.byteLength > MAX_STRING) throw new InputError(`correlationData must be at most ${MAX_STRING} bytes`);
    out.correlationData = Buffer.from(data);
  }
  if (o.userProperties !== undefined) {
    const user = objectOf(o.userProperties, "userProperties");
    const props: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(user)) {
      stringOf(k, "a userProperties name");
      if (Array.isArray(v)) props[k] = v.map((item) => stringOf(item, `userProperties.${k}`));
      else props[k] = stringOf(v, `userProperties.${k}`);
    }
    out.userProperties = props;
  }
  return Object.keys(out).length ? out : undefined;
}

/** Bytes from text, base64 text, or (over RPC) binary; absent = empty. */
function bytesOf(text: unknown, base64: unknown, what: string): Uint8Array {
  if (text !== undefined && base64 !== undefined) throw new InputError(`give ${what} or ${what}Base64, not both`);
  if (base64 !== undefined) {
    if (typeof base64 !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(base64) || base64.length % 4 !== 0) {
      throw new InputError(`${what}Base64 must be standard base64`);
    }
    return new Uint8Array(Buffer.from(base64, "base64"));
  }
  if (text === undefined || text === null) return new Uint8Array(0);
  if (typeof text === "string") return new TextEncoder().encode(text);
  if (text instanceof Uint8Array) return text;
  if (text instanceof ArrayBuffer) return new Uint8Array(text);
  throw new InputError(`${what} must be text (or ${what}Base64 for binary)`);
}

function objectOf(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new InputError(`${what} must be a JSON object`);
  return value as Record<string, unknown>;
}

/** MQTT strings: UTF-8, at most 65535 bytes, no NUL [MQTT-1.5.4-2]. */
function stringOf(value: unknown, what: string): string {
  if (typeof value !== "string") throw new InputError(`${what} must be a string`);
  if (value.includes("\u0000") || tooLong(value)) throw new InputError(`${what} must be at most ${MAX_STRING} bytes without NUL`);
  return value;
}

/** More than 65535 UTF-8 bytes (a UTF-16 unit is at most 3 bytes: short strings skip the encoding). */
function tooLong(s: string): boolean {
  return s.length * 3 > MAX_STRING && new TextEncoder().encode(s).byteLength > MAX_STRING;
}
