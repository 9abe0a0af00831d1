// The Durable Object of one namespace: wires the runtime's entry points to the broker core.
// No protocol logic lives here.
import { DurableObject } from "cloudflare:workers";
import { chooseSubprotocol } from "../protocol/subprotocol";
import { BrokerCore, type Runtime } from "./core";
import { Connection, type Attachment, type Transport } from "./connection";
import { loadConfig } from "../config";
import { SqliteStore } from "../storage/sqlite-store";
import * as admin from "./admin";
import { Authenticator } from "../auth/authenticator";
import { PasswordThrottle } from "../auth/throttle";
import { loadAuthConfig } from "../auth/config";
import { inspect, type BrokerSnapshot } from "./inspect";
import type { Env } from "../env";
import { loadRules } from "../rules/setup";
import type { RulesStats } from "../rules/engine";
import { BRIDGE_HEADER, acceptedBridge } from "../bridge/header";
import { ensureBridges } from "../bridge/start";
import { home, parseShardName, shardName } from "../shards/layout";
import { peekClientId } from "../shards/connect-peek";
import { ShardNode } from "../shards/node";
import { mergeStats } from "./merge";
import { advanceGrowth, planStore, type GrowthCalls, type GrowthPlan, type ShardStatus } from "../shards/grow";
import { beginGrowth, endGrowth, exportPage, growthStatus } from "./growth";
import type { LinkAck, LinkBatch } from "../shards/peer";


