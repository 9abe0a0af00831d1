// The Eclipse Paho interoperability suite (third_party/paho-interop, unmodified Python) against the
// built worker, through scripts/interop.mjs's TCP→WebSocket proxy, with the recommended setting:
// MAX_KEEPALIVE=60 and ACL_DEFAULT deny subscribe test/nosubscribe. All 37 tests run here.
//
// One after the other the MQTT 5 suite takes ~165 s, so its 27 tests run in five groups at once,
// each in its own broker namespace (the suite reuses client ids and topics), next to the 10
// MQTT 3.1.1 tests: about a minute. `npm run interop` runs each suite whole, in order, per setting.
//
// Two MQTT 5 tests fail, both inside the suite's own Python client, on MQTT 5 answers it cannot
// parse; the broker's answers are valid (see KNOWN below). The test fails when any other test fails,
// when one of these starts passing (update the figures), or when they fail for another reason.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CONFIGURATIONS, VENDORED, hasPython, runConfiguration, failureOutput, type SuiteResult } from "../../scripts/interop.mjs";

const python = hasPython();

/** MQTT 5 tests per group: ~40 s each (measured one by one), all 27 between them. */
const V5_GROUPS = [
  ["test_subscribe_options", "test_session_expiry"],
  ["test_keepalive", "test_user_properties", "test_offline_message_queueing", "test_maximum_packet_size", "test_flow_control2", "test_assigned_clientid"],
  [
    "test_will_delay",
    "test_publication_expiry",
    "test_server_topic_alias",
    "test_retained_message",
    "test_redelivery_on_reconnect",
    "test_payload_format",
    "test_server_keep_alive",
  ],
  [
    "test_shared_subscriptions",
    "test_unsubscribe",
    "test_will_message",
    "test_basic",
    "test_client_topic_alias",
    "test_request_response",
    "test_subscribe_identifiers",
    "test_zero_length_clientid",
    "test_overlapping_subscriptions",
    "test_flow_control1",
  ],
  // The two failing tests alone: a client whose PUBACK parse failed in test_dollar_topics keeps that
  // PUBLISH and sends it again on its next cleanstart=False connect, which can fail a later test
  // (test_will_message right after test_keepalive, say); in the suite's full order nothing does.
  ["test_dollar_topics", "test_subscribe_failure"],
];

/**
 * The failures with the recommended setting, and what the suite's client says. Both are legal MQTT 5
 * answers its parser rejects: a PUBACK with a Reason String (MQTT 5 §3.4.2.2; it accepts only a
 * remaining length of 2–4) for the refused publish to `$TopicA/B` (`$` topics are the broker's), and
 * SUBACK reason code 0x87 Not authorized (§3.9.3) for test/nosubscribe (it accepts 0, 1, 2, 0x80).
 */
const KNOWN: Record<string, string> = {
  test_dollar_topics: "Puback packet is wrong length",
  test_subscribe_failure: "return code in QoS must be 0, 1, 2 or 0x80",
};

const testsOf = (script: string) => [...readFileSync(join(VENDORED, script), "utf8").matchAll(/^ {4}def (test\w+)\(self\)/gm)].map((m) => m[1]!);

describe.skipIf(!python)(`Paho interop suite, MAX_KEEPALIVE=60 + deny subscribe test/nosubscribe${python ? "" : " (skipped: python3 not found)"}`, () => {
  let v5: SuiteResult[];
  let v311: SuiteResult;

  beforeAll(async () => {
    const { results } = await runConfiguration(CONFIGURATIONS.recommended, {
      parallel: true,
      suites: [
        ...V5_GROUPS.map((tests, i) => ({ script: "client_test5.py", tests: tests.map((t) => `Test.${t}`), namespace: `paho5-${i}` })),
        { script: "client_test.py", namespace: "paho311" },
      ],
    });
    v5 = results.slice(0, V5_GROUPS.length);
    v311 = results[V5_GROUPS.length]!;
  }, 240_000);

  test("the groups hold every MQTT 5 test of the suite, once", () => {
    expect(V5_GROUPS.flat().sort()).toEqual(testsOf("client_test5.py").sort());
    expect(testsOf("client_test5.py")).toHaveLength(27);
    expect(testsOf("client_test.py")).toHaveLength(10);
  });

  test("MQTT 3.1.1: 10 of 10 pass", () => {
    const { stdout: _o, stderr, ...report } = v311;
    expect(report.run, stderr).toBe(10);
    expect({ failed: report.failed, errored: report.errored }, stderr).toEqual({ failed: [], errored: [] });
    expect(report.passed).toBe(10);
  });

  test("MQTT 5: 25 of 27 pass; the two failures are the suite client's parser on valid MQTT 5 answers", () => {
    const run = v5.reduce((n, r) => n + r.run, 0);
    const passed = v5.reduce((n, r) => n + r.passed, 0);
    const bad = v5.flatMap((r) => [...r.failed, ...r.errored]).sort();
    const all = v5.map((r) => r.stderr).join("\n");
    expect(run, all).toBe(27);
    expect(bad, all).toEqual(Object.keys(KNOWN).sort());
    expect(passed).toBe(25);
    for (const [t, why] of Object.entries(KNOWN)) {
      const out = v5.map((r) => failureOutput(r.stderr, t)).join("");
      expect(out, out).toContain(why);
    }
  });

  afterAll(() => {
    const seconds = (r: SuiteResult) => r.wallSeconds.toFixed(1);
    console.log(`paho interop: MQTT 5 groups ${v5?.map(seconds).join(", ")} s; MQTT 3.1.1 ${v311 && seconds(v311)} s`);
  });
});
