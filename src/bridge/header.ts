import { parseBridges } from "./config";

/**
 * The request header that makes a namespace object take a WebSocket as the named bridge's (an
 * internal client: no password, all topics). Only a bridge object's own stub.fetch can carry it:
 * the Worker refuses any outside request that has it (index.ts), so it cannot be forged.
 */
export const BRIDGE_HEADER = "X-MQTT-Bridge";

/**
 * Whether a namespace object takes the header: only for a bridge BRIDGES gives that namespace (so a
 * request that reached the object some other way, e.g. from another Worker bound to the class, cannot
 * name itself a bridge and get all topics). BRIDGES is parsed once per text.
 */
export function acceptedBridge(bridges: unknown, name: string, namespace: string | undefined): boolean {
  if (namespace === undefined) return false;
  return parseBridges(bridges).bridges.some((b) => b.name === name && b.namespace === namespace);
}
