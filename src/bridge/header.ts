/**
 * The request header that makes a namespace object take a WebSocket as the named bridge's (an
 * internal client: no password, all topics). Only a bridge object's own stub.fetch can carry it:
 * the Worker refuses any outside request that has it (index.ts), so it cannot be forged.
 */
export const BRIDGE_HEADER = "X-MQTT-Bridge";
