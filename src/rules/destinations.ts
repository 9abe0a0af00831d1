// The three kinds of destination. Each sends one batch and resolves when the destination took
// it all, or throws: the outbox (engine.ts) retries or drops. They never touch storage.
import type { Rule } from "./config";
import { ruleMessage, type RuleMessage, type TakenMessage } from "./message";
import { importSigningKey, signature } from "./sign";

export interface Destination {
  /** most messages in one send */
  readonly batchSize: number;
  /**
   * Resolves when the destination took the batch, except the messages it returns the indexes
   * of: those can never be taken (e.g. too large for a Queue) and are dropped, not retried.
   */
  send(batch: TakenMessage[], signal: AbortSignal): Promise<void | number[]>;
}

/** What a Queue producer binding offers (the part used here). */
interface QueueProducer {
  sendBatch(messages: { body: unknown; contentType?: string }[]): Promise<unknown>;
}

/** A Worker reached through a service binding: its entrypoint's RPC method. */
interface RuleReceiver {
  onMessages(messages: RuleMessage[]): Promise<unknown> | unknown;
}

/** Queues take at most 100 messages per sendBatch; Workers and webhooks get the same batches. */
export const BATCH_SIZE = 100;
/** Queue limits: 128 KB per message, 256 KB per sendBatch (measured here as JSON text, with room to spare). */
export const QUEUE_MESSAGE_BYTES = 120 * 1024;
export const QUEUE_BATCH_BYTES = 240 * 1024;

export function makeDestination(rule: Rule, env: Record<string, unknown>, namespace: string): Destination {
  const toMessages = (batch: TakenMessage[]) => batch.map((t) => ruleMessage(t, namespace, rule.name));
  const to = rule.to;
  switch (to.kind) {
    case "queue": {
      const queue = env[to.binding] as QueueProducer;
      return {
        batchSize: BATCH_SIZE,
        async send(batch) {
          const rejected: number[] = [];
          let chunk: { body: RuleMessage; contentType: "json" }[] = [];
          let bytes = 0;
          const messages = toMessages(batch);
          for (let i = 0; i < messages.length; i++) {
            const size = utf8Length(JSON.stringify(messages[i]));
            if (size > QUEUE_MESSAGE_BYTES) {
              rejected.push(i); // too large for any Queue: retrying cannot help
              continue;
            }
            if (bytes + size > QUEUE_BATCH_BYTES && chunk.length > 0) {
              await queue.sendBatch(chunk);
              chunk = [];
              bytes = 0;
            }
            chunk.push({ body: messages[i]!, contentType: "json" });
            bytes += size;
          }
          if (chunk.length > 0) await queue.sendBatch(chunk);
          return rejected;
        },
      };
    }
    case "worker": {
      const service = env[to.binding] as RuleReceiver;
      return {
        batchSize: BATCH_SIZE,
        async send(batch) {
          await service.onMessages(toMessages(batch));
        },
      };
    }
    case "webhook": {
      let key: Promise<CryptoKey> | null = null;
      const sign = rule.secret ? async (body: Uint8Array) => signature(await (key ??= importSigningKey(env[rule.secret!] as string)), body) : null;
      if (rule.format === "raw") {
        return {
          batchSize: 1,
          async send([t], signal) {
            const headers = rawHeaders(t!, namespace, rule.name);
            const body = t!.msg.payload;
            if (sign) headers["X-Signature-256"] = await sign(body);
            await post(to.url, body, headers, signal);
          },
        };
      }
      return {
        batchSize: BATCH_SIZE,
        async send(batch, signal) {
          const body = encoder.encode(JSON.stringify({ messages: toMessages(batch) }));
          const headers: Record<string, string> = { "Content-Type": "application/json" };
          if (sign) headers["X-Signature-256"] = await sign(body);
          await post(to.url, body, headers, signal);
        },
      };
    }
  }
}

const encoder = new TextEncoder();

/** UTF-8 bytes of a string, without encoding it. */
function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) n += c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 2 : 1; // surrogate pairs: 2 units, 4 bytes
  }
  return n;
}

/** A POST that succeeds on 2xx only; redirects are not followed (they count as failures). */
async function post(url: string, body: Uint8Array, headers: Record<string, string>, signal: AbortSignal): Promise<void> {
  const res = await fetch(url, { method: "POST", body, headers: { "User-Agent": "edge-mqtt-broker-rules", ...headers }, redirect: "manual", signal });
  await res.body?.cancel();
  if (res.status < 200 || res.status > 299) throw new Error(`HTTP ${res.status}`);
}

/** A raw webhook's message fields, as headers (text fields percent-encoded: headers are bytes). */
function rawHeaders(t: TakenMessage, namespace: string, rule: string): Record<string, string> {
  const m = t.msg;
  const h: Record<string, string> = {
    "Content-Type": headerSafe(m.properties?.contentType) ?? "application/octet-stream",
    "X-MQTT-Topic": encodeURIComponent(m.topic),
    "X-MQTT-QoS": String(m.qos),
    "X-MQTT-Retain": m.retain ? "1" : "0",
    "X-MQTT-Namespace": encodeURIComponent(namespace),
    "X-MQTT-Rule": encodeURIComponent(rule),
    "X-MQTT-Time": String(t.createdAt),
    "X-MQTT-Attempt": String(t.attempts + 1),
  };
  if (t.clientId !== null) h["X-MQTT-Client-Id"] = encodeURIComponent(t.clientId);
  return h;
}

/** A value that fits a header as it is (printable ASCII), else undefined. */
function headerSafe(value: string | undefined): string | undefined {
  return value !== undefined && /^[\x20-\x7e]{1,256}$/.test(value) ? value : undefined;
}
