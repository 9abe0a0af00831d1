// Typed RPC for other Workers through a service binding:
//   services = [{ binding = "BROKER", service = "edge-mqtt-broker", entrypoint = "BrokerService" }]
//   await env.BROKER.publish("default", { topic: "a/b", payload: "hi", qos: 1 })
// Same validation and semantics as the HTTP API; no token, since only Workers the account owner
// binds can call it. Invalid input rejects with an Error whose message says what is wrong.
import { WorkerEntrypoint } from "cloudflare:workers";
import type { Env } from "../env";
import type { ClientDetail, ClientInfo, NamespaceStats, RetainedMessage } from "../broker/admin";
import type { PublishProperties, QoS } from "../protocol/codec";
import { loadConfig } from "../config";
import { clientIdOf, filterOf, integerOf, namespaceOf, publishOf, topicOf } from "./input";
import { metricsNamespaces } from "./metrics";
import { readMetrics } from "./http";
import { NamespaceView } from "./namespace";

/** A message to publish. `payload`: text (UTF-8) or bytes; or `payloadBase64`. */
export interface PublishRequest {
  topic: string;
  payload?: string | Uint8Array | ArrayBuffer;
  payloadBase64?: string;
  qos?: QoS;
  retain?: boolean;
  /** MQTT 5 publish properties (MQTT.js names); correlationData may be text or bytes */
  properties?: Omit<PublishProperties, "topicAlias" | "subscriptionIdentifier" | "correlationData"> & {
    correlationData?: string | Uint8Array | ArrayBuffer;
    correlationDataBase64?: string;
  };
}

export class BrokerService extends WorkerEntrypoint<Env> {
  /** Publishes like an MQTT client would; `matched` is how many subscribers' sessions matched. */
  async publish(namespace: string, message: PublishRequest): Promise<{ matched: number }> {
    const max = loadConfig(this.env).MAX_PACKET_SIZE;
    const msg = publishOf(message, max);
    const outcome = await this.broker(namespace).publish(msg);
    if ("refused" in outcome) throw new Error(outcome.refused); // the topic limits, the retained quota
    return { matched: outcome.matched };
  }

  async retained(namespace: string, filter = "#", limit = 1000): Promise<{ messages: RetainedMessage[]; truncated: boolean }> {
    return this.broker(namespace).retained(filterOf(filter), integerOf(limit, "limit", 1, 10000, 1000));
  }

  /** Removes a retained message (publishing nothing); false when there was none. */
  async deleteRetained(namespace: string, topic: string): Promise<boolean> {
    return this.broker(namespace).deleteRetained(topicOf(topic));
  }

  async clients(namespace: string): Promise<ClientInfo[]> {
    return this.broker(namespace).clients();
  }

  /** One client's session in detail (subscriptions, queue, in-flight, last seen, history); null when there is none. */
  async client(namespace: string, clientId: string): Promise<ClientDetail | null> {
    return this.broker(namespace).client(clientIdOf(clientId));
  }

  /** The namespaces' figures in the Prometheus text format (what GET /metrics answers). */
  async metrics(namespaces: string | string[] = "default"): Promise<string> {
    const list = metricsNamespaces(new URLSearchParams((Array.isArray(namespaces) ? namespaces : [namespaces]).map((n) => ["namespace", n])));
    return readMetrics(this.env, list);
  }

  /** Ends a client's connection (its will is published); false when it is not connected. */
  async disconnect(namespace: string, clientId: string): Promise<boolean> {
    return this.broker(namespace).disconnect(clientIdOf(clientId));
  }

  async stats(namespace: string): Promise<NamespaceStats> {
    return this.broker(namespace).stats();
  }

  /** the namespace, one whatever number of shards it spans */
  private broker(namespace: string): NamespaceView {
    return new NamespaceView(this.env, namespaceOf(namespace));
  }
}
