// Rules at work in one namespace: the publish path matches a message against the rules' filters
// (a topic trie) and appends it to each matching rule's batch; QoS >= 1 messages are first
// stored (one row each, written in the publishing event, so the PUBACK leaves only once it is
// committed). Batches leave in a later event, one send per rule and turn, never awaited by
// MQTT delivery. A failed stored send is retried from the alarm with backoff and dropped after
// RULES_MAX_ATTEMPTS / RULES_MAX_AGE; a failed QoS 0 send is lost (at most once). docs/rules.md.
import type { BrokerConfig } from "../config";
import type { Store } from "../storage/store";
import type { MessageRow } from "../storage/store";
import { TopicTrie } from "../topics/trie";
import { redactUrl, type Rule } from "./config";
import type { Destination } from "./destinations";
import type { TakenMessage } from "./message";
import { givenUp, retryDelay } from "./retry";

export interface RulesHost {
  readonly store: Store;
  readonly config: BrokerConfig;
  now(): number;
  /** ask for the alarm at `ms` or earlier */
  wakeAt(ms: number): void;
  /** the alarm asked for is no longer needed: set it to the broker's next deadline (or none) */
  rearm?(): void;
  /** run `fn` in a later event */
  later(fn: () => void): void;
  log(level: "info" | "warn" | "error", message: string): void;
}

/** The publish path's view of a message (src/session/message.ts Message fits). */
export interface OfferedMessage extends MessageRow {
  origin?: string;
}

export interface RuleCounters {
  /** messages that matched the rule's filter */
  matched: number;
  /** messages the destination took */
  delivered: number;
  /** sends that failed (error, non-2xx, timeout); each may carry many messages */
  failedSends: number;
  /** stored messages given up after RULES_MAX_ATTEMPTS or RULES_MAX_AGE */
  dropped: number;
  /** stored messages whose MQTT 5 Message Expiry passed before they could be sent */
  expired: number;
  /** QoS 0 messages (or qos:0 rules) whose one send failed or found the rule's memory full */
  lost: number;
  /** QoS >= 1 messages not taken because RULES_MAX_PENDING sends were pending */
  overflow: number;
  /** messages the destination can never take (a Queue's 128 KB limit): dropped at once */
  rejected: number;
}

export interface RulesStats {
  /** stored sends not yet confirmed (all rules) */
  pending: number;
  /** sends under way now */
  sending: number;
  /** every rule's counters summed */
  total: RuleCounters;
  rules: ({ name: string; filter: string; to: string } & RuleCounters)[];
}

interface Pending extends TakenMessage {
  /** its row in storage; null for a QoS 0 message (held in memory only) */
  id: number | null;
}

class Route {
  readonly batch: Pending[] = [];
  sending = 0;
  /** when each level was last logged, and what was held back since (see RuleEngine.say) */
  readonly lastLogAt = { warn: -Infinity, error: -Infinity };
  readonly suppressed = { warn: 0, error: 0 };
  readonly counters: RuleCounters = { matched: 0, delivered: 0, failedSends: 0, dropped: 0, expired: 0, lost: 0, overflow: 0, rejected: 0 };
  constructor(
    readonly rule: Rule,
    readonly dest: Destination,
  ) {}

  /** a stored send under way is not due again before this (the timeout, and a margin) */
  leaseMs(): number {
    return this.rule.timeoutMs + LEASE_MARGIN_MS;
  }
}

/** Sends under way per rule; more messages wait in its batch. */
const MAX_SENDS_PER_RULE = 4;
/** Messages held in memory per rule; beyond, QoS 0 ones are lost and stored ones wait for the alarm. */
const MAX_BATCHED = 1000;
/**
 * Payload bytes held in memory by all rules (batches and sends under way), whatever the count:
 * messages may be 1 MiB each (MAX_PACKET_SIZE) and an isolate has 128 MB. Beyond, as beyond
 * MAX_BATCHED: QoS 0 messages are lost, stored ones wait in storage for the alarm.
 */
