// Well-formed UTF-8 check for MQTT 5 Payload Format Indicator 1 [MQTT-3.3.2-4].
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function isUtf8(bytes: Uint8Array): boolean {
  try {
    decoder.decode(bytes);
    return true;
  } catch {
    return false;
  }
}
