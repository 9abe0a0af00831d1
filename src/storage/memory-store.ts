// The Store in memory, with the SQLite store's semantics: rows are copied in and out (a caller
// never shares an object with storage), a message body is stored once per MessageRow object and
// removed with its last delivery, deliveries come back in seq order. Used by the plain-Node tests
// (the model-based and crash tests run BrokerCore over it); `snapshot`/`fromSnapshot` stand for
// a commit and a restart from what was committed.
import { DeliveryState, type ChunkRow, type LinkRow, type RuleSendRow, type DeliveryRow, type MessageRow, type QueueStats, type RetainedCursorRow, type SessionRow, type Store, type SubscriptionRow, type TunnelRow } from "./store";
import { asBuffer, type QoS } from "../protocol/codec";

interface StoredMessage {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: MessageRow["properties"];
  expiresAt?: number;
  /** retained only: the last-writer-wins version at K > 1 */
  version?: number;
}

interface StoredDelivery {
  clientId: string;
  msgId: number;
  qos: QoS;
  retain: boolean;
  bytes: number;
  state: DeliveryState;
  packetId: number | null;
  subIds: number[] | null;
  share: string | null;
}

export interface MemoryState {
  sessions: Map<string, SessionRow>;
  subscriptions: Map<string, SubscriptionRow>;
  retained: Map<string, StoredMessage>;
  messages: Map<number, StoredMessage>;
  deliveries: Map<number, StoredDelivery>;
  inboundQos2: Set<string>;
  topicAliases: Map<string, [number, string][]>;
  nextId: number;
  /** rules' pending sends (src/rules), by id; absent in states saved before there were rules */
  ruleSends?: Map<number, RuleSendRow>;
  /** the broker's saved event totals (JSON) */
  events?: string | null;
  /** scale-out (src/shards/link.ts): chunks owed to other shards, by target then seq */
  outbox?: Map<number, Map<number, ChunkRow>>;
  /** scale-out: watermarks per peer */
  links?: Map<number, LinkRow>;
  /** scale-out: announced filters per peer */
  interest?: Map<number, Set<string>>;
  /** scale-out: announced exact filters' fingerprints per peer */
  interestFp?: Map<number, Set<number>>;
  /** scale-out: the number of shards the namespace was set up with */
  shardLayout?: number;
  reshard?: { plan?: string | null; export?: string | null };
  /** scale-out: tunnelled connections */
  tunnels?: Map<string, TunnelRow>;
  /** scale-out: versions of retained removals, by topic */
  retainedRemoved?: Map<string, number>;
}

const key = (a: string, b: string | number) => `${a}\u0000${b}`;

function emptyState(): MemoryState {
  return { sessions: new Map(), subscriptions: new Map(), retained: new Map(), messages: new Map(), deliveries: new Map(), inboundQos2: new Set(), topicAliases: new Map(), nextId: 1 };
}

export class MemoryStore implements Store {
  private s: MemoryState;
  /** rows written since the store was made (inserts, updates and deletes), like SQLite's counter */
  rowsWritten = 0;

  constructor(state: MemoryState = emptyState()) {
    this.s = state;
  }

  loadEvents(): string | null {
    return this.s.events ?? null;
  }

  saveEvents(json: string): void {
    this.s.events = json;
    this.rowsWritten++;
  }

  /** a deep copy of everything stored: what a commit would have made durable */
  snapshot(): MemoryState {
    return structuredClone(this.s);
  }

  static fromSnapshot(state: MemoryState): MemoryStore {
    return new MemoryStore(structuredClone(state));
  }

  loadSessions(): SessionRow[] {
    return [...this.s.sessions.values()].map((r) => {
      const row = structuredClone(r);
      if (row.will) row.will.payload = asBuffer(row.will.payload);
      return row;
    });
  }

  loadSubscriptions(): SubscriptionRow[] {
    return [...this.s.subscriptions.values()].map((r) => ({ ...r }));
  }

  saveSession(row: SessionRow): void {
    this.rowsWritten++;
    this.s.sessions.set(row.clientId, structuredClone(row));
  }

