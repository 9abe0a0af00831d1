// The subscription trie and the router: who gets a message, once, at which QoS.
import { describe, expect, test } from "vitest";
import { Router } from "../../src/topics/router";
import { TopicTrie } from "../../src/topics/trie";
import { Session, type Subscription } from "../../src/session/session";
import type { Message } from "../../src/session/message";
import type { Connection } from "../../src/broker/connection";
import type { QoS } from "../../src/protocol/codec";

function sub(session: Session, filter: string, qos: QoS, extra: Partial<Subscription> = {}): Subscription {
  return { session, filter, qos, noLocal: false, retainAsPublished: false, retainHandling: 0, ...extra };
}

function msg(topic: string, qos: QoS = 0, extra: Partial<Message> = {}): Message {
  return { topic, payload: new Uint8Array(0), qos, retain: false, ...extra };
}

/** A session that counts as connected for shared-subscription member picking. */
function online(id: string): Session {
  const s = new Session(id, false);
  s.conn = {} as Connection;
  return s;
}

function matched(router: Router, m: Message): { id: string; qos: QoS; retain: boolean; subIds: number[] | null }[] {
  return router.matched.slice(0, router.match(m)).map((s, i) => ({ id: s.clientId, qos: router.qos[i]!, retain: router.retain[i]!, subIds: router.subIds[i]! }));
}

function nodeCount(trie: TopicTrie<unknown>): number {
  // Counts every node below the root: how much memory the trie holds.
  type N = { children: Map<string, N> };
  const count = (n: N): number => [...n.children.values()].reduce((acc, c) => acc + 1 + count(c), 0);
  return count((trie as unknown as { root: N }).root);
}

