// Connections whose socket is on another shard of the namespace: the client connected there
// without the ?client= hint, and its session's home is this shard. The entrance relays the
// socket's frames here over the link and writes back what this side sends (src/shards/node.ts), so
// the session, its takeover, will and keep-alive stay where they always were: one home per id.
import type { BrokerConfig } from "../config";
import { Connection, type Attachment, type Transport } from "./connection";
import type { Counters } from "./counters";
import type { Store } from "../storage/store";
import type { TunnelEntry } from "../shards/wire";
import { TunnelOp } from "../shards/wire";
import { TEXT_FRAME } from "../shards/node";

/** What the tunnels need of the broker: its connection entry points, and the link to the entrance. */
export interface TunnelHost {
  readonly config: BrokerConfig;
  readonly counters: Counters;
  readonly store: Store;
  now(): number;
  open(conn: Connection): void;
  receive(conn: Connection, data: ArrayBuffer | Uint8Array | string): void;
  socketClosed(conn: Connection): void;
  out(entrance: number, id: string, n: number, bytes: Uint8Array): void;
  end(entrance: number, id: string, code: number, reason: string): void;
}

interface Exit {
  conn: Connection;
  entrance: number;
  /**
   * frames received from the entrance and sent to it, numbered from 1; 0 is a new start (a side
   * that woke does not know its count): the next frame is taken as it comes
   */
  received: number;
  sent: number;
  /** the attachment last stored, without its `seen` (refreshed often, and not worth a row each time) */
  stored: string;
}

export class TunnelExits {
  private readonly exits = new Map<string, Exit>();

  constructor(private readonly host: TunnelHost) {}

  get size(): number {
    return this.exits.size;
  }

  /** The object started or woke: the tunnelled connections come back as connections (for core.restore). */
  restore(): Connection[] {
    const out: Connection[] = [];
    for (const row of this.host.store.loadTunnels()) {
      let att: Attachment;
      try {
        att = JSON.parse(row.attachment) as Attachment;
      } catch {
        this.host.store.deleteTunnel(row.id);
        continue;
      }
      // a connection's keep-alive counts from the wake: the last frame's time was not stored
      att.seen = this.host.now();
      const exit = this.make(row.id, row.entrance, att, row.attachment);
      exit.sent = -1; // the next frame out is numbered 0: the entrance takes it as a new start
      out.push(exit.conn);
    }
    return out;
  }

  apply(from: number, e: TunnelEntry): void {
    if (e.op === TunnelOp.Open) {
      if (this.exits.has(e.id)) return;
      let facts: { ip?: string; br?: string } = {};
      try {
        facts = JSON.parse(e.text) as typeof facts;
      } catch {
        // no facts: none needed
      }
      const now = this.host.now();
      const att: Attachment = { seen: now, at: now };
      if (typeof facts.ip === "string") att.ip = facts.ip.slice(0, 64);
      if (typeof facts.br === "string") att.br = facts.br;
      const exit = this.make(e.id, from, att, "");
      exit.received = e.n;
      exit.conn.save();
      this.host.open(exit.conn);
      this.host.receive(exit.conn, e.bytes);
      return;
    }
    const exit = this.exits.get(e.id);
    if (!exit) {
      // the connection ended here first; the entrance's socket closes on the end already sent
      if (e.op === TunnelOp.Data) this.host.end(from, e.id, 1011, "no such connection");
      return;
    }
    if (e.op === TunnelOp.Close) {
      this.forget(e.id);
      this.host.socketClosed(exit.conn);
      return;
    }
    if (exit.received !== 0 && e.n !== 0 && e.n !== exit.received + 1) {
      // a frame from the client was lost with a failed call: the stream cannot go on
      exit.conn.close(1011, "frames from the client were lost");
      this.host.socketClosed(exit.conn);
      return;
    }
    exit.received = e.n;
    // a text frame at the entrance: the connection answers it as it would its own socket's
    this.host.receive(exit.conn, e.code === TEXT_FRAME ? "" : e.bytes);
  }

  /** A call to `entrance` failed: bytes for its clients may be lost, so their connections end. */
  entranceLost(entrance: number): void {
    for (const exit of [...this.exits.values()]) {
      if (exit.entrance !== entrance) continue;
      exit.conn.close(1011, "the client's shard is unreachable");
      this.host.socketClosed(exit.conn);
    }
  }

  private make(id: string, entrance: number, att: Attachment, stored: string): Exit {
    const host = this.host;
    const exits = this.exits;
    let exit!: Exit;
    const transport: Transport = {
      send: (bytes) => host.out(entrance, id, ++exit.sent, bytes),
      close: (code, reason) => {
        if (!exits.delete(id)) return;
        host.store.deleteTunnel(id);
        host.end(entrance, id, code, reason);
      },
      saveAttachment: (a) => {
        if (!exits.has(id) || a.x === 1) return;
        const { seen: _seen, ...rest } = a;
        const json = JSON.stringify(rest);
        if (json === exit.stored) return;
        exit.stored = json;
        host.store.saveTunnel(id, entrance, json);
      },
    };
    exit = { conn: undefined as unknown as Connection, entrance, received: 0, sent: 0, stored };
    exits.set(id, exit);
    exit.conn = new Connection(transport, host.config, att, host.counters);
    return exit;
  }

  private forget(id: string): void {
    if (this.exits.delete(id)) this.host.store.deleteTunnel(id);
  }
}