/** SHARD_LINK_INTERVAL_MS, or 10 ms × (K − 1) when unset */
function linkInterval(config: { SHARD_LINK_INTERVAL_MS: number }, k: number): number {
  return config.SHARD_LINK_INTERVAL_MS >= 0 ? config.SHARD_LINK_INTERVAL_MS : 10 * (k - 1);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

/** A growth from one shard that moved nothing yet (it may be given up). */
function abandonable(plan: GrowthPlan): boolean {
  return plan.from === 1 && (plan.phase === "begin" || plan.phase === "drain");
}

/** Why SHARDS=1 is refused on a namespace whose stored layout (or growth plan) has more shards; null: it serves. */
function oneShardRefusal(storedK: number | null, plan: GrowthPlan | null): string | null {
  const k = plan !== null ? plan.to : storedK;
  if (k === null || k <= 1) return null;
  return `namespace was set up with SHARDS=${k}${plan !== null ? " (a growth to it is under way)" : ""}; SHARDS=1 would hide the sessions of its other shards, so it is refused (set SHARDS back to ${k}: lowering it is not supported)`;
}

/** The auth set-up is said once per process, not at every object start or wake (same env for all). */
let announced = false;

export class NamespaceBroker extends DurableObject<Env> {
  private readonly core: BrokerCore;
  private readonly conns = new Map<WebSocket, Connection>();
  private alarmAt: number | null = null;
  /** the namespace this object serves (its name without the shard suffix), and its shard index */
  private readonly namespace: string | null;
  private readonly shard: number;
  /**
   * SHARDS=1 under a namespace set up with more shards (or growing to more): why it is refused
   * (its other shards' sessions would be hidden); null: it serves. One read of storage at start.
   */
  private oneShardProblem: string | null = null;
  /** K > 1: sockets whose CONNECT has not shown its client id yet, and their bytes so far */
  private readonly peeking = new Map<WebSocket, Uint8Array>();
  /** K > 1: sockets whose CONNECT was read here (their session's home is this shard) */
  private readonly placed = new WeakSet<WebSocket>();
  /** K > 1: sockets tunnelled to their session's home shard, by tunnel id */
  private readonly tunnelled = new Map<WebSocket, string>();
  /** ...and every socket that ever was one (its close event is not the core's) */
  private readonly wasTunnel = new WeakSet<WebSocket>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const runtime: Runtime = {
      now: () => Date.now(),
      wakeAt: (ms) => this.wakeAt(ms),
      rearm: (ms) => this.rearm(ms),
      later: (fn) => void setTimeout(fn, 5),
      log: (level, message) => console[level](`[broker] ${message}`),
    };
    // The namespace is the name the Worker derived this object's id from (less "#<shard>").
    const parsed = ctx.id.name ? parseShardName(ctx.id.name) : null;
    this.namespace = parsed?.namespace ?? null;
    this.shard = parsed?.index ?? 0;
    const auth = new Authenticator(loadAuthConfig(env), this.namespace, runtime.log);
    const config = loadConfig(env);
    const store = new SqliteStore(ctx.storage.sql);
    this.core = new BrokerCore(store, config, runtime, auth);
    const core = this.core;
    core.rules = loadRules(env, this.namespace ?? "", core.rulesHost());
    if (config.SHARDS > 1 && this.namespace !== null) {
      core.joinShards(this.shardNode(config.SHARDS, store, runtime));
      core.namespaceWide = () => this.namespaceStats();
    } else if (this.namespace !== null) {
      let plan = planStore(store).load();
      if (plan !== null && abandonable(plan)) {
        // SHARDS set back to 1 before any session moved: the growth is over, nothing to undo
        store.saveReshard("plan", null);
        store.saveReshard("export", null);
        plan = null;
      }
      this.oneShardProblem = oneShardRefusal(store.loadShardLayout(), plan);
    }
    if (!announced) this.core.auth.announce();
    announced = true;
    this.core.auth.throttle = new PasswordThrottle(this.core.config, runtime.now);
    // Every entry point runs after this: memory is rebuilt before the first event after a wake.
    void ctx.blockConcurrencyWhile(async () => {
      this.alarmAt = await ctx.storage.getAlarm();
      const sockets = ctx.getWebSockets();
      // Rebuilt with sockets or an alarm to serve: a wake-up (after hibernation or an eviction).
      if (sockets.length > 0 || this.alarmAt !== null) {
        this.core.counters.wakeups = 1;
        this.core.eventSeen(this.core.counters.startedAt);
      }
      const mine: WebSocket[] = [];
      for (const ws of sockets) if (!this.restoreTunnel(ws)) mine.push(ws);
      this.core.restore(mine.map((ws) => this.connectionOf(ws)));
      // shard 0 of a namespace whose SHARDS was raised: the growth starts (or resumes) at once
      if (this.core.shards?.growingFrom != null) this.wakeAt(Date.now());
    });
    // This namespace's bridges run in objects of their own: started (idempotently) at every start or wake.
    ensureBridges(env, this.namespace, runtime.log);
  }

  override async fetch(request: Request): Promise<Response> {
    this.core.counters.http++;
    this.core.eventSeen(Date.now());
    // Only a bridge object's request can carry it: the Worker refuses it from outside (index.ts),
    // and it must name a bridge of this namespace.
    const bridge = request.headers.get(BRIDGE_HEADER);
    if (bridge !== null && !acceptedBridge(this.env.BRIDGES, bridge, this.namespace ?? undefined)) {
      return new Response(`${BRIDGE_HEADER}: no such bridge for this namespace\n`, { status: 403 });
    }
    if (this.core.shards?.layoutUnconfirmed && !(await this.confirmLayout())) {
      return new Response("shard 0 of this namespace did not answer; try again\n", { status: 503, headers: { "content-type": "text/plain; charset=utf-8", "retry-after": "1" } });
    }
    const growing = this.growingNotice();
    if (growing !== null) {
      return new Response(`${growing}\n`, { status: 503, headers: { "content-type": "text/plain; charset=utf-8", "retry-after": "1" } });
    }
    const refused = this.core.shards?.layoutProblem ?? this.oneShardProblem;
    if (refused) {
      console.error(`[broker] ${refused}`);
      return new Response(`${refused}\n`, { status: 503, headers: { "content-type": "text/plain; charset=utf-8" } });
    }
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    this.ctx.acceptWebSocket(server);
    const now = Date.now();
    const attachment: Attachment = { seen: now, at: now };
    // Set by Cloudflare's edge (a client cannot forge it there); for the login throttle.
    const address = request.headers.get("CF-Connecting-IP");
    if (address) attachment.ip = address.slice(0, 64);
    if (bridge !== null) attachment.br = bridge;
    server.serializeAttachment(attachment);
    this.core.open(this.connectionOf(server, attachment));
    const protocol = chooseSubprotocol(request.headers.get("Sec-WebSocket-Protocol")); // the Worker refused "unsupported"
    return new Response(null, {
      status: 101,
      webSocket: client,
      headers: protocol && protocol !== "unsupported" ? { "Sec-WebSocket-Protocol": protocol } : {},
    });
  }

  override webSocketMessage(ws: WebSocket, message: ArrayBuffer | string): void | Promise<void> {
    if (this.core.shards && this.entrance(ws, message)) return;
    const conn = this.connectionOf(ws);
    this.core.receive(conn, message);
    // A CONNECT under verification: the event lasts until the verdict is handled.
    return conn.authWork ?? undefined;
  }

  override webSocketClose(ws: WebSocket, code: number): void {
    this.core.eventSeen(Date.now()); // not a billed request, but the object is awake for it
    if (!this.tunnelClosed(ws)) this.core.socketClosed(this.connectionOf(ws));
    this.conns.delete(ws);
    // Answer the close so the client gets its close frame (reserved codes cannot be sent back).
    try {
      ws.close(code === 1005 || code === 1006 || code === 1015 ? 1000 : code, "");
    } catch {
      // already closed
    }
  }

  override webSocketError(ws: WebSocket): void {
    this.core.eventSeen(Date.now());
    if (!this.tunnelClosed(ws)) this.core.socketClosed(this.connectionOf(ws));
    this.conns.delete(ws);
  }

  override async alarm(): Promise<void> {
    this.core.counters.alarms++;
    this.core.eventSeen(Date.now());
    this.alarmAt = null;
    this.core.alarm();
    await this.driveGrowth();
  }

  /** RPC, for tests and tools holding the binding: state and consistency problems (read-only). */
  inspect(): BrokerSnapshot {
    this.rpcEntered();
    return inspect(this.core);
  }

  // ——— RPC from the Worker (HTTP API, BrokerService): inputs are validated there ———

  async publish(msg: admin.ExternalMessage): Promise<admin.PublishOutcome> {
    this.rpcEntered();
    if (this.oneShardProblem !== null) return { refused: this.oneShardProblem, status: 503 };
    if (this.core.shards) {
      // a shard that has not heard the layout may be a new one whose peers' filters have not come yet
      if (this.core.shards.layoutUnconfirmed && !(await this.confirmLayout())) return { refused: "shard 0 of this namespace did not answer; try again", status: 503 };
      const growing = this.growingNotice();
      if (growing !== null) return { refused: growing, status: 503 };
    }
    return admin.publishExternal(this.core, msg);
  }

  clients(): admin.ClientInfo[] {
    this.rpcEntered();
    return admin.listClients(this.core);
  }

  client(clientId: string): admin.ClientDetail | null {
    this.rpcEntered();
    return admin.clientDetail(this.core, clientId);
  }

  retained(filter: string, limit: number): { messages: admin.RetainedMessage[]; truncated: boolean } {
    this.rpcEntered();
    return admin.listRetained(this.core, filter, limit);
  }

  deleteRetained(topic: string): boolean {
    this.rpcEntered();
    return admin.deleteRetained(this.core, topic);
  }

  /** K > 1: the API's removal of a retained message, with the version every shard uses (null: this one makes it). */
  removeRetained(topic: string, version: number | null): { deleted: boolean; version: number } {
    this.rpcEntered();
    if (!this.core.shards) throw new Error("removeRetained: not a shard of a namespace of several");
    return admin.removeRetained(this.core, topic, version);
  }

  disconnect(clientId: string): boolean {
    this.rpcEntered();
    return admin.disconnectClient(this.core, clientId);
  }

  /** RPC: the rules' counters and pending sends (docs/rules.md); null without RULES */
  ruleStats(): RulesStats | null {
    this.rpcEntered();
    return this.core.rules?.stats() ?? null;
  }

  stats(): admin.NamespaceStats {
    this.rpcEntered();
    return admin.namespaceStats(this.core);
  }

  /**
   * RPC for crash tests only (TEST_HOOKS = "1"): resets the object as a crash would: memory and
   * sockets gone, storage as last committed. Refused otherwise.
   */
  testCrash(): void {
    if (this.env.TEST_HOOKS !== "1") throw new Error("testCrash needs TEST_HOOKS=1");
    this.ctx.abort("crash test");
  }

  /** RPC from another shard: the number of shards this one serves with, or why it refuses, or that it grows to it. */
  shardLayout(): { k: number; problem: string | null; growing: string | null } {
    this.rpcEntered();
    const shards = this.core.shards;
    void this.driveGrowth();
    return shards ? shards.layout() : { k: 1, problem: null, growing: null };
  }

  /** RPC from shard 0 while the namespace's shards grow (src/shards/grow.ts): one step of this shard's part. */
  shardGrowth(step: "begin" | "status" | "export" | "end", from: number, to: number): ShardStatus | boolean | null {
    this.rpcEntered();
    const shards = this.core.shards;
    if (!shards || shards.k !== to) throw new Error(`shard ${this.shard} of ${this.namespace} does not serve with SHARDS=${to}`);
    if (step === "begin") beginGrowth(this.core, from, to);
    else if (step === "status") return growthStatus(this.core);
    else if (step === "export") return exportPage(this.core, from, to);
    else endGrowth(this.core, to);
    return null;
  }

  /** Why a socket or publish is refused now because the namespace's shards change (null: it is not). */
  private growingNotice(): string | null {
    const shards = this.core.shards;
    if (!shards) return null;
    if (shards.growingFrom !== null) {
      void this.driveGrowth();
      return shards.growingNotice();
    }
    if (shards.paused || shards.layoutUnconfirmed) return shards.growingNotice();
    return null;
  }

  /** the growth under way, driven by shard 0 (one at a time) */
  private growth: Promise<void> | null = null;

  /** Shard 0: moves the namespace's growth on (src/shards/grow.ts); again from the alarm until it is done. */
  private driveGrowth(): Promise<void> {
    const shards = this.core.shards;
    if (!shards || this.shard !== 0 || shards.growingFrom === null) return Promise.resolve();
    if (this.growth) return this.growth;
    const from = shards.growingFrom;
    const core = this.core;
    const store = core.store;
    const plans = planStore(store);
    const calls: GrowthCalls = {
      begin: async (i, f, t) => void (i === 0 ? beginGrowth(core, f, t) : await this.peer(i).shardGrowth("begin", f, t)),
      status: async (i) => (i === 0 ? growthStatus(core) : ((await this.peer(i).shardGrowth("status", from, shards.k)) as ShardStatus)),
      exportPage: async (i, f, t) => (i === 0 ? exportPage(core, f, t) : ((await this.peer(i).shardGrowth("export", f, t)) as boolean)),
      end: async (i, t) => void (i === 0 ? endGrowth(core, t) : await this.peer(i).shardGrowth("end", from, t)),
    };
    this.growth = advanceGrowth(plans, from, shards.k, calls)
      .then(
        (done) => {
          if (done) console.info(`[broker] namespace ${this.namespace} now serves with SHARDS=${shards.k} (grown from ${from})`);
          else this.wakeAt(Date.now() + 200);
        },
        (err) => {
          console.error(`[broker] growing namespace ${this.namespace} to SHARDS=${shards.k}: ${(err as Error)?.message ?? String(err)}; trying again`);
          this.wakeAt(Date.now() + 1000);
        },
      )
      .finally(() => {
        this.growth = null;
      });
    return this.growth;
  }

  /** A shard other than 0, before its first socket: shard 0 says whether the namespace was set up with this K. */
  private async confirmLayout(): Promise<boolean> {
    const shards = this.core.shards!;
    try {
      const answer = (await this.peer(0).shardLayout()) as { k: number; problem: string | null };
      if (shards.layoutUnconfirmed) shards.confirmLayout(answer);
      return true;
    } catch (err) {
      // asked again at the next socket
      console.error(`[broker] shard ${this.shard}: shard 0 did not confirm the layout: ${(err as Error)?.message ?? String(err)}`);
      return false;
    }
  }

  /** RPC from another shard of the namespace: a batch on its link to this one (src/shards/link.ts). */
  shardLink(batch: LinkBatch): LinkAck {
    this.rpcEntered();
    const shards = this.core.shards;
    if (!shards) throw new Error(`shard ${this.shard} of ${this.namespace} is not part of a sharded namespace (SHARDS differs?)`);
    if (shards.layoutProblem) throw new Error(shards.layoutProblem);
    return shards.receive(batch);
  }

  // ——— K > 1: a socket whose client's home is another shard becomes a tunnel to it ———

  /**
   * A frame on a tunnelled socket goes to the home; a frame of a CONNECT not yet read far enough
   * is held; a CONNECT whose client id's home is another shard opens a tunnel there. True when the
   * frame was taken here (the core does not see it).
   */
  private entrance(ws: WebSocket, message: ArrayBuffer | string): boolean {
    const shards = this.core.shards!;
    const tunnel = this.tunnelled.get(ws);
    if (tunnel !== undefined) {
      this.frameSeen();
      const text = typeof message === "string";
      if (!shards.tunnelData(tunnel, text ? new Uint8Array(0) : new Uint8Array(message), text)) this.closeTunnelled(ws, 1011, "tunnel gone");
      return true;
    }
    if (this.placed.has(ws) || typeof message === "string") return false;
    const conn = this.connectionOf(ws);
    if (conn.state !== "awaiting-connect") return false;
    const held = this.peeking.get(ws);
    const bytes = held ? concat(held, new Uint8Array(message)) : new Uint8Array(message);
    const peeked = peekClientId(bytes);
    if ("more" in peeked && bytes.byteLength <= this.core.config.MAX_CONNECT_PACKET_SIZE) {
      this.frameSeen();
      if (this.core.holdPeeked(conn, bytes.byteLength)) this.peeking.set(ws, bytes);
      else this.peeking.delete(ws);
      return true;
    }
    this.peeking.delete(ws);
    this.placed.add(ws);
    const to = "clientId" in peeked && peeked.clientId !== "" ? home(peeked.clientId, shards.k) : this.shard;
    if (to === this.shard) {
      if (!held) return false;
      this.core.receive(conn, bytes); // what was held, and this frame
      return true;
    }
    this.frameSeen();
    const id = `${this.shard}.${crypto.randomUUID()}`;
    this.core.forget(conn);
    this.conns.delete(ws);
    ws.serializeAttachment({ seen: Date.now(), at: conn.openedAt, tn: id, th: to } satisfies Attachment);
    this.tunnelled.set(ws, id);
    this.wasTunnel.add(ws);
    shards.tunnelOpen(to, id, this.tunnelSocket(ws), bytes, { ip: conn.address, br: conn.bridge });
    return true;
  }

  /** a frame the core does not see is still a billed event */
  private frameSeen(): void {
    this.core.frameSeen(Date.now());
  }

  private tunnelSocket(ws: WebSocket) {
    return {
      send: (bytes: Uint8Array) => {
        try {
          ws.send(bytes);
        } catch {
          // gone: its close event tells the home
        }
      },
      close: (code: number, reason: string) => this.closeTunnelled(ws, code, reason),
    };
  }

  private closeTunnelled(ws: WebSocket, code: number, reason: string): void {
    this.tunnelClosed(ws);
    try {
      ws.close(code, reason.slice(0, 120));
    } catch {
      try {
        ws.close(code, "");
      } catch {
        // already closed
      }
    }
  }

  /** A tunnelled socket's close: the home hears it. False for any other socket. */
  private tunnelClosed(ws: WebSocket): boolean {
    this.peeking.delete(ws);
    const id = this.tunnelled.get(ws);
    if (id === undefined) return this.wasTunnel.has(ws);
    this.tunnelled.delete(ws);
    this.core.shards?.tunnelClosed(id);
    return true;
  }

  /** At a wake: a socket that was a tunnel is one again. */
  private restoreTunnel(ws: WebSocket): boolean {
    const att = ws.deserializeAttachment() as Attachment | null;
    if (att?.tn === undefined) return false;
    const shards = this.core.shards;
    if (!shards || att.th === undefined || att.th >= shards.k) {
      try {
        ws.close(1011, "the namespace's shards changed");
      } catch {
        // already closed
      }
      return true;
    }
    this.tunnelled.set(ws, att.tn);
    this.wasTunnel.add(ws);
    this.placed.add(ws);
    shards.tunnelRestore(att.th, att.tn, this.tunnelSocket(ws));
    return true;
  }

  /** `$SYS` at K > 1: every shard's stats, merged (one call per other shard). */
  private async namespaceStats(): Promise<admin.NamespaceStats> {
    const k = this.core.shards!.k;
    const others = [];
    for (let i = 0; i < k; i++) if (i !== this.shard) others.push(this.peer(i).stats() as Promise<admin.NamespaceStats>);
    return mergeStats([admin.namespaceStats(this.core), ...(await Promise.all(others))]);
  }

  /** the object of shard `i` of this namespace */
  private peer(i: number) {
    const broker = this.env.BROKER as DurableObjectNamespace<NamespaceBroker>;
    return broker.get(broker.idFromName(shardName(this.namespace!, i)));
  }

  /** This object's part in a namespace of `k` shards: links to the others by RPC. */
  private shardNode(k: number, store: SqliteStore, runtime: Runtime): ShardNode {
    return new ShardNode(this.shard, k, store, {
      self: this.shard,
      k,
      now: () => Date.now(),
      call: (target, batch) => this.peer(target).shardLink(batch) as Promise<LinkAck>,
      sync: () => this.ctx.storage.sync(),
      wakeAt: (ms) => this.wakeAt(ms),
      later: (fn, ms) => (ms !== undefined && ms > 5 ? void setTimeout(() => this.core.later(fn), ms - 5) : this.core.later(fn)),
      log: runtime.log,
      onFailure: (target) => this.core.shards?.linkFailed(target),
    }, this.core, { minInterval: linkInterval(this.core.config, k) });
  }

  private rpcEntered(): void {
    this.core.counters.rpc++;
    this.core.eventSeen(Date.now());
  }

  private wakeAt(ms: number): void {
    if (this.alarmAt !== null && this.alarmAt <= ms) return;
    this.alarmAt = ms;
    void this.ctx.storage.setAlarm(ms);
  }

  private rearm(ms: number | null): void {
    if (ms === this.alarmAt) return;
    this.alarmAt = ms;
    void (ms === null ? this.ctx.storage.deleteAlarm() : this.ctx.storage.setAlarm(ms));
  }

  private connectionOf(ws: WebSocket, attachment?: Attachment): Connection {
    let conn = this.conns.get(ws);
    if (!conn) {
      const transport: Transport = {
        send: (bytes) => ws.send(bytes),
        close: (code, reason) => ws.close(code, reason),
        saveAttachment: (a) => ws.serializeAttachment(a),
      };
      const att = attachment ?? (ws.deserializeAttachment() as Attachment | null) ?? { seen: Date.now(), at: Date.now() };
      conn = new Connection(transport, this.core.config, att, this.core.counters);
      this.conns.set(ws, conn);
    }
    return conn;
  }
}
