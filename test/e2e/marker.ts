// Proving that nothing (more) arrived. A quiet window alone passes when a leak is merely late; so
// after the action, a marker message goes along the same path, and once the marker arrives the
// test asserts that everything received before it is exactly what was expected.
import { expect } from "vitest";
import type { MqttClient } from "mqtt";

let n = 0;
let counter = 0;

/**
 * `got` records a client's messages as "topic=payload" (`record(client)` from inspect.ts, started
 * before the action under test). Waits `quietMs` (for things that are due later: a will delay, an
 * alarm; a message sent before the marker on the same path arrives first anyway), then calls
 * `send(marker)`, which must publish the marker so that this client receives it, waits for it, and
 * asserts that `got` holds `expected` and then the marker, nothing else.
 */
export async function expectOnlyMarker(
  got: string[],
  send: (marker: string) => unknown,
  expected: string[] = [],
  opts: { quietMs?: number; timeoutMs?: number } = {},
): Promise<void> {
  await expectOnlyMarkerAll([got], send, [expected], opts);
}

/** The same for several clients that all receive the one marker `send` publishes. */
export async function expectOnlyMarkerAll(
  gots: string[][],
  send: (marker: string) => unknown,
  expected: string[][] = gots.map(() => []),
  { quietMs = 0, timeoutMs = 5000 } = {},
): Promise<void> {
  if (quietMs > 0) await new Promise((r) => setTimeout(r, quietMs));
  const marker = `marker-${++n}-${Date.now()}`;
  const isMarker = (m: string) => m.endsWith(`=${marker}`);
  await send(marker);
  await until(() => gots.every((got) => got.some(isMarker)), `the marker ${marker} to arrive (got ${JSON.stringify(gots)})`, timeoutMs);
  expect(gots.map((got) => got.slice(0, got.findIndex(isMarker))), "received before the marker").toEqual(expected);
}

/**
 * Publishes a unique marker (QoS 1) on `topic` from `from` and waits until `to` received it.
 * Returns it as "topic=payload", the way `record` writes messages.
 */
export async function marker(from: MqttClient, to: MqttClient, topic: string, timeoutMs = 5000): Promise<string> {
  const payload = `marker-${++counter}-${Date.now()}`;
  const arrived = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      to.off("message", onMessage);
      reject(new Error(`marker ${payload} on ${topic} did not arrive within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (t: string, p: Buffer) => {
      if (t !== topic || p.toString() !== payload) return;
      clearTimeout(timer);
      to.off("message", onMessage);
      resolve();
    };
    to.on("message", onMessage);
  });
  await from.publishAsync(topic, payload, { qos: 1 });
  await arrived;
  return `${topic}=${payload}`;
}

/**
 * Resolves once `condition()` holds (checked every 5 ms); rejects after `timeoutMs`. `what` names
 * the condition in the error (or is the timeout, for short calls).
 */
export async function until(condition: () => boolean | Promise<boolean>, what: string | number = condition.toString(), timeoutMs = 5000): Promise<void> {
  if (typeof what === "number") [what, timeoutMs] = [condition.toString(), what];
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
