/** MQTT 3.1 (protocol level 3), 3.1.1 (4) and 5.0 (5). */
export type ProtocolVersion = 3 | 4 | 5;
