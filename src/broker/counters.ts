// Traffic counters for the stats API and `$SYS/broker/...`. Plain integers in memory: the hot path
// pays an increment, never a storage write or an allocation. They count since the object last
// started (it is evicted when idle), like a broker process's counters count since it started.
import { DROP, DROP_REASONS } from "../session/drops";

export class Counters {
  /** application messages published into the broker: client PUBLISH, wills, HTTP API, RPC */
  messagesReceived = 0;
  /** PUBLISH packets sent to clients */
  messagesSent = 0;
  /** WebSocket payload bytes, both directions */
  bytesReceived = 0;
  bytesSent = 0;
  /**
   * By QoS (index 0..2): application messages received (as messagesReceived counts them) and
   * their payload bytes; PUBLISH packets sent and their payload bytes. Fixed typed arrays: an
   * increment at an index, no lookup, no allocation.
   */
  readonly receivedByQos = new Float64Array(3);
  readonly receivedBytesByQos = new Float64Array(3);
  readonly sentByQos = new Float64Array(3);
  readonly sentBytesByQos = new Float64Array(3);
  /** dropped messages by reason (session/drops.ts: DROP indexes, DROP_REASONS names) */
  readonly drops = new Float64Array(DROP_REASONS.length);
  /** CONNECTs refused for their credentials or rights (bad user name or password, not authorized, bad method) */
  authFailures = 0;

  /** messages a shared group could not take: no member may read the topic */
  get messagesDropped(): number {
    return this.drops[DROP.NO_SHARED_MEMBER]!;
  }

  // ——— billed events of this life of the object (see EventTotals) ———
  /** WebSocket messages (frames) received */
  websocketMessages = 0;
  /** RPC method calls entered (the Worker's HTTP API and BrokerService, tools) */
  rpc = 0;
  /** HTTP requests entered (`fetch`: the WebSocket upgrades) */
  http = 0;
  /** alarm runs */
  alarms = 0;
  /** 1 when this life began as a wake-up: the constructor found live sockets or a stored alarm */
  wakeups = 0;
  /** when the last event of this life began (ms); startedAt until one came */
  lastEventAt: number;
  /** what earlier lives counted, as last saved */
  base: EventTotals;
  /** when the totals were last saved (ms; -Infinity: never) */
  savedAt = -Infinity;

  constructor(readonly startedAt: number) {
    this.lastEventAt = startedAt;
    this.base = noEvents(startedAt);
  }

  /**
   * The billed events since `base.since`: earlier lives (as saved) plus this one. `rowsWritten`:
   * the rows this life's store wrote so far.
   */
  events(rowsWritten: number): EventTotals {
    const b = this.base;
    return {
      since: b.since,
      websocketMessages: b.websocketMessages + this.websocketMessages,
      rpc: b.rpc + this.rpc,
      http: b.http + this.http,
      alarms: b.alarms + this.alarms,
      wakeups: b.wakeups + this.wakeups,
      awakeMs: b.awakeMs + (this.lastEventAt - this.startedAt),
      rowsWritten: b.rowsWritten + rowsWritten,
    };
  }
}

/**
 * What the platform bills, counted by the broker (the stats API's `events`). Accumulated over the
 * object's lives (each wake from hibernation rebuilds it) since `since`, the first time they were
 * saved. They are saved (one row) in the first event that finds the last save older than
 * EVENTS_SAVE_INTERVAL (config.ts), never by a timer (a pending timer would keep an idle object
 * from hibernating, which is billed): what a life counted after its last save is lost when it
 * hibernates or is evicted. A stats reading from the object while it is awake is exact.
 * - websocketMessages: WebSocket frames received (billed as 1/20 request each)
 * - rpc: RPC calls into the object (one request each; the stats call reading them included)
 * - http: HTTP requests to the object, i.e. WebSocket upgrades (one request each)
 * - alarms: alarm runs (one request each)
 * - wakeups: lives that began with live sockets or a stored alarm (rebuilt after hibernation or eviction)
 * - awakeMs: Σ over lives of (start of the life's last event − construction); the time the object
 *   was needed in memory. The runtime bills wall-clock while an object runs or cannot hibernate, so
 *   the bill adds each event's own run time and any time a pending timer kept it awake.
 * - rowsWritten: SQLite rows written (the storage API's own counter, per statement)
 */
export interface EventTotals {
  /** ms epoch the totals count from */
  since: number;
  websocketMessages: number;
  rpc: number;
  http: number;
  alarms: number;
  wakeups: number;
  awakeMs: number;
  rowsWritten: number;
}

/** When the saved totals were saved (-Infinity: never, or unreadable). */
export function savedAtOf(text: string | null): number {
  if (text === null) return -Infinity;
  try {
    const t = (JSON.parse(text) as { savedAt?: unknown }).savedAt;
    return typeof t === "number" && Number.isFinite(t) ? t : -Infinity;
  } catch {
    return -Infinity;
  }
}

export function noEvents(since: number): EventTotals {
  return { since, websocketMessages: 0, rpc: 0, http: 0, alarms: 0, wakeups: 0, awakeMs: 0, rowsWritten: 0 };
}

/** The saved form: the totals and when they were saved. */
export function eventsToJson(totals: EventTotals, savedAt: number): string {
  return JSON.stringify({ ...totals, savedAt });
}

/** A stored EventTotals, checked: anything unreadable counts from `now` again. */
export function eventsFromJson(text: string | null, now: number): EventTotals {
  if (text === null) return noEvents(now);
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    const out = noEvents(now);
    for (const k of Object.keys(out) as (keyof EventTotals)[]) {
      const n = v[k];
      if (typeof n !== "number" || !Number.isFinite(n) || n < 0) return noEvents(now);
      out[k] = n;
    }
    return out;
  } catch {
    return noEvents(now);
  }
}