  saveRetainedBacklog(clientId: string, backlog: RetainedCursorRow[] | null): void {
    const row = this.s.sessions.get(clientId);
    if (!row) return;
    this.rowsWritten++;
    row.retainedBacklog = backlog ? structuredClone(backlog) : null;
  }

  clearWill(clientId: string): void {
    const row = this.s.sessions.get(clientId);
    if (!row) return;
    this.rowsWritten++;
    row.will = null;
    row.willAt = null;
  }

  deleteSession(clientId: string): void {
    if (this.s.sessions.delete(clientId)) this.rowsWritten++;
    for (const [k, sub] of this.s.subscriptions) if (sub.clientId === clientId) this.s.subscriptions.delete(k);
    for (const k of this.s.inboundQos2) if (k.startsWith(key(clientId, ""))) this.s.inboundQos2.delete(k);
    this.s.topicAliases.delete(clientId);
    for (const [seq, d] of this.s.deliveries) if (d.clientId === clientId) this.deleteDelivery(seq);
  }

  saveTopicAliases(clientId: string, aliases: [number, string][]): void {
    this.rowsWritten += aliases.length + 1;
    this.s.topicAliases.set(clientId, structuredClone(aliases).sort((a, b) => a[0] - b[0]));
  }

  saveTopicAlias(clientId: string, alias: number, topic: string): void {
    this.rowsWritten++;
    const list = (this.s.topicAliases.get(clientId) ?? []).filter(([a]) => a !== alias);
    list.push([alias, topic]);
    this.s.topicAliases.set(clientId, list.sort((p, q) => p[0] - q[0]));
  }

  loadTopicAliases(clientId: string): [number, string][] {
    return structuredClone(this.s.topicAliases.get(clientId) ?? []);
  }

  saveSubscription(sub: SubscriptionRow): void {
    this.rowsWritten++;
    const row: SubscriptionRow = { clientId: sub.clientId, filter: sub.filter, qos: sub.qos, noLocal: sub.noLocal, retainAsPublished: sub.retainAsPublished, retainHandling: sub.retainHandling };
    if (sub.subscriptionId !== undefined) row.subscriptionId = sub.subscriptionId;
    this.s.subscriptions.set(key(sub.clientId, sub.filter), row);
  }

  deleteSubscription(clientId: string, filter: string): void {
    if (this.s.subscriptions.delete(key(clientId, filter))) this.rowsWritten++;
  }

  setRetained(msg: MessageRow, version?: number): void {
    this.rowsWritten++;
    const body = bodyOf(msg);
    if (version !== undefined) {
      body.version = version;
      if (this.s.retainedRemoved?.delete(msg.topic)) this.rowsWritten++;
    }
    this.s.retained.set(msg.topic, body);
  }

  retainedVersion(topic: string): number | null {
    const row = this.s.retained.get(topic);
    if (row) return row.version ?? null;
    return this.s.retainedRemoved?.get(topic) ?? null;
  }

  deleteRetained(topic: string, version?: number): void {
    if (this.s.retained.delete(topic)) this.rowsWritten++;
    if (version === undefined) return;
    (this.s.retainedRemoved ??= new Map()).set(topic, version);
    this.rowsWritten++;
  }

  retainedWithPrefix(prefix: string): MessageRow[] {
    return [...this.s.retained.values()]
      .filter((m) => m.topic.startsWith(prefix))
      .sort((a, b) => (a.topic < b.topic ? -1 : 1))
      .map((m) => ({ ...messageOf(m), retain: true }));
  }

  retainedAfter(prefix: string, after: string | null, limit: number): MessageRow[] {
    return this.retainedWithPrefix(prefix)
      .filter((m) => after === null || m.topic > after)
      .slice(0, limit);
  }

  deleteExpiredRetained(now: number): void {
    for (const [topic, m] of this.s.retained) {
      if (m.expiresAt !== undefined && m.expiresAt < now) {
        this.s.retained.delete(topic);
        this.rowsWritten++;
      }
    }
  }

  countRetained(): number {
    return this.s.retained.size;
  }

