// The web console: MQTT.js over WebSocket to /mqtt/<namespace> for subscribe/publish, and the
// HTTP API (/api/<namespace>/...) for the live namespace overview. Plain script, no build step.
// Everything from the network is shown with textContent, never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const MAX_MESSAGES = 300;
  const OVERVIEW_EVERY_MS = 2000;
  const RATE_WINDOW_MS = 5 * 60 * 1000; // the chart shows the last 5 minutes
  const CHART = { width: 600, height: 120, top: 10 }; // the SVG's viewBox
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  let client = null;
  let namespace = "";
  let overviewTimer = null;
  let previousStats = null;
  let messageCount = 0;
  const subscriptions = new Map(); // filter → qos
  /** the chart's points: { time, in, out } in messages per second, oldest first */
  let rates = [];
  /** the client whose detail is open (null: none) */
  let detailFor = null;
  /** the latest bridges request: an older answer arriving late is not shown */
  let bridgesRequest = 0;

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
    detailFor = null; // a client of the previous namespace
    $("client-detail").hidden = true;
    $("bridges-card").hidden = true; // the previous namespace's bridges
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
    rates = [];
    drawRates(Date.now());
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
      if (detailFor !== null) await refreshDetail();
      refreshBridges(); // on its own: a failure there leaves the rest of the overview alone
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
      const point = { time: s.time, in: (s.messages.received - p.messages.received) / seconds, out: (s.messages.sent - p.messages.sent) / seconds };
      $("stat-in").textContent = rate(point.in);
      $("stat-out").textContent = rate(point.out);
      rates.push(point);
    }
    previousStats = s;
    renderShards(s.shards || []);
    rates = rates.filter((r) => r.time > s.time - RATE_WINDOW_MS);
    drawRates(s.time);
  }

  /**
   * The rates of the last 5 minutes as two polylines, scaled to the highest rate shown. Until
   * 5 minutes of samples exist the time axis spans those there are (at least 20 s).
   */
  function drawRates(now) {
    const max = niceCeiling(Math.max(1, ...rates.map((r) => Math.max(r.in, r.out))));
    const span = Math.min(RATE_WINDOW_MS, Math.max(20_000, rates.length ? now - rates[0].time + OVERVIEW_EVERY_MS : 0));
    const x = (time) => (CHART.width * (1 - (now - time) / span)).toFixed(1);
    const y = (v) => (CHART.height - (v / max) * (CHART.height - CHART.top)).toFixed(1);
    $("rate-in").setAttribute("points", rates.map((r) => `${x(r.time)},${y(r.in)}`).join(" "));
    $("rate-out").setAttribute("points", rates.map((r) => `${x(r.time)},${y(r.out)}`).join(" "));
    $("rate-chart").dataset.points = String(rates.length);
    $("rate-max").textContent = rates.length ? `top ${rate(max)}/s` : "";
    $("rate-span").textContent = span >= RATE_WINDOW_MS ? "−5 min" : `−${Math.round(span / 1000)} s`;
  }

  /** 1, 2 or 5 × a power of ten, at least `v`: a scale that reads well. */
  function niceCeiling(v) {
    const power = 10 ** Math.floor(Math.log10(v));
    for (const step of [1, 2, 5, 10]) if (step * power >= v) return step * power;
    return 10 * power;
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
        nameButton(c.clientId, c.clientId === me ? `${c.clientId} (this console)` : c.clientId),
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

  /** A client's name: opens its detail. */
  function nameButton(clientId, label) {
    const button = el("button", "link name", label);
    button.type = "button";
    button.title = `show the detail of ${clientId}`;
    button.dataset.client = clientId;
    button.addEventListener("click", () => {
      detailFor = clientId;
      refreshDetail().catch(showError);
    });
    return button;
  }

  // ——— one client's detail (GET /api/<namespace>/clients/<id>) ———

  $("cd-close").addEventListener("click", () => {
    detailFor = null;
    $("client-detail").hidden = true;
  });

  async function refreshDetail() {
    const clientId = detailFor;
    let d;
    try {
      d = await api(`/clients/${encodeURIComponent(clientId)}`);
    } catch (err) {
      if (detailFor !== clientId) return;
      renderDetail(clientId, null, err.message);
      return;
    }
    if (detailFor === clientId) renderDetail(clientId, d, "");
  }

  function renderDetail(clientId, d, problem) {
    $("client-detail").hidden = false;
    $("client-detail").dataset.client = clientId;
    $("cd-title").textContent = clientId;
    const facts = $("cd-facts");
    facts.replaceChildren();
    const subs = $("cd-subscriptions");
    const history = $("cd-history");
    subs.replaceChildren();
    history.replaceChildren();
    if (!d) {
      facts.append(el("dt", "", "session"), el("dd", "", problem || "none"));
      return;
    }
    const fact = (name, value) => facts.append(el("dt", "", name), el("dd", "", value));
    fact("status", d.connected ? "online" : "offline");
    fact("protocol", d.protocolVersion === 5 ? "MQTT 5" : d.protocolVersion === 3 ? "MQTT 3.1" : "MQTT 3.1.1");
    if (d.keepalive !== undefined) fact("keep-alive", d.keepalive ? `${d.keepalive} s` : "off");
    fact("session expiry", d.sessionExpiry === 0 ? "with the connection" : d.sessionExpiry >= 0xffffffff ? "never" : `${duration(d.sessionExpiry)}`);
    if (d.connectedAt !== undefined) fact("connected since", new Date(d.connectedAt).toLocaleTimeString());
    fact("last seen", d.lastSeen === null ? "unknown" : `${new Date(d.lastSeen).toLocaleTimeString()} (${duration(Math.max(0, Math.round((Date.now() - d.lastSeen) / 1000)))} ago)`);
    fact("queued", `${d.queued.messages} messages · ${d.queued.bytes} bytes`);
    fact("in flight", `${d.inflight.messages} messages · ${d.inflight.bytes} bytes`);
    if (d.dropped) fact("dropped", `${d.dropped} (queue full)`);
    fact("will", d.hasWill ? "yes" : "none");
    if (d.subscriptions.length === 0) subs.append(el("li", "presence", "no subscriptions"));
    for (const sub of d.subscriptions) {
      const o = sub.options;
      const flags = [o.noLocal ? "no local" : "", o.retainAsPublished ? "retain as published" : "", o.retainHandling ? `retain handling ${o.retainHandling}` : "", o.subscriptionId ? `id ${o.subscriptionId}` : ""].filter(Boolean);
      subs.append(el("li", "", el("span", "name", sub.filter), el("span", "presence", `QoS ${sub.qos}${flags.length ? ` · ${flags.join(" · ")}` : ""}`)));
    }
    if (d.history.length === 0) history.append(el("li", "presence", "no lifecycle events recorded"));
    for (const h of d.history.slice(-50).reverse()) history.append(historyItem(h));
  }

  /** One lifecycle event, whatever fields it has: its time and kind when known, else its JSON. */
  function historyItem(h) {
    const time = h && (h.at ?? h.time ?? h.timestamp);
    const kind = h && (h.event ?? h.type ?? h.kind);
    const when = typeof time === "number" ? new Date(time).toLocaleTimeString() : typeof time === "string" ? time : "";
    const rest = h && typeof h === "object" ? Object.fromEntries(Object.entries(h).filter(([k]) => !["at", "time", "timestamp", "event", "type", "kind"].includes(k))) : h;
    const detail = rest && typeof rest === "object" && Object.keys(rest).length === 0 ? "" : JSON.stringify(rest);
    return el("li", "", el("span", "time", when), el("span", "name", kind !== undefined ? String(kind) : ""), el("span", "detail", detail));
  }

  // ——— shards (stats.shards): shown only when the namespace spans several objects ———

  function renderShards(shards) {
    $("shards-card").hidden = shards.length === 0;
    $("shards").replaceChildren(
      ...shards.map((sh) => {
        const li = el("li");
        li.dataset.shard = String(sh.shard);
        const e = sh.events || {};
        li.append(
          el("span", sh.connected > 0 ? "dot online" : "dot"),
          el("span", "name", `shard ${sh.shard}`),
          el("span", "presence", `${sh.connected} online · ${sh.sessions} sessions · ${sh.subscriptions} subscriptions`),
          el("span", "detail counts", `in ${sh.messages.received} · out ${sh.messages.sent} · from other shards ${sh.forwardedIn} · to them ${sh.forwardedCopies}`),
          el("span", "detail events", `events: ${e.websocketMessages ?? 0} frames · ${e.rpc ?? 0} RPC · ${e.alarms ?? 0} alarms`),
        );
        return li;
      }),
    );
  }

  // ——— bridges (GET /api/<namespace>/bridges): shown only when the namespace has some ———

  async function refreshBridges() {
    const ns = namespace;
    const mine = ++bridgesRequest;
    const current = () => overviewTimer && ns === namespace && mine === bridgesRequest; // not disconnected, switched or overtaken meanwhile
    let status;
    try {
      status = await api("/bridges");
    } catch (err) {
      if (!current() || $("bridges-card").hidden) return;
      $("bridge-errors").replaceChildren(el("li", "error", `bridge status unavailable: ${err.message}`));
      return;
    }
    if (!current()) return;
    renderBridges(status.bridges || [], status.errors || []);
  }

  function renderBridges(bridges, errors) {
    // the configuration's errors are shown with the bridges, or alone (a bad entry leaves its namespace without bridges)
    $("bridges-card").hidden = bridges.length === 0 && errors.length === 0;
    $("bridge-errors").replaceChildren(...errors.map((e) => el("li", "error", e)));
    const list = $("bridges");
    list.replaceChildren();
    for (const b of bridges) {
      const li = el("li");
      li.dataset.bridge = b.name;
      if (!b.connected) {
        // the bridge object could not report
        li.dataset.state = "unknown";
        li.append(el("span", "dot"), el("span", "name", b.name), el("span", "presence", "no status"), el("span", "detail error", b.error || "unknown"));
        list.append(li);
        continue;
      }
      const up = b.connected.remote && b.connected.local;
      li.dataset.state = up ? "linked" : b.connected.remote || b.connected.local ? "partial" : "down";
      const side = (name, on) => `${name} ${on ? "up" : "down"}`;
      li.append(
        el("span", up ? "dot online" : "dot"),
        el("span", "name", b.name),
        el("span", "presence state", `${side("remote", b.connected.remote)} · ${side("local", b.connected.local)}`),
        el("span", "detail remote", `→ ${b.remote}${up && b.since ? ` · linked since ${new Date(b.since).toLocaleTimeString()}` : ""}${!up && b.retryAt ? ` · next attempt ${new Date(b.retryAt).toLocaleTimeString()}` : ""}`),
        el("span", "detail counts", `queued ${b.queued} · sent ${b.sent} · received ${b.received} · dropped ${b.dropped} · reconnects ${b.reconnects}`),
      );
      if (b.lastError) {
        const when = b.lastErrorAt ? new Date(b.lastErrorAt).toLocaleTimeString() : "";
        li.append(el("span", up ? "detail last-error" : "detail last-error error", `last error${when ? ` ${when}` : ""}: ${b.lastError}`));
      }
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
