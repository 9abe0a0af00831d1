// The broker core in plain Node, as the Durable Object runs it: one MemoryStore, a fake clock,
// sockets whose attachments survive hibernation, and the runtime's output gate (what an event
// sends leaves only once its writes are committed). It can hibernate (memory dropped, sockets
// kept), restart (memory and sockets dropped, storage as last committed) and crash in the middle
// of an event (its writes and sends lost).
import { BrokerCore, type Runtime } from "../../src/broker/core";
import { Connection, type Attachment, type Transport } from "../../src/broker/connection";
import { DEFAULTS, type BrokerConfig } from "../../src/config";
import { MemoryStore, type MemoryState } from "../../src/storage/memory-store";
import { Authenticator } from "../../src/auth/authenticator";
import { loadAuthConfig } from "../../src/auth/config";
import type { Store } from "../../src/storage/store";

/** Thrown by a FaultyStore to stand for the runtime dying in the middle of an event. */
export class Crash extends Error {}

/** One socket as the runtime holds it: the client's end reads what a committed event sent. */
export class SimSocket {
  attachment: Attachment;
  /** sent during the current event, released at commit (the output gate) */
  pending: Uint8Array[] = [];
  closed: { code: number; reason: string } | null = null;
  /** the broker closed it during the current event: the close is released with the sends */
  closing: { code: number; reason: string } | null = null;
  constructor(
    readonly onBytes: (bytes: Uint8Array) => void,
    readonly onClose: (code: number, reason: string) => void,
    now: number,
  ) {
    this.attachment = { seen: now, at: now };
  }
}

export interface SimOptions {
  config?: Partial<BrokerConfig>;
  /** wrangler [vars] for the authenticator (AUTH_MODE, ACL_DEFAULT, ...) */
  authVars?: Record<string, string>;
  /** a store factory to inject faults (gets the committed state) */
  wrapStore?: (store: MemoryStore) => Store;
}

export class SimBroker {
  now = 1_000_000;
  config: BrokerConfig;
  store!: MemoryStore;
  core!: BrokerCore;
  private committed: MemoryState;
  /** when the runtime would run alarm() (null: none armed) */
  alarmAt: number | null = null;
  private laters: (() => void)[] = [];
  private readonly sockets = new Map<SimSocket, Connection>();
  /** sockets the broker closed since the last wake */
  private serverClosed: SimSocket[] = [];
  logs: string[] = [];
  /** events run */
  events = 0;
  /** runtime crashes so far */
  crashes = 0;
  /** set by a fault injector: the current event commits, then the runtime dies before its sends leave */
  crashAfterCommit = false;

  constructor(private readonly options: SimOptions = {}) {
    this.config = { ...DEFAULTS, SYS_INTERVAL: 0, MAX_PUBLISH_RATE: 0, ...options.config };
    this.committed = new MemoryStore().snapshot();
    this.boot([]);
  }

  private boot(live: SimSocket[], from?: MemoryStore): void {
    this.store = from ?? MemoryStore.fromSnapshot(this.committed);
    const runtime: Runtime = {
      now: () => this.now,
      wakeAt: (ms) => {
        if (this.alarmAt === null || ms < this.alarmAt) this.alarmAt = ms;
      },
      rearm: (ms) => {
        this.alarmAt = ms;
      },
      later: (fn) => void this.laters.push(fn),
      log: (level, message) => void this.logs.push(`${level}: ${message}`),
    };
    const store = this.options.wrapStore ? this.options.wrapStore(this.store) : this.store;
    const auth = new Authenticator(loadAuthConfig(this.options.authVars ?? {}), "default", runtime.log, () => this.now);
    this.core = new BrokerCore(store, this.config, runtime, auth);
    this.sockets.clear();
    const conns = live.map((s) => this.connectionOf(s));
    this.run(() => this.core.restore(conns));
  }

  private connectionOf(socket: SimSocket): Connection {
    let conn = this.sockets.get(socket);
    if (conn) return conn;
    const transport: Transport = {
      send: (bytes) => {
        if (socket.closed || socket.closing) throw new Error("socket closed");
        socket.pending.push(bytes.slice());
      },
      close: (code, reason) => {
        if (!socket.closed && !socket.closing) socket.closing = { code, reason };
      },
      saveAttachment: (a) => {
        if (JSON.stringify(a).length > 16384) throw new Error("attachment too large");
        socket.attachment = structuredClone(a);
      },
    };
    conn = new Connection(transport, this.core.config, structuredClone(socket.attachment), this.core.counters);
    this.sockets.set(socket, conn);
    return conn;
  }