  retainedUsage(except?: string): { count: number; bytes: number } {
    let bytes = 0;
    let count = 0;
    for (const m of this.s.retained.values()) {
      if (except !== undefined && m.topic.startsWith(except)) continue;
      bytes += m.payload.byteLength;
      count++;
    }
    return { count, bytes };
  }

  retainedSize(topic: string): number | null {
    return this.s.retained.get(topic)?.payload.byteLength ?? null;
  }

  addDelivery(clientId: string, msg: MessageRow, qos: QoS, retain: boolean, state: DeliveryState, packetId: number | null, subIds: number[] | null = null, share: string | null = null): number {
    if (msg.storedId === undefined) {
      msg.storedId = this.s.nextId++;
      this.s.messages.set(msg.storedId, bodyOf(msg));
      this.rowsWritten++;
    }
    const seq = this.s.nextId++;
    this.rowsWritten++;
    this.s.deliveries.set(seq, { clientId, msgId: msg.storedId, qos, retain, bytes: msg.payload.byteLength + msg.topic.length, state, packetId, subIds: subIds ? [...subIds] : null, share });
    return seq;
  }

  markSent(seq: number, packetId: number): void {
    const d = this.s.deliveries.get(seq);
    if (!d) return;
    this.rowsWritten++;
    d.state = DeliveryState.Sent;
    d.packetId = packetId;
  }

  markReleased(seq: number): void {
    const d = this.s.deliveries.get(seq);
    if (!d) return;
    this.rowsWritten++;
    d.state = DeliveryState.Released;
  }

  deleteDelivery(seq: number): void {
    const d = this.s.deliveries.get(seq);
    if (!d) return;
    this.s.deliveries.delete(seq);
    this.rowsWritten++;
    for (const other of this.s.deliveries.values()) if (other.msgId === d.msgId) return;
    if (this.s.messages.delete(d.msgId)) this.rowsWritten++;
  }

  deleteDeliveries(seqs: number[]): void {
    for (const seq of seqs) this.deleteDelivery(seq);
  }

