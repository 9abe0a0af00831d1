import { DeliveryState, type ChunkRow, type LinkRow, type RuleSendRow, type DeliveryRow, type MessageRow, type WillRow, type QueueStats, type RetainedCursorRow, type Store, type SessionRow, type SubscriptionRow, type TunnelRow } from "./store";
import { MIGRATIONS } from "./schema";
import { propsFromText, propsToText } from "./props";
import type { Grant } from "../auth/grant";
import { asBuffer, type ProtocolVersion, type QoS } from "../protocol/codec";
import { prefixEnd } from "../topics/validate";

type Row = Record<string, SqlStorageValue>;

/** The Store over a Durable Object's SQLite. Every call is synchronous; the runtime commits the
 * writes of one event together, so an incoming event costs one transaction. */
export class SqliteStore implements Store {
  /**
   * Rows written since this store was made: the sum of each writing statement's own counter
   * (SqlStorageCursor.rowsWritten), what the platform bills. Reads are not counted.
   */
  rowsWritten = 0;

  constructor(private readonly sql: SqlStorage) {
    this.migrate();
  }

  /** Runs a statement that writes, and counts its rows. */
  private run(query: string, ...args: (SqlStorageValue | undefined)[]): SqlStorageCursor<Row> {
    const cursor = this.sql.exec<Row>(query, ...args);
    this.rowsWritten += cursor.rowsWritten;
    return cursor;
  }

  /** The same for a statement returning rows (RETURNING): read to the end first, then counted. */
  private runAll(query: string, ...args: SqlStorageValue[]): Row[] {
    const cursor = this.sql.exec<Row>(query, ...args);
    const rows = cursor.toArray();
    this.rowsWritten += cursor.rowsWritten;
    return rows;
  }

  loadEvents(): string | null {
    const row = this.sql.exec("SELECT value FROM meta WHERE key = 'events'").toArray()[0];
    return row ? (row.value as string) : null;
  }

  saveEvents(json: string): void {
    this.run("INSERT INTO meta (key, value) VALUES ('events', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", json);
  }

  private migrate(): void {
    const hasMeta = this.sql.exec("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").toArray().length > 0;
    let version = 0;
    if (hasMeta) {
      const row = this.sql.exec("SELECT value FROM meta WHERE key='schema_version'").toArray()[0];
      version = row ? Number(row.value) : 0;
    }
    for (let i = version; i < MIGRATIONS.length; i++) {
      this.run(MIGRATIONS[i]!);
      this.run("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", String(i + 1));
    }
  }

  loadSessions(): SessionRow[] {
    return this.sql.exec("SELECT * FROM sessions").toArray().map((r) => ({
      clientId: r.client_id as string,
      version: Number(r.version) as ProtocolVersion,
      expiry: Number(r.expiry),
      connected: Number(r.connected) === 1,
      expiresAt: r.expires_at === null ? null : Number(r.expires_at),
      will: willFromRow(r),
      willAt: r.will_at === null ? null : Number(r.will_at),
      owner: (r.owner as string | null) ?? null,
      grant: r.grant_json ? (JSON.parse(r.grant_json as string) as Grant) : null,
      durable: Number(r.durable) === 1,
      retainedBacklog: r.retained_backlog ? (JSON.parse(r.retained_backlog as string) as RetainedCursorRow[]) : null,
    }));
  }

  loadSubscriptions(): SubscriptionRow[] {
    return this.sql.exec("SELECT * FROM subscriptions").toArray().map((r) => ({
      clientId: r.client_id as string,
      filter: r.filter as string,
      qos: Number(r.qos) as QoS,
      noLocal: Number(r.no_local) === 1,
      retainAsPublished: Number(r.retain_as_published) === 1,
      retainHandling: Number(r.retain_handling) as 0 | 1 | 2,
      subscriptionId: r.sub_id === null ? undefined : Number(r.sub_id),
    }));
  }

