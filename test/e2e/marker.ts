// Proving that nothing arrived, without trusting a fixed sleep: after the messages that must not
// arrive, a marker goes the same way (published after them, to the same receiver). The broker
// handles one connection's packets in order and delivers to one connection in order, so once the
// marker is in, anything that was going to arrive ahead of it has arrived. The test then asserts
// that what it recorded is exactly what it expected, followed by the marker.
import type { MqttClient } from "mqtt";

let counter = 0;

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

/** Polls `check` every 20 ms until it holds; fails after `timeoutMs` (a condition, not a fixed sleep). */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms: ${check.toString()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