describe("router", () => {
  test("overlapping subscriptions of one client give one copy at the highest granted QoS [MQTT-3.3.5-1]", () => {
    const r = new Router();
    const a = new Session("a", false);
    r.add(sub(a, "x/#", 0));
    r.add(sub(a, "x/+", 2));
    r.add(sub(a, "x/y", 1));
    r.add(sub(a, "#", 0));
    expect(matched(r, msg("x/y", 2))).toEqual([{ id: "a", qos: 2, retain: false, subIds: null }]);
    expect(matched(r, msg("x/y", 1))).toEqual([{ id: "a", qos: 1, retain: false, subIds: null }]);
    expect(matched(r, msg("x/y", 0))).toEqual([{ id: "a", qos: 0, retain: false, subIds: null }]);
  });

  test("outbound QoS is the minimum of the message QoS and the granted QoS [MQTT-3.8.4-8]", () => {
    const r = new Router();
    const s0 = new Session("s0", false);
    const s1 = new Session("s1", false);
    const s2 = new Session("s2", false);
    r.add(sub(s0, "t", 0));
    r.add(sub(s1, "t", 1));
    r.add(sub(s2, "t", 2));
    const byQos = (q: QoS) => matched(r, msg("t", q)).map((m) => `${m.id}@${m.qos}`);
    expect(byQos(0)).toEqual(["s0@0", "s1@0", "s2@0"]);
    expect(byQos(1)).toEqual(["s0@0", "s1@1", "s2@1"]);
    expect(byQos(2)).toEqual(["s0@0", "s1@1", "s2@2"]);
  });

  test("several clients each get one copy", () => {
    const r = new Router();
    const sessions = ["a", "b", "c"].map((id) => new Session(id, false));
    for (const s of sessions) {
      r.add(sub(s, "p/#", 1));
      r.add(sub(s, "p/q", 1));
    }
    expect(matched(r, msg("p/q", 1)).map((m) => m.id)).toEqual(["a", "b", "c"]);
    expect(matched(r, msg("other", 1))).toEqual([]);
  });

  test("re-subscribing to the same filter replaces the subscription [MQTT-3.8.4-3]", () => {
    const r = new Router();
    const a = new Session("a", false);
    r.add(sub(a, "t", 2));
    r.add(sub(a, "t", 0));
    expect(r.subscriptionCount).toBe(1);
    expect(matched(r, msg("t", 2))).toEqual([{ id: "a", qos: 0, retain: false, subIds: null }]);
  });

  test("remove stops matching and prunes the emptied trie branch", () => {
    const r = new Router();
    const trie = (r as unknown as { trie: TopicTrie<Subscription> }).trie;
    const a = new Session("a", false);
    const b = new Session("b", false);
    r.add(sub(a, "x/y/z", 1));
    r.add(sub(b, "x/y/z", 1));
    r.add(sub(a, "x/+", 1));
    r.add(sub(b, "$share/g/x/y/#", 1));
    expect(nodeCount(trie)).toBe(5); // x, y, z, +, #
    r.remove(a, "x/y/z");
    expect(matched(r, msg("x/y/z", 1)).map((m) => m.id)).toEqual(["b"]);
    r.remove(b, "x/y/z");
    expect(nodeCount(trie)).toBe(4); // z pruned
    r.remove(b, "$share/g/x/y/#");
    expect(nodeCount(trie)).toBe(2); // x, +
    r.remove(a, "x/+");
    expect(nodeCount(trie)).toBe(0);
    expect(r.subscriptionCount).toBe(0);
    expect(matched(r, msg("x/y/z", 1))).toEqual([]);
    // removing what is not there is harmless
    r.remove(a, "x/+");
    r.remove(a, "never/there");
    expect(r.subscriptionCount).toBe(0);
  });

  test("remove keeps a node that still has children", () => {
    const trie = new TopicTrie<string>();
    trie.add("a", "c1", "a");
    trie.add("a/b", "c1", "a/b");
    expect(trie.remove("a", "c1")).toBe(true);
    expect(nodeCount(trie)).toBe(2);
    const got: string[] = [];
    trie.match("a/b", (v) => got.push(v), () => {});
    expect(got).toEqual(["a/b"]);
    expect(trie.remove("a", "c1")).toBe(false);
  });

  test("$ topics are not matched by leading wildcards, also in shared subscriptions [MQTT-4.7.2-1]", () => {
    const r = new Router();
    const a = new Session("a", false);
    const b = online("b");
    r.add(sub(a, "#", 1));
    r.add(sub(a, "+/x", 1));
    r.add(sub(b, "$share/g/#", 1));
    expect(matched(r, msg("$SYS/x", 1))).toEqual([]);
    r.add(sub(a, "$SYS/#", 1));
    expect(matched(r, msg("$SYS/x", 1)).map((m) => m.id)).toEqual(["a"]);
  });

  test("RETAIN is cleared on live forwarding unless Retain As Published [MQTT-3.3.1-9, MQTT-3.8.3-3]", () => {
    const r = new Router();
    const plain = new Session("plain", false);
    const rap = new Session("rap", false);
    r.add(sub(plain, "t", 1));
    r.add(sub(rap, "t", 1, { retainAsPublished: true }));
    expect(matched(r, msg("t", 1, { retain: true }))).toEqual([
      { id: "plain", qos: 1, retain: false, subIds: null },
      { id: "rap", qos: 1, retain: true, subIds: null },
    ]);
    expect(matched(r, msg("t", 1)).map((m) => m.retain)).toEqual([false, false]);
  });

  test("No Local skips the publisher's own subscriptions [MQTT-3.8.3-3]", () => {
    const r = new Router();
    const a = new Session("a", false);
    const b = new Session("b", false);
    r.add(sub(a, "t", 1, { noLocal: true }));
    r.add(sub(b, "t", 1, { noLocal: true }));
    expect(matched(r, msg("t", 1, { origin: "a" })).map((m) => m.id)).toEqual(["b"]);
  });

  test("every matching subscription identifier is reported once per message [MQTT-3.3.4-3]", () => {
    const r = new Router();
    const a = new Session("a", false);
    r.add(sub(a, "t/#", 1, { subscriptionId: 7 }));
    r.add(sub(a, "t/+", 0, { subscriptionId: 9 }));
    r.add(sub(a, "t/x", 0));
    const [m] = matched(r, msg("t/x", 1));
    expect(m!.qos).toBe(1);
    expect(m!.subIds!.sort()).toEqual([7, 9]);
  });

  test("a shared group gives each message to one member, round robin over connected members", () => {
    const r = new Router();
    const a = online("a");
    const b = online("b");
    const off = new Session("off", false); // not connected, not persistent: skipped
    r.add(sub(a, "$share/g/jobs/#", 1));
    r.add(sub(b, "$share/g/jobs/#", 1));
    r.add(sub(off, "$share/g/jobs/#", 1));
    const got = [1, 2, 3, 4].map(() => matched(r, msg("jobs/1", 1)).map((m) => m.id));
    expect(got.every((ids) => ids.length === 1)).toBe(true);
    expect(got.flat().sort()).toEqual(["a", "a", "b", "b"]);
  });
});
