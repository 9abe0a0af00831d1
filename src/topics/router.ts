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
  private readonly scratch: Session[] = [];
  private depth = 0;

  get subscriptionCount(): number {
    return this.trie.size;
  }

  add(sub: Subscription): void {
    const shared = parseSharedFilter(sub.filter);
    if (shared && shared !== "invalid") this.trie.addShared(shared.group, shared.filter, sub.session.clientId, sub);
    else this.trie.add(sub.filter, sub.session.clientId, sub);
  }

  remove(session: Session, filter: string): void {
    const shared = parseSharedFilter(filter);
    if (shared && shared !== "invalid") this.trie.removeShared(shared.group, shared.filter, session.clientId);
    else this.trie.remove(filter, session.clientId);
  }

  /**
   * The sessions a message goes to. Each returned session carries its delivery in its `match*`
   * fields (QoS, RETAIN flag, subscription ids). The array is reused: consume it before the
   * next call (a nested call, e.g. a will published while delivering, gets a fresh one).
   */
  match(msg: Message): Session[] {
    const out = this.depth > 0 ? [] : this.scratch;
    out.length = 0;
    const gen = ++this.generation;
    this.depth++;
    try {
      this.trie.match(
        msg.topic,
        (sub) => {
          if (sub.noLocal && sub.session.clientId === msg.origin) return; // MQTT 5 No Local
          if (!mayRead(sub, msg.topic)) return; // a filter broader than the read ACL
          take(out, gen, sub, msg);
        },
        (group) => {
          const sub = pickMember(group);
          if (sub && mayRead(sub, msg.topic)) take(out, gen, sub, msg);
        },
      );
    } finally {
      this.depth--;
    }
    return out;
  }
}

function take(out: Session[], gen: number, sub: Subscription, msg: Message): void {
  const s = sub.session;
  const qos = (sub.qos < msg.qos ? sub.qos : msg.qos) as QoS;
  const retain = sub.retainAsPublished && msg.retain;
  if (s.matchGen !== gen) {
    s.matchGen = gen;
    s.matchQos = qos;
    s.matchRetain = retain;
    s.matchSubIds = sub.subscriptionId ? [sub.subscriptionId] : null;
    out.push(s);
    return;
  }
  // Overlapping subscriptions: one copy at the highest QoS, every subscription id.
  if (qos > s.matchQos) s.matchQos = qos;
  if (retain) s.matchRetain = true;
  if (sub.subscriptionId) (s.matchSubIds ??= []).push(sub.subscriptionId);
}

/** One member of a shared group: round robin over connected members, else any member (queued). */
function pickMember(group: SharedGroup<Subscription>): Subscription | null {
  const members = [...group.members.values()];
  if (members.length === 0) return null;
  for (let i = 0; i < members.length; i++) {
    const sub = members[(group.cursor + i) % members.length]!;
    if (sub.session.conn) {
      group.cursor = (group.cursor + i + 1) % members.length;
      return sub;
    }
  }
  const sub = members[group.cursor % members.length]!;
  group.cursor = (group.cursor + 1) % members.length;
  return sub.session.persistent ? sub : null;
}