  saveSession(s: SessionRow): void {
    const w = s.will;
    this.run(
      `INSERT OR REPLACE INTO sessions (client_id, version, expiry, connected, expires_at,
         will_topic, will_payload, will_qos, will_retain, will_props, will_delay, will_at, grant_json, durable, retained_backlog, owner)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      s.clientId,
      s.version,
      s.expiry,
      s.connected ? 1 : 0,
      s.expiresAt,
      w ? w.topic : null,
      w ? blob(w.payload) : null,
      w ? w.qos : null,
      w ? (w.retain ? 1 : 0) : null,
      w ? propsToText(w.properties) : null,
      w ? w.delay : null,
      s.willAt,
      s.grant ? JSON.stringify(s.grant) : null,
      s.durable ? 1 : 0,
      s.retainedBacklog ? JSON.stringify(s.retainedBacklog) : null,
      s.owner,
    );
  }

  saveRetainedBacklog(clientId: string, backlog: RetainedCursorRow[] | null): void {
    this.run("UPDATE sessions SET retained_backlog = ? WHERE client_id = ?", backlog ? JSON.stringify(backlog) : null, clientId);
  }

  clearWill(clientId: string): void {
    this.run(
      `UPDATE sessions SET will_topic = NULL, will_payload = NULL, will_qos = NULL, will_retain = NULL,
         will_props = NULL, will_delay = NULL, will_at = NULL WHERE client_id = ?`,
      clientId,
    );
  }

  deleteSession(clientId: string): void {
    this.run("DELETE FROM sessions WHERE client_id = ?", clientId);
    this.run("DELETE FROM subscriptions WHERE client_id = ?", clientId);
    this.run("DELETE FROM inbound_qos2 WHERE client_id = ?", clientId);
    this.run("DELETE FROM topic_aliases WHERE client_id = ?", clientId);
    // the bodies only this session's deliveries referred to: found by its rows, not by a scan of
    // every message (ending many sessions, as a growth of the shards does, stays linear)
    const ids = [...new Set(this.runAll("DELETE FROM deliveries WHERE client_id = ? RETURNING msg_id", clientId).map((r) => r.msg_id))];
    for (let i = 0; i < ids.length; i += CHUNK) {
      const chunk = ids.slice(i, i + CHUNK);
      this.run(`DELETE FROM messages WHERE id IN (${marks(chunk.length)}) AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = messages.id)`, ...chunk);
    }
  }

  saveTopicAliases(clientId: string, aliases: [number, string][]): void {
    this.run("DELETE FROM topic_aliases WHERE client_id = ?", clientId);
    for (const [alias, topic] of aliases) this.run("INSERT INTO topic_aliases (client_id, alias, topic) VALUES (?, ?, ?)", clientId, alias, topic);
  }

  saveTopicAlias(clientId: string, alias: number, topic: string): void {
    this.run("INSERT OR REPLACE INTO topic_aliases (client_id, alias, topic) VALUES (?, ?, ?)", clientId, alias, topic);
  }

  loadTopicAliases(clientId: string): [number, string][] {
    return this.sql
      .exec("SELECT alias, topic FROM topic_aliases WHERE client_id = ? ORDER BY alias", clientId)
      .toArray()
      .map((r) => [Number(r.alias), r.topic as string]);
  }

  saveSubscription(sub: SubscriptionRow): void {
    this.run(
      `INSERT OR REPLACE INTO subscriptions (client_id, filter, qos, no_local, retain_as_published, retain_handling, sub_id)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
      sub.clientId,
      sub.filter,
      sub.qos,
      sub.noLocal ? 1 : 0,
      sub.retainAsPublished ? 1 : 0,
      sub.retainHandling,
      sub.subscriptionId ?? null,
    );
  }

  deleteSubscription(clientId: string, filter: string): void {
    this.run("DELETE FROM subscriptions WHERE client_id = ? AND filter = ?", clientId, filter);
  }

  setRetained(msg: MessageRow, version?: number): void {
    this.run(
      "INSERT OR REPLACE INTO retained (topic, payload, qos, props, expires_at, version) VALUES (?, ?, ?, ?, ?, ?)",
      msg.topic,
      blob(msg.payload),
      msg.qos,
      propsToText(msg.properties),
      msg.expiresAt ?? null,
      version ?? null,
    );
    if (version !== undefined) this.run("DELETE FROM retained_removed WHERE topic = ?", msg.topic);
  }

  retainedVersion(topic: string): number | null {
    const row = this.sql.exec("SELECT version FROM retained WHERE topic = ?", topic).toArray()[0];
    if (row) return row.version !== null ? Number(row.version) : null;
    const removed = this.sql.exec("SELECT version FROM retained_removed WHERE topic = ?", topic).toArray()[0];
    return removed ? Number(removed.version) : null;
  }

  deleteRetained(topic: string, version?: number): void {
    this.run("DELETE FROM retained WHERE topic = ?", topic);
    if (version !== undefined) this.run("INSERT OR REPLACE INTO retained_removed (topic, version) VALUES (?, ?)", topic, version);
  }

  retainedWithPrefix(prefix: string): MessageRow[] {
    const end = prefixEnd(prefix);
    const rows =
      prefix === ""
        ? this.sql.exec("SELECT * FROM retained")
        : end === null
          ? this.sql.exec("SELECT * FROM retained WHERE topic >= ?", prefix)
          : this.sql.exec("SELECT * FROM retained WHERE topic >= ? AND topic < ?", prefix, end);
    return rows.toArray().map(retainedFromRow);
  }

  retainedAfter(prefix: string, after: string | null, limit: number): MessageRow[] {
    const end = prefixEnd(prefix);
    const from = after !== null && after >= prefix ? after : null;
    const lower = from === null ? "topic >= ?" : "topic > ?";
    const upper = end === null ? "" : " AND topic < ?";
    const args: SqlStorageValue[] = [from ?? prefix];
    if (end !== null) args.push(end);
    return this.sql
      .exec(`SELECT * FROM retained WHERE ${lower}${upper} ORDER BY topic LIMIT ?`, ...args, limit)
      .toArray()
      .map(retainedFromRow);
  }

  deleteExpiredRetained(now: number): void {
    this.run("DELETE FROM retained WHERE expires_at IS NOT NULL AND expires_at < ?", now);
  }

  countRetained(): number {
    return Number(this.sql.exec("SELECT COUNT(*) AS n FROM retained").one().n);
  }

  retainedUsage(except?: string): { count: number; bytes: number } {
    const all = "SELECT COUNT(*) AS n, COALESCE(SUM(length(payload)), 0) AS b FROM retained";
    // the topics starting with `except` are the range [except, except with its last character + 1)
    const row = (
      except === undefined || except === ""
        ? this.sql.exec(all)
        : this.sql.exec(`${all} WHERE NOT (topic >= ? AND topic < ?)`, except, except.slice(0, -1) + String.fromCharCode(except.charCodeAt(except.length - 1) + 1))
    ).one();
    return { count: Number(row.n), bytes: Number(row.b) };
  }

  retainedSize(topic: string): number | null {
    const row = this.sql.exec("SELECT length(payload) AS b FROM retained WHERE topic = ?", topic).toArray()[0];
    return row ? Number(row.b) : null;
  }

  addDelivery(clientId: string, msg: MessageRow, qos: QoS, retain: boolean, state: DeliveryState, packetId: number | null, subIds: number[] | null = null, share: string | null = null): number {
    if (msg.storedId === undefined) {
      msg.storedId = Number(
        this.runAll(
          "INSERT INTO messages (topic, payload, qos, retain, props, expires_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
          ...messageColumns(msg),
        )[0]!.id,
      );
    }
    return Number(
      this.runAll(
        "INSERT INTO deliveries (client_id, msg_id, qos, retain, bytes, state, packet_id, sub_ids, share) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        clientId,
        msg.storedId,
        qos,
        retain ? 1 : 0,
        msg.payload.byteLength + msg.topic.length,
        state,
        packetId,
        subIds ? subIds.join(",") : null,
        share,
      )[0]!.seq,
    );
  }

  markSent(seq: number, packetId: number): void {
    this.run("UPDATE deliveries SET state = 1, packet_id = ? WHERE seq = ?", packetId, seq);
  }

  markReleased(seq: number): void {
    this.run("UPDATE deliveries SET state = 2 WHERE seq = ?", seq);
  }

  deleteDelivery(seq: number): void {
    const row = this.runAll("DELETE FROM deliveries WHERE seq = ? RETURNING msg_id", seq)[0];
    if (!row) return;
    this.run("DELETE FROM messages WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM deliveries WHERE msg_id = ?1)", row.msg_id);
  }

  deleteDeliveries(seqs: number[]): void {
    for (let i = 0; i < seqs.length; i += CHUNK) {
      const chunk = seqs.slice(i, i + CHUNK);
      const rows = this.runAll(`DELETE FROM deliveries WHERE seq IN (${marks(chunk.length)}) RETURNING msg_id`, ...chunk);
      const ids = [...new Set(rows.map((r) => r.msg_id))];
      if (ids.length === 0) continue;
      this.run(
        `DELETE FROM messages WHERE id IN (${marks(ids.length)}) AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = messages.id)`,
        ...ids,
      );
    }
  }

  loadInflight(): DeliveryRow[] {
    return this.sql
      .exec(`${DELIVERY_SELECT} WHERE d.state > 0 ORDER BY d.client_id, d.seq`)
      .toArray()
      .map(deliveryFromRow);
  }

  nextQueued(clientId: string, limit: number): DeliveryRow[] {
    return this.sql
      .exec(`${DELIVERY_SELECT} WHERE d.client_id = ? AND d.state = 0 ORDER BY d.seq LIMIT ?`, clientId, limit)
      .toArray()
      .map(deliveryFromRow);
  }

  queueStats(): QueueStats[] {
    return this.sql
      .exec("SELECT client_id, COUNT(*) AS n, SUM(bytes) AS b FROM deliveries WHERE state = 0 GROUP BY client_id")
      .toArray()
      .map((r) => ({ clientId: r.client_id as string, count: Number(r.n), bytes: Number(r.b) }));
  }

  dropExpiredQueued(clientId: string, now: number): { count: number; bytes: number } {
    const rows = this.runAll(
      `DELETE FROM deliveries WHERE client_id = ? AND state = 0
         AND msg_id IN (SELECT id FROM messages WHERE expires_at IS NOT NULL AND expires_at < ?) RETURNING bytes`,
      clientId,
      now,
    );
    if (rows.length === 0) return { count: 0, bytes: 0 };
    this.run("DELETE FROM messages WHERE expires_at IS NOT NULL AND expires_at < ? AND id NOT IN (SELECT msg_id FROM deliveries)", now);
    return { count: rows.length, bytes: rows.reduce((n, r) => n + Number(r.bytes), 0) };
  }

  dropOldestQos0(clientId: string): number | null {
    const row = this.sql
      .exec("SELECT seq, bytes FROM deliveries WHERE client_id = ? AND state = 0 AND qos = 0 ORDER BY seq LIMIT 1", clientId)
      .toArray()[0];
    if (!row) return null;
    this.deleteDelivery(Number(row.seq));
    return Number(row.bytes);
  }

  addRuleSend(rule: string, msg: MessageRow, clientId: string | null, createdAt: number, nextAt: number): number {
    const row = this.runAll(
      "INSERT INTO rule_sends (rule, topic, payload, qos, retain, props, expires_at, client_id, created_at, attempts, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) RETURNING id",
      rule,
      ...messageColumns(msg),
      clientId,
      createdAt,
      nextAt,
    )[0]!;
    return Number(row.id);
  }

  dueRuleSends(now: number, limit: number, maxBytes = Infinity): RuleSendRow[] {
    const rows: Row[] = [];
    let bytes = 0;
    // the cursor steps the statement row by row: rows past the byte budget are never read
    for (const r of this.sql.exec<Row>("SELECT * FROM rule_sends WHERE next_at <= ? ORDER BY next_at, id LIMIT ?", now, limit)) {
      const size = r.payload instanceof ArrayBuffer ? r.payload.byteLength : 0;
      if (rows.length > 0 && bytes + size > maxBytes) break;
      bytes += size;
      rows.push(r);
    }
    return rows.map((r) => ({
        id: Number(r.id),
        rule: r.rule as string,
        msg: messageFromRow(r, Number(r.retain) === 1),
        clientId: (r.client_id as string | null) ?? null,
        createdAt: Number(r.created_at),
        attempts: Number(r.attempts),
        nextAt: Number(r.next_at),
      }));
  }

  nextRuleSendAt(): number | null {
    const row = this.sql.exec("SELECT MIN(next_at) AS at FROM rule_sends").toArray()[0];
    return row && row.at !== null ? Number(row.at) : null;
  }

  updateRuleSend(id: number, attempts: number, nextAt: number): void {
    this.run("UPDATE rule_sends SET attempts = ?, next_at = ? WHERE id = ?", attempts, nextAt, id);
  }

  deleteRuleSends(ids: number[]): void {
    for (let i = 0; i < ids.length; i += CHUNK) {
      const chunk = ids.slice(i, i + CHUNK);
      this.run(`DELETE FROM rule_sends WHERE id IN (${marks(chunk.length)})`, ...chunk);
    }
  }

  countRuleSends(): number {
    return Number(this.sql.exec("SELECT COUNT(*) AS n FROM rule_sends").one().n);
  }

  addInboundQos2(clientId: string, packetId: number): void {
    this.run("INSERT OR IGNORE INTO inbound_qos2 (client_id, packet_id) VALUES (?, ?)", clientId, packetId);
  }

  deleteInboundQos2(clientId: string, packetId: number): void {
    this.run("DELETE FROM inbound_qos2 WHERE client_id = ? AND packet_id = ?", clientId, packetId);
  }

  loadInboundQos2(): { clientId: string; packetId: number }[] {
    return this.sql
      .exec("SELECT client_id, packet_id FROM inbound_qos2")
      .toArray()
      .map((r) => ({ clientId: r.client_id as string, packetId: Number(r.packet_id) }));
  }

  addChunk(target: number, seq: number, entries: Uint8Array, now: number): void {
    this.run("INSERT INTO shard_outbox (target, seq, entries, created_at, attempts, next_at) VALUES (?, ?, ?, ?, 0, ?)", target, seq, blob(entries), now, now);
  }

  loadChunks(): ChunkRow[] {
    return this.sql
      .exec("SELECT target, seq, entries, attempts, next_at FROM shard_outbox ORDER BY target, seq")
      .toArray()
      .map((r) => ({ target: Number(r.target), seq: Number(r.seq), entries: bytesOf(r.entries!), attempts: Number(r.attempts), nextAt: Number(r.next_at) }));
  }

  deleteChunksUpTo(target: number, seq: number): void {
    this.run("DELETE FROM shard_outbox WHERE target = ? AND seq <= ?", target, seq);
  }

  updateChunkRetry(target: number, seq: number, attempts: number, nextAt: number): void {
    this.run("UPDATE shard_outbox SET attempts = ?, next_at = ? WHERE target = ? AND seq = ?", attempts, nextAt, target, seq);
  }

  loadLinks(): LinkRow[] {
    return this.sql
      .exec("SELECT peer, acked_seq, applied_seq FROM shard_links ORDER BY peer")
      .toArray()
      .map((r) => ({ peer: Number(r.peer), ackedSeq: Number(r.acked_seq), appliedSeq: Number(r.applied_seq) }));
  }

  saveAcked(peer: number, seq: number): void {
    this.run("INSERT INTO shard_links (peer, acked_seq) VALUES (?, ?) ON CONFLICT (peer) DO UPDATE SET acked_seq = excluded.acked_seq", peer, seq);
  }

  saveApplied(peer: number, seq: number): void {
    this.run("INSERT INTO shard_links (peer, applied_seq) VALUES (?, ?) ON CONFLICT (peer) DO UPDATE SET applied_seq = excluded.applied_seq", peer, seq);
  }

  addInterest(peer: number, filter: string): void {
    this.run("INSERT OR IGNORE INTO shard_interest (peer, filter) VALUES (?, ?)", peer, filter);
  }

  removeInterest(peer: number, filter: string): void {
    this.run("DELETE FROM shard_interest WHERE peer = ? AND filter = ?", peer, filter);
  }

  loadShardLayout(): number | null {
    const row = this.sql.exec("SELECT value FROM meta WHERE key = 'shards'").toArray()[0];
    return row ? Number(row.value) : null;
  }

  saveShardLayout(k: number): void {
    this.run("INSERT INTO meta (key, value) VALUES ('shards', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", String(k));
  }

  loadReshard(part: "plan" | "export"): string | null {
    const row = this.sql.exec("SELECT value FROM meta WHERE key = ?", `reshard_${part}`).toArray()[0];
    return row ? (row.value as string) : null;
  }

  saveReshard(part: "plan" | "export", json: string | null): void {
    if (json === null) this.run("DELETE FROM meta WHERE key = ?", `reshard_${part}`);
    else this.run("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", `reshard_${part}`, json);
  }

  saveTunnel(id: string, entrance: number, attachment: string): void {
    this.run("INSERT OR REPLACE INTO shard_tunnels (id, entrance, attachment) VALUES (?, ?, ?)", id, entrance, attachment);
  }

  deleteTunnel(id: string): void {
    this.run("DELETE FROM shard_tunnels WHERE id = ?", id);
  }

  loadTunnels(): TunnelRow[] {
    return this.sql
      .exec("SELECT id, entrance, attachment FROM shard_tunnels ORDER BY id")
      .toArray()
      .map((r) => ({ id: r.id as string, entrance: Number(r.entrance), attachment: r.attachment as string }));
  }

  loadInterest(): { peer: number; filter: string }[] {
    return this.sql
      .exec("SELECT peer, filter FROM shard_interest ORDER BY peer, filter")
      .toArray()
      .map((r) => ({ peer: Number(r.peer), filter: r.filter as string }));
  }

  addInterestFp(peer: number, fp: number): void {
    this.run("INSERT OR IGNORE INTO shard_interest_fp (peer, fp) VALUES (?, ?)", peer, fp);
  }

  removeInterestFp(peer: number, fp: number): void {
    this.run("DELETE FROM shard_interest_fp WHERE peer = ? AND fp = ?", peer, fp);
  }

  loadInterestFps(each: (peer: number, fp: number) => void): void {
    // raw rows, one at a time: no object per row, no list of them all
    for (const [peer, fp] of this.sql.exec("SELECT peer, fp FROM shard_interest_fp ORDER BY peer, fp").raw<[number, number]>()) each(Number(peer), Number(fp));
  }
}

