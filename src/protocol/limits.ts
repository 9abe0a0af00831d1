// Numbers MQTT itself fixes.

/** Largest packet id, and the Receive Maximum a client that names none allows [MQTT-2.2.1, 3.1.2.11.3]. */
export const MAX_PACKET_ID = 65535;
/** Largest packet MQTT can frame (a four-byte Remaining Length plus the fixed header): no client limit. */
export const MAX_MQTT_PACKET = 268435460;
