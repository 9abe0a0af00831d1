// The WebSocket subprotocol to echo: MQTT.js and browsers refuse a connection whose 101 does
// not name one they offered. The Worker uses it to refuse, the Durable Object to echo.

/** Subprotocols we speak, in order of preference. */
const SUBPROTOCOLS = ["mqtt", "mqttv3.1"];

/** The protocol to echo; null when none was offered; "unsupported" when none offered is ours. */
export function chooseSubprotocol(offeredHeader: string | null): string | null | "unsupported" {
  if (!offeredHeader) return null;
  const offered = offeredHeader
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  if (offered.length === 0) return null;
  return SUBPROTOCOLS.find((p) => offered.includes(p)) ?? "unsupported";
}
