// Rights over hibernation and session handover (pure: Connection, Session and the rights helpers).
import { describe, expect, test } from "vitest";
import { Connection, type Attachment, type Transport } from "../../src/broker/connection";
import { DEFAULTS } from "../../src/config";
import { Authenticator } from "../../src/auth/authenticator";
import { loadAuthConfig } from "../../src/auth/config";
import { connMayRead, filterAccess, judgeSubscriptions, mayPublish, mayRead } from "../../src/auth/rights";
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

  test("a handover re-judges the session's subscriptions under the new rights", () => {
    const s = new Session("c1", true);
    const sub = (filter: string): Subscription => ({ session: s, filter, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, aclCovered: true });
    s.subscriptions.set("a/#", sub("a/#"));
    s.subscriptions.set("b/x", sub("b/x"));
    const bob = TopicAcl.compile(["b/#"], "c1", undefined);
    judgeSubscriptions(s, bob);
    expect([...s.subscriptions.values()].map((x) => x.aclCovered)).toEqual([false, true]);
    // offline: the session's ACL applies; online: the connection's
    expect(mayRead(s.subscriptions.get("a/#")!, "a/1")).toBe(false);
    s.conn = conn;
    conn.readAcl = null;
    expect(mayRead(s.subscriptions.get("a/#")!, "a/1")).toBe(true);
    conn.readAcl = bob;
    expect(mayRead(s.subscriptions.get("a/#")!, "a/1")).toBe(false);
    expect(connMayRead(conn, "b/1")).toBe(true);
    expect(connMayRead(conn, "a/1")).toBe(false);
  });
});
