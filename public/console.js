// The web console: MQTT.js over WebSocket to /mqtt/<namespace> for subscribe/publish, and the
// HTTP API (/api/<namespace>/...) for the live namespace overview. Plain script, no build step.
// Everything from the network is shown with textContent, never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const MAX_MESSAGES = 300;
  const OVERVIEW_EVERY_MS = 2000;
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  let client = null;
  let namespace = "";
  let overviewTimer = null;
  let previousStats = null;
  let messageCount = 0;
  const subscriptions = new Map(); // filter → qos

  // ——— connection ———

  // The namespace is remembered across visits; the API token only for this tab's session
  // (sessionStorage: gone with the tab, never shared with other tabs or left on disk).
  const saved = JSON.parse(localStorage.getItem("mqtt-console") || "{}");
  if (saved.token !== undefined) localStorage.setItem("mqtt-console", JSON.stringify({ namespace: saved.namespace })); // older versions kept it here
  const params = new URLSearchParams(location.search);
  $("namespace").value = params.get("namespace") || saved.namespace || "default";
  $("token").value = sessionStorage.getItem("mqtt-console-token") || "";

  $("connect-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (client) disconnect();
    else connect();
  });

  function connect() {
    namespace = $("namespace").value.trim();
    localStorage.setItem("mqtt-console", JSON.stringify({ namespace }));
    sessionStorage.setItem("mqtt-console-token", $("token").value);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/mqtt/${encodeURIComponent(namespace)}`;
    setStatus("connecting", `connecting to ${namespace}…`);
    client = mqtt.connect(url, {
      protocolVersion: 5,
      clientId: `console-${Math.random().toString(16).slice(2, 10)}`,
      clean: true,
      reconnectPeriod: 3000,
      connectTimeout: 8000,
    });
    client.on("connect", () => {
      setStatus("connected", `connected · ${namespace}`);
      setEnabled(true);
    });
    client.on("reconnect", () => setStatus("connecting", "reconnecting…"));
    client.on("close", () => {
      if (client) setStatus("connecting", "connection lost, retrying…");
      setEnabled(false);
    });
    client.on("error", (err) => setStatus("error", err.message || "connection error"));
    client.on("message", onMessage);
    $("connect").textContent = "Disconnect";
    $("namespace").disabled = true;
    $("overview-namespace").textContent = namespace;
    startOverview();
  }

  function disconnect() {
    const c = client;
    client = null;
    c.end(true);
    subscriptions.clear();
    renderSubscriptions();
    stopOverview();
    setEnabled(false);
    setStatus("offline", "disconnected");
    $("connect").textContent = "Connect";
    $("namespace").disabled = false;
  }

  function setStatus(state, text) {
    $("status").dataset.state = state;
    $("status").textContent = text;
  }

  function setEnabled(on) {
    $("subscribe").disabled = !on;
    $("publish").disabled = !on;
  }

  // ——— subscribe ———

  $("subscribe-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const filter = $("filter").value.trim();
    const qos = Number($("sub-qos").value);
    client.subscribe(filter, { qos }, (err, granted) => {
      const code = granted && granted[0] ? granted[0].qos : 128;
      if (err || code >= 128) {
        note("subscribe-result", `subscribe to ${filter} refused${err ? `: ${err.message}` : ` (reason 0x${code.toString(16)})`}`, true);
        return;
      }
      subscriptions.set(filter, code);
      renderSubscriptions();
      note("subscribe-result", "");
    });
  });

  function renderSubscriptions() {
    const list = $("subscriptions");
    list.replaceChildren();
    for (const [filter, qos] of subscriptions) {
      const li = el("li", "", el("span", "", `${filter} · QoS ${qos}`));
      const remove = el("button", "", "×");
      remove.type = "button";
      remove.title = `unsubscribe from ${filter}`;
      remove.addEventListener("click", () => {
        client?.unsubscribe(filter);
        subscriptions.delete(filter);
        renderSubscriptions();
      });
      li.append(remove);
      list.append(li);
    }
  }

  // ——— publish ———

  $("publish-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const topic = $("pub-topic").value.trim();
    const qos = Number($("pub-qos").value);
    const retain = $("pub-retain").checked;
    client.publish(topic, $("pub-payload").value, { qos, retain }, (err) => {
      if (err) note("publish-result", `publish failed: ${err.message}`, true);
      else note("publish-result", `published to ${topic} (QoS ${qos}${retain ? ", retained" : ""})`);
    });
  });

  function note(id, text, isError = false) {
    $(id).textContent = text;
    $(id).classList.toggle("error", isError);
  }

  // ——— messages ———

  $("clear").addEventListener("click", () => {
    $("messages").replaceChildren();
    messageCount = 0;
    $("message-count").textContent = "0";
    $("messages-empty").hidden = false;
  });
  $("format").addEventListener("change", () => {
    for (const li of $("messages").children) renderPayload(li.querySelector(".payload"), li._payload, li.querySelector(".badge.hex"));
  });

  function onMessage(topic, payload, packet) {
    const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    const li = el("li");
    li._payload = bytes;
    const hexBadge = el("span", "badge hex", "HEX");
    const meta = el(
      "div",
      "meta",
      el("span", "topic", topic),
      el("span", "badge qos", `QoS ${packet.qos}`),
      packet.retain ? el("span", "badge retain", "RETAIN") : "",
      hexBadge,
      el("span", "time", new Date().toLocaleTimeString()),
    );
    const body = el("pre", "payload");
    renderPayload(body, bytes, hexBadge);
    li.append(meta, body);
    const list = $("messages");
    list.prepend(li);
    while (list.children.length > MAX_MESSAGES) list.lastElementChild.remove();
    $("message-count").textContent = String(++messageCount);
    $("messages-empty").hidden = true;
  }

  /** Text when the bytes are readable UTF-8 (or the user asks for text), hex otherwise. */
  function renderPayload(target, bytes, hexBadge) {
    const mode = $("format").value;
    const text = mode === "hex" ? null : asText(bytes, mode === "text");
    target.textContent = text ?? hex(bytes);
    hexBadge.hidden = text !== null;
  }

  function asText(bytes, force) {
    try {
      const text = decoder.decode(bytes);
      // control characters other than tab and newlines mean "binary" in auto mode
      if (!force && /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text)) return null;
      return text;
    } catch {
      return force ? new TextDecoder().decode(bytes) : null;
    }
  }

  function hex(bytes, max = 4096) {
    const shown = Array.from(bytes.subarray(0, max), (b) => b.toString(16).padStart(2, "0")).join(" ");
    return bytes.length > max ? `${shown} … (${bytes.length} bytes)` : shown;
  }

  // ——— overview (HTTP API) ———

  function startOverview() {
    previousStats = null;
    refreshOverview();
    overviewTimer = setInterval(refreshOverview, OVERVIEW_EVERY_MS);
  }

  function stopOverview() {
    clearInterval(overviewTimer);
    overviewTimer = null;
  }

  async function api(path, init = {}) {
    const token = $("token").value;
    const response = await fetch(`/api/${encodeURIComponent(namespace)}${path}`, {
      ...init,
      headers: { Authorization: `Bearer ${token}` },
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }

  async function refreshOverview() {
    if (!$("token").value) {
      note("overview-note", "Enter the API token (the Worker's API_TOKEN secret) and reconnect to see who is online.");
      return;
    }
    try {
      const [stats, { clients }, { messages, truncated }] = await Promise.all([
        api("/stats"),
        api("/clients"),
        api("/retained?limit=50"),
      ]);
      if (!overviewTimer) return; // disconnected meanwhile
      renderStats(stats);
      renderClients(clients);
      renderRetained(messages, truncated);
      note("overview-note", `updated ${new Date(stats.time).toLocaleTimeString()} · up ${duration(stats.uptime)}`);
    } catch (err) {
      note("overview-note", `overview unavailable: ${err.message}`, true);
    }
  }

  function renderStats(s) {
    $("stat-online").textContent = String(s.clients.connected);
    $("stat-sessions").textContent = String(s.clients.total);
    $("stat-subscriptions").textContent = String(s.subscriptions);
    $("stat-retained").textContent = String(s.retained);
    // Rates from two samples; a restarted object (counters went down) starts over.
    const p = previousStats;
    if (p && s.time > p.time && s.messages.received >= p.messages.received && s.messages.sent >= p.messages.sent) {
      const seconds = (s.time - p.time) / 1000;
      $("stat-in").textContent = rate((s.messages.received - p.messages.received) / seconds);
      $("stat-out").textContent = rate((s.messages.sent - p.messages.sent) / seconds);
    }
    previousStats = s;
  }

  function renderClients(clients) {
    const list = $("clients");
    list.replaceChildren();
    if (clients.length === 0) list.append(el("li", "presence", "no sessions"));
    const me = client?.options?.clientId;
    for (const c of clients) {
      const online = c.status === "online";
      const version = c.protocolVersion === 5 ? "MQTT 5" : "MQTT 3.1.1";
      const li = el(
        "li",
        "",
        el("span", online ? "dot online" : "dot"),
        el("span", "name", c.clientId === me ? `${c.clientId} (this console)` : c.clientId),
        el("span", "presence", `${c.status} · ${version}${c.queued ? ` · ${c.queued} queued` : ""}${c.dropped ? ` · ${c.dropped} dropped` : ""}`),
      );
      if (online && c.clientId !== me) {
        const kick = el("button", "secondary small", "disconnect");
        kick.type = "button";
        kick.addEventListener("click", () => api(`/clients/${encodeURIComponent(c.clientId)}`, { method: "DELETE" }).then(refreshOverview, showError));
        li.append(kick);
      }
      if (c.subscriptions.length) li.append(el("span", "detail", c.subscriptions.map((s) => `${s.filter} (QoS ${s.qos})`).join("  ")));
      list.append(li);
    }
  }

  function renderRetained(messages, truncated) {
    const list = $("retained");
    list.replaceChildren();
    if (messages.length === 0) list.append(el("li", "presence", "no retained messages"));
    for (const m of messages) {
      const preview = m.payload !== undefined ? m.payload : `base64 ${m.payloadBase64}`;
      const remove = el("button", "secondary small", "delete");
      remove.type = "button";
      remove.addEventListener("click", () =>
        api(`/retained?topic=${encodeURIComponent(m.topic)}`, { method: "DELETE" }).then(refreshOverview, showError),
      );
      list.append(el("li", "", el("span", "name", m.topic), remove, el("span", "detail", preview.length > 120 ? `${preview.slice(0, 120)}…` : preview)));
    }
    if (truncated) list.append(el("li", "presence", "… more (first 50 shown)"));
  }

  function showError(err) {
    note("overview-note", err.message, true);
  }

  function rate(perSecond) {
    return perSecond >= 10 ? String(Math.round(perSecond)) : perSecond.toFixed(1);
  }

  function duration(seconds) {
    if (seconds < 120) return `${seconds} s`;
    if (seconds < 7200) return `${Math.floor(seconds / 60)} min`;
    return `${Math.floor(seconds / 3600)} h`;
  }

  /** A DOM element with a class and children (strings become text nodes). */
  function el(tag, className = "", ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    node.append(...children);
    return node;
  }
})();