  /**
   * One runtime event: `fn`, then the commit that releases its sends. A Crash thrown from the
   * store (or `crashBeforeSend`) loses the event's sends, and its writes unless committed.
   */
  run(fn: () => void): void {
    this.events++;
    try {
      fn();
    } catch (err) {
      if (!(err instanceof Crash)) throw err;
      this.crashNow = true;
    }
    // The core may have caught the Crash (it turns errors into reason codes): the runtime is dead all the same.
    if (this.crashNow) {
      this.crashNow = false;
      this.crash();
      return;
    }
    this.commit();
  }

  /** set by a fault injector when it throws Crash: the current event dies whatever catches it */
  crashNow = false;

  private commit(): void {
    // Only a crash in the middle of an event needs the last commit; between events the store is it.
    if (this.options.wrapStore) this.committed = this.store.snapshot();
    if (this.crashAfterCommit) {
      this.crashAfterCommit = false;
      this.crash();
      return;
    }
    for (const socket of [...this.sockets.keys()]) {
      const out = socket.pending;
      socket.pending = [];
      for (const bytes of out) if (!socket.closed) socket.onBytes(bytes);
      if (socket.closing && !socket.closed) {
        socket.closed = socket.closing;
        socket.onClose(socket.closing.code, socket.closing.reason);
        this.serverClosed.push(socket);
        this.run(() => this.core.socketClosed(this.connectionOf(socket))); // the runtime's webSocketClose
        this.sockets.delete(socket);
      }
    }
  }

  /** The runtime dies: uncommitted writes and unsent packets are lost, every socket drops (1006). */
  crash(): void {
    this.crashes++;
    const sockets = [...this.sockets.keys()];
    for (const s of sockets) {
      s.pending = [];
      s.closing = null;
    }
    this.laters = [];
    this.alarmAt = this.alarmAtFromStorage();
    this.sockets.clear();
    for (const s of sockets) {
      if (s.closed) continue;
      s.closed = { code: 1006, reason: "runtime restarted" };
      s.onClose(1006, "runtime restarted");
    }
    this.boot([], this.options.wrapStore ? undefined : this.store);
  }

  /** A restart between events (deploy, eviction with the sockets lost). */
  restart(): void {
    this.flushLaters();
    this.crash();
  }

  /**
   * The object is evicted while idle; its sockets stay open with their attachments. `lingering`:
   * the runtime still lists the sockets the broker closed (their close not yet complete).
   */
  hibernate(opts: { lingering?: boolean } = {}): void {
    this.flushLaters();
    const live = [...this.sockets.keys()].filter((s) => !s.closed);
    if (opts.lingering) live.unshift(...this.serverClosed);
    this.serverClosed = [];
    this.boot(live, this.store);
  }

  // The alarm is stored by the runtime; memory's wish is an upper bound we keep across a crash.
  private alarmAtFromStorage(): number | null {
    return this.alarmAt;
  }

  /** A new WebSocket (the Worker routed an upgrade to this object). */
  open(onBytes: (b: Uint8Array) => void, onClose: (code: number, reason: string) => void, bridge?: string): SimSocket {
    const socket = new SimSocket(onBytes, onClose, this.now);
    // the X-MQTT-Bridge header of a bridge object's own request
    if (bridge !== undefined) socket.attachment.br = bridge;
    this.run(() => this.core.open(this.connectionOf(socket)));
    return socket;
  }

  /** A frame from the client: one event. */
  receive(socket: SimSocket, bytes: Uint8Array): void {
    if (socket.closed || socket.closing) return;
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    this.run(() => this.core.receive(this.connectionOf(socket), ab));
  }

  /** The client's socket goes away without a close frame. */
  drop(socket: SimSocket): void {
    if (socket.closed) return;
    socket.closed = { code: 1006, reason: "dropped" };
    socket.pending = [];
    const conn = this.sockets.get(socket);
    this.sockets.delete(socket);
    if (conn) this.run(() => this.core.socketClosed(conn));
  }

  /** Deferred work (timers the core asked for), each its own event. */
  flushLaters(): void {
    while (this.laters.length) {
      const fn = this.laters.shift()!;
      this.run(fn);
    }
  }

  /** Moves the clock, running alarms as they fall due. */
  advance(ms: number): void {
    const end = this.now + ms;
    this.flushLaters();
    while (this.alarmAt !== null && this.alarmAt <= end) {
      this.now = Math.max(this.now, this.alarmAt);
      this.alarmAt = null;
      this.run(() => this.core.alarm());
      this.flushLaters();
    }
    this.now = end;
  }
}
