// A namespace spread over K shards in plain Node (docs/scale-out.md): K BrokerCores, each with its
// own MemoryStore, runtime and authenticator, joined by ShardNodes whose link calls are events on
// the target shard. One queue of events for the whole cluster (client frames, later() work, link
// calls and their replies, storage syncs, alarms), run one at a time in an order the test picks.
// Each event's writes commit at its end and what it sends (socket bytes, calls, replies, later
// events) leaves only then: the output gate. A crash before the commit loses the event's writes
// and sends (a call it served fails for its caller); after it, the writes stay and the sends are
// lost. Either way the shard's memory and sockets are gone and it starts again from storage.
import { BrokerCore, type Runtime } from "../../src/broker/core";
import { Connection, type Transport } from "../../src/broker/connection";
import { DEFAULTS, type BrokerConfig } from "../../src/config";
import { MemoryStore, type MemoryState } from "../../src/storage/memory-store";
import { Authenticator } from "../../src/auth/authenticator";
import { loadAuthConfig } from "../../src/auth/config";
import type { Store } from "../../src/storage/store";
import { ShardNode } from "../../src/shards/node";
import type { LinkHost } from "../../src/shards/link";
import type { LinkAck, LinkBatch } from "../../src/shards/peer";
import { home } from "../../src/shards/layout";
import { Crash, SimSocket } from "./broker";
import type { ClientLink } from "./client";

export type Fate = "ok" | "fail" | "lose";
export type CrashAt = "none" | "before" | "after";

type Event =
  | { kind: "local"; shard: number; epoch: number; run: () => void }
  | { kind: "call"; shard: number; from: number; fromEpoch: number; batch: LinkBatch; resolve: (ack: LinkAck) => void; reject: (err: Error) => void; run?: () => unknown }
  | { kind: "open" | "frame" | "close"; shard: number; socket: ClusterSocket; bytes?: Uint8Array };

/** A socket of the cluster: bound to one incarnation of one shard. */
export class ClusterSocket extends SimSocket {
  epoch = 0;
  constructor(
    readonly shard: number,
    onBytes: (b: Uint8Array) => void,
    onClose: (code: number, reason: string) => void,
    now: number,
  ) {
    super(onBytes, onClose, now);
  }
}

const WRITE = /^(save|mark|clear|delete|set|add|drop|update|remove)/;
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

export class SimShard {
  epoch = 0;
  store: MemoryStore;
  committed: MemoryState;
  core!: BrokerCore;
  node!: ShardNode;
  alarmAt: number | null = null;
  /** sockets of the current incarnation, opened or about to be */
  readonly sockets = new Map<ClusterSocket, Connection | null>();
  /** rows written over every incarnation (MemoryStore counts from its own start) */
  rowsBefore = 0;
  /** rows written, by the store method that wrote them (for the figures) */
  readonly rowsByCall = new Map<string, number>();
  /** set when the crash point was reached inside a continuation: the event dies at its end */
  crashNow = false;
  constructor(readonly index: number) {
    this.store = new MemoryStore();
    this.committed = this.store.snapshot();
  }
  get rowsWritten(): number {
    return this.rowsBefore + this.store.rowsWritten;
  }
}

export interface ClusterOptions {
  k: number;
  config?: Partial<BrokerConfig>;
  authVars?: Record<string, string>;
  /** How far the clock moves while a crashed shard restarts (default 0: the worst case for versions made by the clock). */
  restartMs?: number;
  /** committed storage of shards 0 … n − 1 from an earlier deployment (a raised SHARDS); the others start empty */
  states?: MemoryState[];
}

export class SimCluster {
  now = 1_000_000;
  readonly k: number;
  readonly config: BrokerConfig;
  readonly shards: SimShard[] = [];
  queue: Event[] = [];
  /** what the running event sent: released at its commit */
  private out: Event[] = [];
  /** the shard whose event is running (null: none) */
  private running: SimShard | null = null;
  private inBody = false;
  events = 0;
  /** events that wrote storage, over the whole cluster */
  writeEvents = 0;
  /** their numbers (as `crashEvent` counts them) */
  readonly writingEvents: number[] = [];
  private lastWriteEvent = -1;
  crashes = 0;
  logs: string[] = [];
  /** crash the shard that runs the n-th event writing storage, before or after its commit */
  crashPlan: { writeEvent: number; after: boolean } | null = null;
  /** crash the shard that runs the n-th event (counted from 1), whatever it does, before or after its commit */
  crashEvent: { event: number; after: boolean } | null = null;
  /** what the planned crash hit */
  crashedAt: string | null = null;
  /** called after every event (the model reads what the clients got) */
  onEvent: () => void = () => {};