/** bound parameters per statement */
const CHUNK = 100;
const marks = (n: number) => new Array(n).fill("?").join(", ");

const DELIVERY_SELECT = `SELECT d.seq, d.client_id, d.qos AS d_qos, d.retain AS d_retain, d.state, d.packet_id, d.sub_ids, d.share,
  m.id AS msg_id, m.topic, m.payload, m.qos, m.retain, m.props, m.expires_at
  FROM deliveries d JOIN messages m ON m.id = d.msg_id`;

function deliveryFromRow(r: Row): DeliveryRow {
  const msg = messageFromRow(r, Number(r.retain) === 1);
  msg.storedId = Number(r.msg_id);
  return {
    seq: Number(r.seq),
    clientId: r.client_id as string,
    msg,
    qos: Number(r.d_qos) as QoS,
    retain: Number(r.d_retain) === 1,
    state: Number(r.state) as DeliveryState,
    packetId: r.packet_id === null ? null : Number(r.packet_id),
    subIds: r.sub_ids ? String(r.sub_ids).split(",").map(Number) : null,
    share: (r.share as string | null) ?? null,
  };
}

function blob(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

function bytesOf(v: SqlStorageValue): Uint8Array {
  return v instanceof ArrayBuffer ? asBuffer(new Uint8Array(v)) : asBuffer(new Uint8Array(0));
}

function willFromRow(r: Row): WillRow | null {
  if (r.will_topic === null || r.will_topic === undefined) return null;
  return {
    topic: r.will_topic as string,
    payload: bytesOf(r.will_payload!),
    qos: Number(r.will_qos) as QoS,
    retain: Number(r.will_retain) === 1,
    properties: propsFromText(r.will_props as string | null),
    delay: Number(r.will_delay ?? 0),
  };
}

function retainedFromRow(r: Row): MessageRow {
  return messageFromRow(r, true);
}

/** A message from the columns messages, retained and rule_sends share (topic, payload, qos, props, expires_at). */
function messageFromRow(r: Row, retain: boolean): MessageRow {
  const msg: MessageRow = { topic: r.topic as string, payload: bytesOf(r.payload!), qos: Number(r.qos) as QoS, retain };
  const props = propsFromText(r.props as string | null);
  if (props) msg.properties = props;
  if (r.expires_at !== null) msg.expiresAt = Number(r.expires_at);
  return msg;
}

/** The values of (topic, payload, qos, retain, props, expires_at), as messages and rule_sends store them. */
function messageColumns(msg: MessageRow): [string, ArrayBuffer, number, number, string | null, number | null] {
  return [msg.topic, blob(msg.payload), msg.qos, msg.retain ? 1 : 0, propsToText(msg.properties), msg.expiresAt ?? null];
}