export const MAX_HELD_BYTES = 32 * 1024 * 1024;
/** Payload bytes per send (at least one message): a JSON body is ~2.7 times its payloads as strings. */
export const MAX_SEND_BYTES = 1024 * 1024;
/** Stored sends the alarm takes up at once. */
const DUE_LIMIT = 500;
const LEASE_MARGIN_MS = 5000;
/** A rule says what fails at most this often (the rest is counted). */
const LOG_INTERVAL_MS = 10_000;

export class RuleEngine {
  private readonly trie = new TopicTrie<Route>();
  private readonly routes = new Map<string, Route>();
  /** the routes the last offer matched (reused) */
  private readonly hits: Route[] = [];
  private readonly onHit = (route: Route): void => void this.hits.push(route);
  private flushScheduled = false;
  /** an alarm is asked for at this time or earlier (null: none asked since the last alarm) */
  private armedAt: number | null = null;
  /** rows in rule_sends */
  private stored: number;
  /** stored sends held in memory, in a batch or under way: the alarm does not take them up again */
  private readonly held = new Set<number>();
  /** payload bytes in batches and sends under way (bounded by MAX_HELD_BYTES) */
  private heldBytes = 0;

  constructor(
    rules: { rule: Rule; dest: Destination }[],
    private readonly host: RulesHost,
  ) {
    for (const { rule, dest } of rules) {
      const route = new Route(rule, dest);
      this.routes.set(rule.name, route);
      this.trie.add(rule.filter, rule.name, route);
    }
    this.stored = host.store.countRuleSends();
  }

  /** Whether any rule's filter matches `topic` (the lifecycle events build their JSON only then). */
  matches(topic: string): boolean {
    const hits = this.hits;
    this.trie.match(topic, this.onHit, ignoreGroup);
    const any = hits.length > 0;
    hits.length = 0;
    return any;
  }

  /**
   * The publish path: match, store what needs storing, append. No JSON, no await. The trie's
   * `$` rule keeps `#` and `+/...` from matching `$` topics [MQTT-4.7.2-1].
   */
  offer(msg: OfferedMessage): void {
    const hits = this.hits;
    this.trie.match(msg.topic, this.onHit, ignoreGroup);
    if (hits.length === 0) return;
    try {
      const { store, config } = this.host;
      const now = this.host.now();
      const clientId = msg.origin ?? null;
      for (let i = 0; i < hits.length; i++) {
        const route = hits[i]!;
        route.counters.matched++;
        const size = msg.payload.byteLength;
        const full = route.batch.length >= MAX_BATCHED || (this.heldBytes > 0 && this.heldBytes + size > MAX_HELD_BYTES);
        if (msg.qos === 0 || route.rule.qos === 0) {
          if (full) route.counters.lost++;
          else {
            route.batch.push({ id: null, msg, clientId, createdAt: now, attempts: 0 });
            this.heldBytes += size;
          }
          continue;
        }
        if (this.stored >= config.RULES_MAX_PENDING) {
          route.counters.overflow++;
          this.say(route, "warn", `RULES_MAX_PENDING (${config.RULES_MAX_PENDING}) sends are pending: a message on ${JSON.stringify(msg.topic)} is not taken`);
          continue;
        }
        const leaseEnd = now + route.leaseMs();
        const id = store.addRuleSend(route.rule.name, msg, clientId, now, leaseEnd);
        this.stored++;
        this.arm(leaseEnd); // should the object stop before the send ends, the alarm takes it up
        if (!full) {
          route.batch.push({ id, msg, clientId, createdAt: now, attempts: 0 });
          this.held.add(id);
          this.heldBytes += size;
        }
      }
    } finally {
      hits.length = 0; // also when a write threw (the publish then fails as any storage failure does)
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.host.later(() => this.flush());
    }
  }

