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
import { parseShardName, shardName } from "../shards/layout";
import { ShardNode } from "../shards/node";
import type { LinkAck, LinkBatch } from "../shards/peer";


/** The auth set-up is said once per process, not at every object start or wake (same env for all). */
let announced = false;

export class NamespaceBroker extends DurableObject<Env> {
  private readonly core: BrokerCore;
  private readonly conns = new Map<WebSocket, Connection>();
  private alarmAt: number | null = null;
  /** the namespace this object serves (its name without the shard suffix), and its shard index */
  private readonly namespace: string | null;
  private readonly shard: number;

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
    if (config.SHARDS > 1 && this.namespace !== null) core.shards = this.shardNode(config.SHARDS, store, runtime);
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
      this.core.restore(sockets.map((ws) => this.connectionOf(ws)));
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
    const conn = this.connectionOf(ws);
    this.core.receive(conn, message);
    // A CONNECT under verification: the event lasts until the verdict is handled.
    return conn.authWork ?? undefined;
  }

  override webSocketClose(ws: WebSocket, code: number): void {
    this.core.eventSeen(Date.now()); // not a billed request, but the object is awake for it
    this.core.socketClosed(this.connectionOf(ws));
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
    this.core.socketClosed(this.connectionOf(ws));
    this.conns.delete(ws);
  }

  override alarm(): void {
    this.core.counters.alarms++;
    this.core.eventSeen(Date.now());
    this.alarmAt = null;
    this.core.alarm();
  }

  /** RPC, for tests and tools holding the binding: state and consistency problems (read-only). */
  inspect(): BrokerSnapshot {
    this.rpcEntered();
    return inspect(this.core);
  }

  // ——— RPC from the Worker (HTTP API, BrokerService): inputs are validated there ———

  publish(msg: admin.ExternalMessage): admin.PublishOutcome {
    this.rpcEntered();
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

  /** RPC from another shard of the namespace: a batch on its link to this one (src/shards/link.ts). */
  shardLink(batch: LinkBatch): LinkAck {
    this.rpcEntered();
    const shards = this.core.shards;
    if (!shards) throw new Error(`shard ${this.shard} of ${this.namespace} is not part of a sharded namespace (SHARDS differs?)`);
    return shards.receive(batch);
  }

  /** This object's part in a namespace of `k` shards: links to the others by RPC. */
  private shardNode(k: number, store: SqliteStore, runtime: Runtime): ShardNode {
    const namespace = this.namespace!;
    const broker = this.env.BROKER as DurableObjectNamespace<NamespaceBroker>;
    return new ShardNode(this.shard, k, store, {
      self: this.shard,
      k,
      now: () => Date.now(),
      call: (target, batch) => broker.get(broker.idFromName(shardName(namespace, target))).shardLink(batch) as Promise<LinkAck>,
      sync: () => this.ctx.storage.sync(),
      wakeAt: (ms) => this.wakeAt(ms),
      later: (fn) => this.core.later(fn),
      log: runtime.log,
    }, this.core);
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
