// Rights over hibernation and session handover (pure: Connection, Session and the rights helpers).
import { describe, expect, test } from "vitest";
import { Connection, type Attachment, type Transport } from "../../src/broker/connection";
import { DEFAULTS } from "../../src/config";
import { Authenticator } from "../../src/auth/authenticator";
import { loadAuthConfig } from "../../src/auth/config";
import { applyReadAcl, filterAccess, mayPublish, mayRead } from "../../src/auth/rights";
import { TopicAcl } from "../../src/auth/acl";
import { Session, type Subscription } from "../../src/session/session";

function transport(saved: Attachment[]): Transport {
  return { send: () => {}, close: () => {}, saveAttachment: (a) => saved.push(structuredClone(a)) };
}

describe("rights survive hibernation through the socket attachment", () => {
  test("the grant is saved and compiled again after a wake", () => {
    const saved: Attachment[] = [];
    const conn = new Connection(transport(saved), DEFAULTS, { seen: 0, at: 0 });
    conn.grant = { username: "alice", publish: ["a/%u/#"], subscribe: ["a/#"] };
    conn.accept("c1", 5, 60);
    const woken = new Connection(transport([]), DEFAULTS, saved.at(-1)!);
    expect(woken.grant).toEqual(conn.grant);
    const auth = new Authenticator(loadAuthConfig({}), "default", () => {});
    const rights = auth.rights(woken.grant, woken.clientId);
    expect(rights.publish!.allows("a/alice/x")).toBe(true);
    expect(rights.publish!.allows("a/bob/x")).toBe(false);
  });

  test("an unrestricted client saves nothing extra", () => {
    const saved: Attachment[] = [];
    const conn = new Connection(transport(saved), DEFAULTS, { seen: 0, at: 0 });
    conn.accept("c1", 4, 0);
    expect(saved.at(-1)!.g).toBeUndefined();
  });
});

describe("publish and read checks", () => {
  const conn = new Connection(transport([]), DEFAULTS, { seen: 0, at: 0 });

  test("`$` topics are never publishable, whatever the ACL", () => {
    conn.publishAcl = null;
    expect(mayPublish(conn, "$SYS/x")).toBe(false);
    expect(mayPublish(conn, "a")).toBe(true);
    conn.publishAcl = TopicAcl.compile(["a/#"], "c", undefined);
    expect(mayPublish(conn, "b")).toBe(false);
  });

  test("shared subscriptions are judged by their inner filter", () => {
    const acl = TopicAcl.compile(["a/#"], "c", undefined);
    expect(filterAccess(acl, "$share/g/a/b")).toBe("covered");
    expect(filterAccess(acl, "$share/g/#")).toBe("partial");
    expect(filterAccess(acl, "$share/g/b/#")).toBe("denied");
    expect(filterAccess(null, "anything")).toBe("covered");
  });

  test("a handover re-judges subscriptions and drops what the new rights cannot read", () => {
    const s = new Session("c1");
    const sub = (filter: string): Subscription => ({ session: s, filter, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, aclCovered: true });
    s.subscriptions.set("a/#", sub("a/#"));
    s.subscriptions.set("#", sub("#"));
    const msg = (topic: string) => ({ topic, payload: new Uint8Array(), qos: 1 as const, retain: false });
    s.queue.push({ msg: msg("a/1"), qos: 1, retain: false }, { msg: msg("b/1"), qos: 1, retain: false });
    s.inflight.set(1, { packetId: 1, msg: msg("a/2"), qos: 1, retain: false, released: false });
    s.inflight.set(2, { packetId: 2, msg: msg("a/3"), qos: 2, retain: false, released: true });
    s.inflight.set(3, { packetId: 3, msg: msg("b/2"), qos: 1, retain: false, released: false });
    applyReadAcl(s, TopicAcl.compile(["b/#"], "c1", undefined));
    expect([...s.subscriptions.values()].map((x) => x.aclCovered)).toEqual([false, false]);
    expect(s.queue.map((q) => q.msg.topic)).toEqual(["b/1"]);
    expect([...s.inflight.keys()]).toEqual([2, 3]); // a released QoS 2 message is the client's already
    expect(mayRead(s.subscriptions.get("#")!, "a/x")).toBe(false);
    expect(mayRead(s.subscriptions.get("#")!, "b/x")).toBe(true);
  });
});