  constructor(private readonly options: ClusterOptions) {
    this.k = options.k;
    this.config = { ...DEFAULTS, SYS_INTERVAL: 0, MAX_PUBLISH_RATE: 0, SHARDS: options.k, ...options.config };
    for (let i = 0; i < this.k; i++) this.shards.push(new SimShard(i));
    (options.states ?? []).forEach((state, i) => {
      const shard = this.shards[i]!;
      shard.store = MemoryStore.fromSnapshot(state);
      shard.committed = shard.store.snapshot();
    });
  }

  /** `run` as one event of shard `index`'s current incarnation, queued (as an alarm or an RPC it serves would be). */
  post(index: number, run: () => void): void {
    this.queue.push({ kind: "local", shard: index, epoch: this.shards[index]!.epoch, run });
  }

  /**
   * An RPC from shard `from` (its running event sends it) to shard `target`: `run` is one event
   * there, and its answer (or a failure: a fate, a crash) one event of the caller's incarnation.
   * Stepped like a link call (fates and crashes apply).
   */
  rpc<T>(from: number, target: number, run: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const ev: Event = {
        kind: "call",
        shard: target,
        from,
        fromEpoch: this.shards[from]!.epoch,
        batch: { from, chunks: [], volatile: [] },
        resolve: (ack) => resolve((ack as unknown as { value: T }).value),
        reject,
        run,
      };
      if (this.running?.index === from) this.out.push(ev);
      else this.queue.push(ev);
    });
  }

  /** Starts every shard (their first events). */
  async start(): Promise<void> {
    for (const s of this.shards) await this.boot(s);
  }

  /** The shard a hinted client connects to. */
  homeOf(clientId: string): number {
    return home(clientId, this.k);
  }

  /** What a client connecting to shard `index` talks to. */
  gate(index: number): ClientLink {
    return {
      open: (onBytes, onClose) => {
        const shard = this.shards[index]!;
        const socket = new ClusterSocket(index, onBytes, onClose, this.now);
        socket.epoch = shard.epoch;
        shard.sockets.set(socket, null);
        this.queue.push({ kind: "open", shard: index, socket });
        return socket;
      },
      receive: (socket, bytes) => {
        if (socket.closed || socket.closing) return;
        this.queue.push({ kind: "frame", shard: index, socket: socket as ClusterSocket, bytes: bytes.slice() });
      },
      drop: (socket) => {
        if (socket.closed) return;
        socket.closed = { code: 1006, reason: "dropped" };
        socket.pending = [];
        this.queue.push({ kind: "close", shard: index, socket: socket as ClusterSocket });
      },
    };
  }

  // ——— one shard's incarnation ———

  private async boot(shard: SimShard): Promise<void> {
    const epoch = shard.epoch;
    const live = () => shard.epoch === epoch;
    const emit = (e: Event) => {
      if (live()) this.out.push(e);
    };
    const wakeAt = (ms: number) => {
      if (live() && (shard.alarmAt === null || ms < shard.alarmAt)) shard.alarmAt = ms;
    };
    const runtime: Runtime = {
      now: () => this.now,
      wakeAt,
      rearm: (ms) => {
        if (live()) shard.alarmAt = ms;
      },
      later: (fn) => emit({ kind: "local", shard: shard.index, epoch, run: fn }),
      log: (level, message) => void this.logs.push(`${shard.index}/${level}: ${message}`),
    };
    const store = this.faulty(shard);
    const auth = new Authenticator(loadAuthConfig(this.options.authVars ?? {}), "default", runtime.log, () => this.now);
    const core = new BrokerCore(store, this.config, runtime, auth);
    const linkHost: LinkHost = {
      self: shard.index,
      k: this.k,
      now: () => this.now,
      call: (target, batch) => new Promise<LinkAck>((resolve, reject) => emit({ kind: "call", shard: target, from: shard.index, fromEpoch: epoch, batch, resolve, reject })),
      sync: () => new Promise<void>((resolve) => emit({ kind: "local", shard: shard.index, epoch, run: resolve })),
      wakeAt,
      later: (fn) => core.later(fn),
      log: runtime.log,
      onFailure: (target) => core.shards?.linkFailed(target),
    };
    const node = new ShardNode(shard.index, this.k, store, linkHost, core);
    core.joinShards(node);
    shard.core = core;
    shard.node = node;
    await this.exec(shard, () => core.restore([]), "none");
  }

  /** The shard's store, dying at the planned write event. */
  private faulty(shard: SimShard): Store {
    const epoch = shard.epoch;
    const target = shard.store;
    return new Proxy(target, {
      get: (t, prop, receiver) => {
        const value = Reflect.get(t, prop, receiver);
        if (typeof value !== "function") return value;
        if (!WRITE.test(String(prop))) return value.bind(t);
        return (...args: unknown[]) => {
          const before = t.rowsWritten;
          try {
            return this.write(shard, epoch, t, prop, value, args);
          } finally {
            shard.rowsByCall.set(String(prop), (shard.rowsByCall.get(String(prop)) ?? 0) + t.rowsWritten - before);
          }
        };
      },
    }) as Store;
  }

  /** A write of `shard`'s store: the first of an event counts as a storage step, where the planned crash may hit. */
  private write(shard: SimShard, epoch: number, t: MemoryStore, prop: string | symbol, value: (...a: unknown[]) => unknown, args: unknown[]): unknown {
    if (shard.epoch === epoch && this.running === shard && this.lastWriteEvent !== this.events) {
      this.lastWriteEvent = this.events;
      this.writeEvents++;
      this.writingEvents.push(this.events);
      const plan = this.crashPlan;
      if (plan && plan.writeEvent === this.writeEvents && this.crashedAt === null) {
        this.crashedAt = `shard ${shard.index}, event ${this.events}, ${String(prop)}${plan.after ? " (after its commit)" : ""}`;
        if (plan.after) this.crashAfter = true;
        else {
          shard.crashNow = true;
          if (this.inBody) throw new Crash();
        }
      }
    }
    return value.apply(t, args);
  }

  private crashAfter = false;

  /**
   * One event on `shard`: `body`, the continuations it resumed, then the commit. `served`: the
   * call this event answers (its reply leaves with the commit; a crash makes it a failure).
   */
  private async exec(shard: SimShard, body: () => LinkAck | void, crash: CrashAt, served?: { ev: Extract<Event, { kind: "call" }>; fate: Fate }): Promise<void> {
    this.events++;
    if (this.crashEvent?.event === this.events && this.crashedAt === null) {
      crash = this.crashEvent.after ? "after" : "before";
      this.crashedAt = `shard ${shard.index}, event ${this.events}${this.crashEvent.after ? " (after its commit)" : ""}`;
    }
    const outer = this.out;
    this.out = [];
    this.running = shard;
    this.inBody = true;
    let ack: LinkAck | void = undefined;
    let failed = false;
    try {
      ack = body();
    } catch (err) {
      if (!(err instanceof Crash)) {
        // a call whose apply threw: the caller sees a failure (the runtime's RPC exception)
        if (!served) throw err;
        failed = true;
        this.logs.push(`${shard.index}/error: call threw ${String(err)}`);
      }
    }
    this.inBody = false;
    await tick(); // the continuations this event resumed run within it
    this.running = null;
    const sent = this.out;
    this.out = outer;
    const failure = served ? this.reply(served.ev, null) : null;
    if (shard.crashNow || crash === "before") {
      shard.crashNow = false;
      if (failure) this.queue.push(failure);
      await this.crash(shard);
      this.onEvent();
      return;
    }
    shard.committed = shard.store.snapshot();
    if (this.crashAfter || crash === "after") {
      this.crashAfter = false;
      if (failure) this.queue.push(failure);
      await this.crash(shard);
      this.onEvent();
      return;
    }
    this.queue.push(...sent);
    if (served) this.queue.push(failed || served.fate === "lose" || !ack ? failure! : this.reply(served.ev, ack));
    this.release(shard);
    this.onEvent();
  }

  private reply(ev: Extract<Event, { kind: "call" }>, ack: LinkAck | null): Event {
    return { kind: "local", shard: ev.from, epoch: ev.fromEpoch, run: () => (ack ? ev.resolve(ack) : ev.reject(new Error("call failed"))) };
  }

  /** the sockets get what the committed event sent them; a close the broker made is the runtime's webSocketClose */
  private release(shard: SimShard): void {
    for (const socket of [...shard.sockets.keys()]) {
      const out = socket.pending;
      socket.pending = [];
      for (const bytes of out) if (!socket.closed) socket.onBytes(bytes);
      if (socket.closing && !socket.closed) {
        socket.closed = socket.closing;
        socket.onClose(socket.closing.code, socket.closing.reason);
        this.queue.push({ kind: "close", shard: shard.index, socket });
      }
    }
  }

  /** The shard dies: memory, sockets and queued work of this incarnation gone; storage as last committed. */
  async crash(shard: SimShard): Promise<void> {
    this.crashes++;
    this.now += this.options.restartMs ?? 0;
    shard.rowsBefore += shard.store.rowsWritten;
    shard.epoch++;
    shard.store = MemoryStore.fromSnapshot(shard.committed);
    const sockets = [...shard.sockets.keys()];
    shard.sockets.clear();
    // its later events, replies to its calls and its sockets' frames went with it; calls to it wait for the new one
    this.queue = this.queue.filter((e) => e.shard !== shard.index || e.kind === "call");
    for (const s of sockets) {
      s.pending = [];
      s.closing = null;
      if (s.closed) continue;
      s.closed = { code: 1006, reason: "runtime restarted" };
      s.onClose(1006, "runtime restarted");
    }
    await this.boot(shard);
  }

  // ——— running the queue ———

  /**
   * The event at `pick`. What clients send a shard, and a shard's later events, keep their order
   * (one lane per shard each); calls and replies go in any order (one call per link at a time).
   */
  private take(pick: number): Event | null {
    if (this.queue.length === 0) return null;
    let i = pick % this.queue.length;
    const chosen = this.queue[i]!;
    if (chosen.kind === "open" || chosen.kind === "frame" || chosen.kind === "close") i = this.queue.findIndex((e) => e.kind !== "local" && e.kind !== "call" && e.shard === chosen.shard);
    else if (chosen.kind === "local") i = this.queue.findIndex((e) => e.kind === "local" && e.shard === chosen.shard);
    return this.queue.splice(i, 1)[0]!;
  }

  /** Runs one queued event; `fate` applies if it is a link call, `crash` to the shard that runs it. */
  async step(pick: number, fate: Fate = "ok", crash: CrashAt = "none"): Promise<boolean> {
    const ev = this.take(pick);
    if (!ev) return false;
    const shard = this.shards[ev.shard];
    if (!shard) {
      // a shard beyond K (a link or call left from a larger K): the object refuses it
      if (ev.kind === "call") this.queue.push(this.reply(ev, null));
      return true;
    }
    switch (ev.kind) {
      case "local":
        if (ev.epoch !== shard.epoch) return true;
        await this.exec(shard, () => ev.run(), crash);
        return true;
      case "call":
        if (fate === "fail") {
          this.queue.push(this.reply(ev, null));
          return true;
        }
        await this.exec(shard, () => (ev.run ? ({ value: ev.run() } as unknown as LinkAck) : shard.node.receive(ev.batch)), crash, { ev, fate });
        return true;
      case "open": {
        if (ev.socket.epoch !== shard.epoch) return true;
        const conn = this.connectionOf(shard, ev.socket);
        await this.exec(shard, () => shard.core.open(conn), crash);
        return true;
      }
      case "frame": {
        const s = ev.socket;
        if (s.epoch !== shard.epoch || s.closed || s.closing) return true;
        const conn = this.connectionOf(shard, s);
        const bytes = ev.bytes!;
        const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
        await this.exec(shard, () => shard.core.receive(conn, ab), crash);
        return true;
      }
      case "close": {
        const s = ev.socket;
        if (s.epoch !== shard.epoch) return true;
        const conn = shard.sockets.get(s);
        shard.sockets.delete(s);
        if (conn) await this.exec(shard, () => shard.core.socketClosed(conn), crash);
        return true;
      }
    }
  }

  private connectionOf(shard: SimShard, socket: ClusterSocket): Connection {
    let conn = shard.sockets.get(socket);
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
        socket.attachment = structuredClone(a);
      },
    };
    conn = new Connection(transport, shard.core.config, structuredClone(socket.attachment), shard.core.counters);
    shard.sockets.set(socket, conn);
    return conn;
  }

  /** Runs what is queued, oldest first, with no fault, until nothing is left (alarms not fired). */
  async drain(limit = 10_000): Promise<void> {
    for (let i = 0; i < limit && this.queue.length > 0; i++) await this.step(0);
    if (this.queue.length > 0) throw new Error("the cluster never went quiet");
  }

  /** Moves the clock by `ms`, firing the alarms that fall due (each an event). */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      let next: SimShard | null = null;
      for (const s of this.shards) if (s.alarmAt !== null && s.alarmAt <= end && (next === null || s.alarmAt < next.alarmAt!)) next = s;
      if (!next) break;
      this.now = Math.max(this.now, next.alarmAt!);
      next.alarmAt = null;
      const core = next.core;
      await this.exec(next, () => core.alarm(), "none");
    }
    this.now = end;
  }

  /** No more faults: the queue and the alarms (up to `horizonMs` ahead) run until nothing is left. */
  async settle(horizonMs = 10 * 60_000): Promise<void> {
    const end = this.now + horizonMs;
    for (let i = 0; i < 50_000; i++) {
      if (this.queue.length > 0) {
        await this.step(0);
        continue;
      }
      let at: number | null = null;
      for (const s of this.shards) if (s.alarmAt !== null && (at === null || s.alarmAt < at)) at = s.alarmAt;
      if (at === null || at > end) return;
      await this.advance(Math.max(0, at - this.now));
    }
    throw new Error("the cluster never settled");
  }

  /** chunks still owed between shards */
  pendingChunks(): number {
    return this.shards.reduce((n, s) => n + s.node.links.pendingAll(), 0);
  }
}