  /** From the alarm: stored sends due again (retries, and sends of a previous life of the object). */
  due(now: number): void {
    this.armedAt = null;
    if (this.stored === 0) return;
    const { store } = this.host;
    let started = false;
    // rows are loaded with their payloads: no more than memory has room for (at least one when none is held)
    const room = MAX_HELD_BYTES - this.heldBytes;
    const rows = this.heldBytes === 0 || room >= MAX_SEND_BYTES ? store.dueRuleSends(now, DUE_LIMIT, Math.max(room, 1)) : [];
    /** pending sends of rules RULES no longer has, by name: one log line each, not one per row */
    let orphans: Map<string, number> | undefined;
    for (const row of rows) {
      const route = this.routes.get(row.rule);
      if (this.held.has(row.id) && route) {
        // still waiting in its batch (the rule's sends are all busy): not due before a new lease ends
        store.updateRuleSend(row.id, row.attempts, now + route.leaseMs());
        continue;
      }
      if (!route) {
        store.deleteRuleSends([row.id]);
        this.stored--;
        (orphans ??= new Map()).set(row.rule, (orphans.get(row.rule) ?? 0) + 1);
        continue;
      }
      if (row.msg.expiresAt !== undefined && row.msg.expiresAt < now) {
        store.deleteRuleSends([row.id]);
        this.stored--;
        route.counters.expired++;
        continue;
      }
      if (route.batch.length >= MAX_BATCHED || (this.heldBytes > 0 && this.heldBytes + row.msg.payload.byteLength > MAX_HELD_BYTES)) {
        store.updateRuleSend(row.id, row.attempts, now + 1000); // its turn comes when the batch has room
        continue;
      }
      store.updateRuleSend(row.id, row.attempts, now + route.leaseMs());
      route.batch.push(row);
      this.held.add(row.id);
      this.heldBytes += row.msg.payload.byteLength;
      started = true;
    }
    if (orphans) for (const [rule, n] of orphans) this.host.log("warn", `rules: ${n} pending send(s) for the rule ${JSON.stringify(rule)}, which RULES no longer has, dropped`);
    if (started) this.flush();
    const next = store.nextRuleSendAt();
    // still due: more than one alarm takes (DUE_LIMIT) or memory has room for; the next look in a second, not at once
    if (next !== null) this.arm(next > now ? next : now + 1000);
  }

  stats(): RulesStats {
    const total: RuleCounters = { matched: 0, delivered: 0, failedSends: 0, dropped: 0, expired: 0, lost: 0, overflow: 0, rejected: 0 };
    const rules: RulesStats["rules"] = [];
    let sending = 0;
    for (const route of this.routes.values()) {
      const c = route.counters;
      for (const k in total) total[k as keyof RuleCounters] += c[k as keyof RuleCounters];
      const to = route.rule.to;
      rules.push({ name: route.rule.name, filter: route.rule.filter, to: to.kind === "webhook" ? `webhook:${redactUrl(to.url)}` : `${to.kind}:${to.binding}`, ...c });
      sending += route.sending;
    }
    return { pending: this.stored, sending, total, rules };
  }

  /** Starts a send for every rule with a batch (up to MAX_SENDS_PER_RULE under way). */
  private flush(): void {
    this.flushScheduled = false;
    for (const route of this.routes.values()) {
      while (route.batch.length > 0 && route.sending < MAX_SENDS_PER_RULE) {
        let n = 0;
        let bytes = 0;
        for (const p of route.batch) {
          if (n === route.dest.batchSize || (n > 0 && bytes + p.msg.payload.byteLength > MAX_SEND_BYTES)) break;
          bytes += p.msg.payload.byteLength;
          n++;
        }
        const batch = route.batch.splice(0, n);
        route.sending++;
        void this.send(route, batch);
      }
    }
  }

