// Traffic counters for the stats API and `$SYS/broker/...`. Plain integers in memory: the hot path
// pays an increment, never a storage write or an allocation. They count since the object last
// started (it is evicted when idle), like a broker process's counters count since it started.
export class Counters {
  /** application messages published into the broker: client PUBLISH, wills, HTTP API, RPC */
  messagesReceived = 0;
  /** PUBLISH packets sent to clients */
  messagesSent = 0;
  /** messages a shared group could not take: no member may read the topic */
  messagesDropped = 0;
  /** WebSocket payload bytes, both directions */
  bytesReceived = 0;
  bytesSent = 0;

  constructor(readonly startedAt: number) {}
}