  loadInflight(): DeliveryRow[] {
    return this.rows((d) => d.state !== DeliveryState.Queued).sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : a.seq - b.seq));
  }

  nextQueued(clientId: string, limit: number): DeliveryRow[] {
    return this.rows((d) => d.clientId === clientId && d.state === DeliveryState.Queued).slice(0, limit);
  }

  queueStats(): QueueStats[] {
    const stats = new Map<string, QueueStats>();
    for (const d of this.s.deliveries.values()) {
      if (d.state !== DeliveryState.Queued) continue;
      let q = stats.get(d.clientId);
      if (!q) stats.set(d.clientId, (q = { clientId: d.clientId, count: 0, bytes: 0 }));
      q.count++;
      q.bytes += d.bytes;
    }
    return [...stats.values()];
  }

  dropExpiredQueued(clientId: string, now: number): { count: number; bytes: number } {
    let count = 0;
    let bytes = 0;
    for (const [seq, d] of this.s.deliveries) {
      if (d.clientId !== clientId || d.state !== DeliveryState.Queued) continue;
      const body = this.s.messages.get(d.msgId);
      if (body?.expiresAt === undefined || body.expiresAt >= now) continue;
      this.deleteDelivery(seq);
      count++;
      bytes += d.bytes;
    }
    return { count, bytes };
  }

  dropOldestQos0(clientId: string): number | null {
    for (const [seq, d] of this.s.deliveries) {
      if (d.clientId !== clientId || d.state !== DeliveryState.Queued || d.qos !== 0) continue;
      this.deleteDelivery(seq);
      return d.bytes;
    }
    return null;
  }

  private get ruleSends(): Map<number, RuleSendRow> {
    return (this.s.ruleSends ??= new Map());
  }

  addRuleSend(rule: string, msg: MessageRow, clientId: string | null, createdAt: number, nextAt: number): number {
    const id = this.s.nextId++;
    this.rowsWritten++;
    this.ruleSends.set(id, { id, rule, msg: messageOf(bodyOf(msg)), clientId, createdAt, attempts: 0, nextAt });
    return id;
  }

  dueRuleSends(now: number, limit: number, maxBytes = Infinity): RuleSendRow[] {
    const due = [...this.ruleSends.values()]
      .filter((r) => r.nextAt <= now)
      .sort((a, b) => a.nextAt - b.nextAt || a.id - b.id)
      .slice(0, limit);
    let bytes = 0;
    let n = 0;
    for (const r of due) {
      if (n > 0 && bytes + r.msg.payload.byteLength > maxBytes) break;
      bytes += r.msg.payload.byteLength;
      n++;
    }
    return due.slice(0, n).map((r) => ({ ...r, msg: messageOf(bodyOf(r.msg)) }));
  }

  nextRuleSendAt(): number | null {
    let at: number | null = null;
    for (const r of this.ruleSends.values()) if (at === null || r.nextAt < at) at = r.nextAt;
    return at;
  }

  updateRuleSend(id: number, attempts: number, nextAt: number): void {
    const row = this.ruleSends.get(id);
    if (!row) return;
    this.rowsWritten++;
    row.attempts = attempts;
    row.nextAt = nextAt;
  }

  deleteRuleSends(ids: number[]): void {
    for (const id of ids) if (this.ruleSends.delete(id)) this.rowsWritten++;
  }

  countRuleSends(): number {
    return this.ruleSends.size;
  }

  addInboundQos2(clientId: string, packetId: number): void {
    this.rowsWritten++;
    this.s.inboundQos2.add(key(clientId, packetId));
  }

  deleteInboundQos2(clientId: string, packetId: number): void {
    if (this.s.inboundQos2.delete(key(clientId, packetId))) this.rowsWritten++;
  }

  loadInboundQos2(): { clientId: string; packetId: number }[] {
    return [...this.s.inboundQos2].map((k) => {
      const [clientId, packetId] = k.split("\u0000");
      return { clientId: clientId!, packetId: Number(packetId) };
    });
  }

  private get outbox(): Map<number, Map<number, ChunkRow>> {
    return (this.s.outbox ??= new Map());
  }

  private get links(): Map<number, LinkRow> {
    return (this.s.links ??= new Map());
  }

  private get interest(): Map<number, Set<string>> {
    return (this.s.interest ??= new Map());
  }

  addChunk(target: number, seq: number, entries: Uint8Array, now: number): void {
    let chunks = this.outbox.get(target);
    if (!chunks) this.outbox.set(target, (chunks = new Map()));
    if (chunks.has(seq)) throw new Error(`UNIQUE constraint failed: shard_outbox (${target}, ${seq})`);
    this.rowsWritten++;
    chunks.set(seq, { target, seq, entries: entries.slice(), attempts: 0, nextAt: now });
  }

  loadChunks(): ChunkRow[] {
    const out: ChunkRow[] = [];
    for (const target of [...this.outbox.keys()].sort((a, b) => a - b)) {
      const rows = [...this.outbox.get(target)!.values()].sort((a, b) => a.seq - b.seq);
      for (const r of rows) out.push({ ...r, entries: asBuffer(r.entries.slice()) });
    }
    return out;
  }

  deleteChunksUpTo(target: number, seq: number): void {
    const chunks = this.outbox.get(target);
    if (!chunks) return;
    for (const s of chunks.keys()) {
      if (s > seq) continue;
      chunks.delete(s);
      this.rowsWritten++;
    }
  }

  updateChunkRetry(target: number, seq: number, attempts: number, nextAt: number): void {
    const row = this.outbox.get(target)?.get(seq);
    if (!row) return;
    this.rowsWritten++;
    row.attempts = attempts;
    row.nextAt = nextAt;
  }

  loadLinks(): LinkRow[] {
    return [...this.links.values()].sort((a, b) => a.peer - b.peer).map((r) => ({ ...r }));
  }

  saveAcked(peer: number, seq: number): void {
    this.rowsWritten++;
    const row = this.links.get(peer);
    if (row) row.ackedSeq = seq;
    else this.links.set(peer, { peer, ackedSeq: seq, appliedSeq: 0 });
  }

  saveApplied(peer: number, seq: number): void {
    this.rowsWritten++;
    const row = this.links.get(peer);
    if (row) row.appliedSeq = seq;
    else this.links.set(peer, { peer, ackedSeq: 0, appliedSeq: seq });
  }

  addInterest(peer: number, filter: string): void {
    let set = this.interest.get(peer);
    if (!set) this.interest.set(peer, (set = new Set()));
    if (set.has(filter)) return; // INSERT OR IGNORE writes nothing
    set.add(filter);
    this.rowsWritten++;
  }

  removeInterest(peer: number, filter: string): void {
    if (this.interest.get(peer)?.delete(filter)) this.rowsWritten++;
  }

  addInterestFp(peer: number, fp: number): void {
    const all = (this.s.interestFp ??= new Map());
    let set = all.get(peer);
    if (!set) all.set(peer, (set = new Set()));
    if (set.has(fp)) return; // INSERT OR IGNORE writes nothing
    set.add(fp);
    this.rowsWritten++;
  }

  removeInterestFp(peer: number, fp: number): void {
    if (this.s.interestFp?.get(peer)?.delete(fp)) this.rowsWritten++;
  }

  loadInterestFps(each: (peer: number, fp: number) => void): void {
    const all = this.s.interestFp;
    if (!all) return;
    for (const peer of [...all.keys()].sort((a, b) => a - b)) for (const fp of [...all.get(peer)!].sort((a, b) => a - b)) each(peer, fp);
  }

  loadShardLayout(): number | null {
    return this.s.shardLayout ?? null;
  }

  saveShardLayout(k: number): void {
    this.s.shardLayout = k;
    this.rowsWritten++;
  }

  loadReshard(part: "plan" | "export"): string | null {
    return this.s.reshard?.[part] ?? null;
  }

  saveReshard(part: "plan" | "export", json: string | null): void {
    (this.s.reshard ??= {})[part] = json;
    this.rowsWritten++;
  }

  saveTunnel(id: string, entrance: number, attachment: string): void {
    (this.s.tunnels ??= new Map()).set(id, { id, entrance, attachment });
    this.rowsWritten++;
  }

  deleteTunnel(id: string): void {
    if (this.s.tunnels?.delete(id)) this.rowsWritten++;
  }

  loadTunnels(): TunnelRow[] {
    return [...(this.s.tunnels?.values() ?? [])].sort((a, b) => (a.id < b.id ? -1 : 1)).map((r) => ({ ...r }));
  }

  loadInterest(): { peer: number; filter: string }[] {
    const out: { peer: number; filter: string }[] = [];
    for (const peer of [...this.interest.keys()].sort((a, b) => a - b)) {
      for (const filter of [...this.interest.get(peer)!].sort()) out.push({ peer, filter });
    }
    return out;
  }

  /** deliveries matching `keep`, joined with their message, in seq order (Map keeps insertion order) */
  private rows(keep: (d: StoredDelivery) => boolean): DeliveryRow[] {
    const out: DeliveryRow[] = [];
    for (const [seq, d] of this.s.deliveries) {
      if (!keep(d)) continue;
      const body = this.s.messages.get(d.msgId);
      if (!body) continue; // an inner join, as the SQLite store's query
      out.push({ seq, clientId: d.clientId, msg: { ...messageOf(body), storedId: d.msgId }, qos: d.qos, retain: d.retain, state: d.state, packetId: d.packetId, subIds: d.subIds ? [...d.subIds] : null, share: d.share });
    }
    return out;
  }
}

function bodyOf(msg: MessageRow): StoredMessage {
  const body: StoredMessage = { topic: msg.topic, payload: msg.payload.slice(), qos: msg.qos, retain: msg.retain };
  if (msg.properties) body.properties = structuredClone(msg.properties);
  if (msg.expiresAt !== undefined) body.expiresAt = msg.expiresAt;
  return body;
}

function messageOf(body: StoredMessage): MessageRow {
  const msg: MessageRow = { topic: body.topic, payload: asBuffer(body.payload.slice()), qos: body.qos, retain: body.retain };
  if (body.properties) msg.properties = structuredClone(body.properties);
  if (body.expiresAt !== undefined) msg.expiresAt = body.expiresAt;
  return msg;
}