  private async send(route: Route, batch: Pending[]): Promise<void> {
    let error: unknown = null;
    let rejected: void | number[] = undefined;
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const err = new Error(`timed out after ${route.rule.timeoutMs / 1000} s`);
          abort.abort(err);
          reject(err);
        }, route.rule.timeoutMs);
      });
      rejected = await Promise.race([route.dest.send(batch, abort.signal), timeout]);
    } catch (err) {
      error = err;
    } finally {
      clearTimeout(timer);
    }
    try {
      this.settle(route, batch, error, rejected || null);
    } catch (err) {
      this.host.log("error", `rules: settling a send of ${JSON.stringify(route.rule.name)} failed: ${(err as Error)?.stack ?? String(err)}`);
    } finally {
      for (const p of batch) {
        if (p.id !== null) this.held.delete(p.id);
        this.heldBytes -= p.msg.payload.byteLength;
      }
      route.sending--;
      // nothing pending (sent, or given up): the alarm armed for the leases would wake the object for nothing
      if (this.stored === 0 && this.armedAt !== null) {
        this.armedAt = null;
        this.host.rearm?.();
      }
      if (route.batch.length > 0 && !this.flushScheduled) {
        this.flushScheduled = true;
        this.host.later(() => this.flush());
      }
    }
  }

  /** After a send: delete what was sent; reschedule, drop or lose what was not. */
  private settle(route: Route, batch: Pending[], error: unknown, rejected: number[] | null): void {
    const { store, config } = this.host;
    const c = route.counters;
    if (error === null) {
      const n = rejected?.length ?? 0;
      c.delivered += batch.length - n;
      if (n > 0) {
        c.rejected += n;
        this.say(route, "error", `${n} message(s) dropped: too large for the destination (e.g. ${JSON.stringify(batch[rejected![0]!]!.msg.topic)})`);
      }
      const ids: number[] = [];
      for (const p of batch) if (p.id !== null) ids.push(p.id);
      if (ids.length > 0) {
        store.deleteRuleSends(ids);
        this.stored -= ids.length;
      }
      return;
    }
    c.failedSends++;
    const now = this.host.now();
    const reason = error instanceof Error ? error.message : String(error);
    let dropped = 0;
    for (const p of batch) {
      if (p.id === null) {
        c.lost++;
        continue;
      }
      const failures = p.attempts + 1;
      if (givenUp(failures, p.createdAt, now, config)) {
        store.deleteRuleSends([p.id]);
        this.stored--;
        c.dropped++;
        dropped++;
        continue;
      }
      const at = now + retryDelay(failures, config);
      store.updateRuleSend(p.id, failures, at);
      this.arm(at);
    }
    const gaveUp = dropped > 0 ? `; ${dropped} dropped after ${config.RULES_MAX_ATTEMPTS} attempts or ${config.RULES_MAX_AGE} s` : "";
    this.say(route, dropped > 0 ? "error" : "warn", `a send of ${batch.length} message(s) failed: ${reason.slice(0, 200)}${gaveUp}`);
  }

  /** When the alarm must run for the rules next (a retry, a lease ending); null: never. */
  nextWake(): number | null {
    if (this.armedAt !== null) return this.armedAt;
    return this.stored > 0 ? this.host.store.nextRuleSendAt() : null;
  }

  private arm(at: number): void {
    if (this.armedAt !== null && this.armedAt <= at) return;
    this.armedAt = at;
    this.host.wakeAt(at);
  }

  /** Logs for a rule at most every LOG_INTERVAL_MS per level (drops are errors: never hidden by failures), saying how many lines it held back. */
  private say(route: Route, level: "warn" | "error", message: string): void {
    const now = this.host.now();
    if (now - route.lastLogAt[level] < LOG_INTERVAL_MS) {
      route.suppressed[level]++;
      return;
    }
    const held = route.suppressed[level];
    const more = held > 0 ? ` (and ${held} more since the last report)` : "";
    route.lastLogAt[level] = now;
    route.suppressed[level] = 0;
    this.host.log(level, `rules: ${JSON.stringify(route.rule.name)}: ${message}${more}`);
  }
}

function ignoreGroup(): void {}
