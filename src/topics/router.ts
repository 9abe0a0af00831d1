// Publish → the sessions that should receive it, once each, at the highest granted QoS.
import { TopicTrie, type SharedGroup } from "./trie";
import { parseSharedFilter } from "./validate";
import type { Session, Subscription } from "../session/session";
import type { Message } from "../session/message";
import type { QoS } from "../protocol/codec";
import { mayRead } from "../auth/rights";

export class Router {
  private readonly trie = new TopicTrie<Subscription>();
  private generation = 0;
  /**
   * The result of the last match, slot i for i in 0 .. count - 1: the session, and the QoS,
   * RETAIN flag, subscription ids and shared group of its one copy. Reused, and never shortened
   * (emptying an array frees its storage, and the next match would allocate it again).
   */
  readonly matched: Session[] = [];
  readonly qos: QoS[] = [];
  readonly retain: boolean[] = [];
  readonly subIds: (number[] | null)[] = [];
  readonly group: (SharedGroup<Subscription> | null)[] = [];
  private count = 0;
  /** observer of every added subscription (the broker starts its `$SYS` publisher from here) */
  onAdd: ((filter: string) => void) | null = null;
  /** a shared group matched but none of its members may read the topic: the message is dropped */
  onUnreadable: (() => void) | null = null;

  get subscriptionCount(): number {
    return this.trie.size;
  }

  add(sub: Subscription): void {
    const shared = parseSharedFilter(sub.filter);
    if (shared && shared !== "invalid") this.trie.addShared(shared.group, shared.filter, sub.session.clientId, sub);
    else this.trie.add(sub.filter, sub.session.clientId, sub);
    this.onAdd?.(sub.filter);
  }

  /** The group of a shared filter ("$share/<group>/<filter>"), null when it has no members. */
  sharedGroup(shareFilter: string): SharedGroup<Subscription> | null {
    const shared = parseSharedFilter(shareFilter);
    return shared && shared !== "invalid" ? this.trie.sharedGroup(shared.group, shared.filter) : null;
  }

  remove(session: Session, filter: string): void {
    const shared = parseSharedFilter(filter);
    if (shared && shared !== "invalid") this.trie.removeShared(shared.group, shared.filter, session.clientId);
    else this.trie.remove(filter, session.clientId);
  }

  /**
   * The sessions a message goes to: returns their number, n; slots 0 .. n - 1 of `matched`,
   * `qos`, `retain`, `subIds` and `group` say how each gets it, valid until the next call. Delivery never publishes, so a caller's loop over the result
   * is never interleaved with another match.
   */
  match(msg: Message, groups = true): number {
    this.count = 0;
    this.generation++;
    this.current = msg;
    // without groups: a copy from another shard, whose shared groups get copies of their own
    this.trie.match(msg.topic, this.onSub, groups ? this.onGroup : ignoreGroup);
    this.current = null;
    return this.count;
  }

  // The trie's callbacks, made once (not two closures per message); `current` is the message.
  private current: Message | null = null;

  private readonly onSub = (sub: Subscription): void => {
    const msg = this.current!;
    if (sub.noLocal && sub.session.clientId === msg.origin) return; // MQTT 5 No Local
    if (!mayRead(sub, msg.topic)) return; // a filter broader than the read ACL
    this.take(sub, msg, null);
  };

  private readonly onGroup = (group: SharedGroup<Subscription>): void => {
    const msg = this.current!;
    const sub = pickMember(group, null, msg.topic);
    if (sub) this.take(sub, msg, group);
    else if (group.members.size > 0) this.onUnreadable?.();
  };

  private take(sub: Subscription, msg: Message, group: SharedGroup<Subscription> | null): void {
    const s = sub.session;
    const qos = (sub.qos < msg.qos ? sub.qos : msg.qos) as QoS;
    const retain = sub.retainAsPublished && msg.retain;
    if (s.matchGen !== this.generation) {
      // first match of this session in this publish: a new slot (the stamp finds it again)
      const i = this.count++;
      s.matchGen = this.generation;
      s.matchSlot = i;
      this.matched[i] = s;
      this.qos[i] = qos;
      this.retain[i] = retain;
      this.subIds[i] = sub.subscriptionId ? [sub.subscriptionId] : null;
      this.group[i] = group;
      return;
    }
    // Overlapping subscriptions: one copy at the highest QoS, every subscription id.
    const i = s.matchSlot;
    if (qos > this.qos[i]!) this.qos[i] = qos;
    if (retain) this.retain[i] = true;
    if (sub.subscriptionId) (this.subIds[i] ??= []).push(sub.subscriptionId);
    this.group[i] = null; // also an ordinary subscriber: the copy is its own, not the group's
  }
}

function ignoreGroup(): void {}

/**
 * One member of a shared group that may read `topic`: round robin over connected members
 * (skipping `exclude`); with none connected, the next persistent member (its queue holds the
 * message until it returns). A member the read ACL keeps from the topic is passed over, so the
 * group loses the message only when no member may read it.
 */
export function pickMember(group: SharedGroup<Subscription>, exclude: Session | null, topic: string): Subscription | null {
  const members = group.members;
  const n = members.size;
  if (n === 0) return null;
  const start = group.cursor % n;
  let fallback: Subscription | null = null;
  let i = 0;
  // two passes: from the cursor to the end, then from the start to the cursor
  for (let pass = 0; pass < 2; pass++) {
    i = 0;
    for (const sub of members.values()) {
      const at = i++;
      if (pass === 0 ? at < start : at >= start) continue;
      const s = sub.session;
      if (s === exclude || !mayRead(sub, topic)) continue;
      if (s.conn) {
        group.cursor = at + 1;
        return sub;
      }
      if (!fallback && s.persistent) fallback = sub;
    }
  }
  if (exclude) return null; // re-routing only to a connected member
  group.cursor = start + 1;
  return fallback;
}
