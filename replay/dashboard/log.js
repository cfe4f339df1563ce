// The live log (frames both ways, HTTP requests, connections and their ends) and the
// stream pane (a chunked endpoint's text, assembled, one block per stream).
"use strict";

const MAX_LOG = 1000;
const MAX_STREAMS = 50;

// The log's row: millisecond time, direction, where and who, size, and the frame on one
// line; a click on it shows it whole, its JSON pretty-printed (as DevTools' Messages pane).
function logEntry(fields, text, extra = []) {
  const entry = element("li", {
    "data-endpoint": fields.endpoint || "", "data-type": fields.type || "",
    "data-direction": fields.direction, "data-client": fields.client || "",
    "data-source": fields.source, "data-event": fields.event, "data-run": fields.run,
  },
  element("time", { class: "when", datetime: new Date(fields.time * 1000).toISOString(), text: clockTime(fields.time) }),
  element("span", { class: "dir", text: fields.arrow }),
  element("span", { class: "where", text: fields.where, title: fields.where }),
  element("span", { class: "size", text: fields.size === undefined ? "" : bytes(fields.size) }));
  const body = fields.expandable ? element("button", {
    type: "button", class: "frame", "aria-expanded": "false",
  }, ...extra, text) : element("span", { class: "frame" }, ...extra, text);
  if (fields.expandable) body.addEventListener("click", () => toggleWhole(entry, body, fields.whole));
  entry.append(body);
  return entry;
}

function toggleWhole(entry, button, whole) {
  const shown = entry.querySelector("pre");
  if (shown) {
    shown.remove();
    button.setAttribute("aria-expanded", "false");
    entry.dataset.open = "false";
    return;
  }
  entry.append(element("pre", { text: typeof whole === "function" ? whole() : whole }));
  button.setAttribute("aria-expanded", "true");
  entry.dataset.open = "true";
}

// The message type of a frame, read with the envelope its endpoint declares.
function messageType(parsed, endpoint) {
  if (!parsed || typeof parsed !== "object") return "";
  const declared = protocol && protocol.endpoints[endpoint];
  const field = declared && (declared.messages ? declared.messages.type : declared.chunks && declared.chunks.type);
  return String((field && parsed[field]) || parsed.message_type || parsed.type || parsed.event || "");
}

// In a cluster, a run's frame is one line however many nodes sent it: the first copy
// heard makes it, the others add their clients (and the per-node figures, on hover and
// when opened).
function logFrame(event, copy = null) {
  if (copy && !copy.first) {
    if (copy.merged.entry) showCopies(copy.merged.entry, event, copy.merged);
    return;
  }
  const received = event.event === "frame.received";
  let parsed = null;
  try { parsed = JSON.parse(event.frame); } catch { /* raw or binary: shown as is */ }
  const type = messageType(parsed, event.endpoint);
  // Under serve --upstream: the real backend's frames, and the scenarios' injected between them.
  const source = received ? "client" : (event.upstream && "upstream") || (event.injected && "injected") || "replay";
  const who = received ? `from ${event.client}` : `to ${event.to || "all"} (${event.clients})`;
  const text = event.binary ? `[binary ${event.frame}]` : event.frame;
  const whole = event.binary ? text : pretty(event.frame);
  const entry = logEntry({
    time: event.time, endpoint: event.endpoint, type, direction: received ? "received" : "sent",
    client: received ? event.client : (event.to || ""), source, event: received ? "received" : "sent",
    run: event.run_id || undefined, arrow: received ? "← received" : "→ sent",
    where: `${event.endpoint} ${who}${atNode(copy ? null : event)}`,
    size: frameSize(event.frame, event.binary),
    expandable: true, whole: copy ? () => `${perNodeText(copy.merged)}\n\n${whole}` : whole,
  }, text, source === "upstream" || source === "injected"
    ? [element("span", { class: `badge ${source}`, text: source })] : []);
  if (copy) {
    copy.merged.entry = entry;
    showCopies(entry, event, copy.merged);
  }
  appendLog(entry);
  // Chunks as the endpoint declares them (Schwarm's /ws/stream until the protocol is known).
  const declared = protocol && protocol.endpoints[event.endpoint];
  const chunks = protocol ? declared && declared.chunks : event.endpoint === "/ws/stream" && SCHWARM_CHUNKS;
  if (!received && chunks && parsed && typeof parsed === "object") {
    assemble(parsed, chunks, event.endpoint, event.run_id || (event.upstream ? "upstream" : ""));
  }
}

const SCHWARM_CHUNKS = {
  type: "type", content: "content", tool: "tool", close: [{ type: "close", content: null }],
};

// In a cluster, the node an event happened on, as " @ id" after where it happened.
function atNode(event) {
  return event && thisNode && event.node ? ` @ ${event.node}` : "";
}

// A merged frame's line: its clients summed over the nodes, and each node's on hover.
function showCopies(entry, event, merged) {
  const where = entry.querySelector(".where");
  where.textContent = `${event.endpoint} to ${event.to || "all"} (${merged.clients})`;
  where.title = perNodeText(merged);
  entry.dataset.nodes = String(merged.nodes.size);
  entry.dataset.reached = String(merged.clients);
}

// Events of another node the cluster's feed lost (its buffer was full, or Redis refused).
function logDropped(event) {
  appendLog(logEntry({
    time: event.time, direction: "error", event: "dropped", arrow: "✕ lost",
    where: `node ${event.node}`,
  }, `${plural(event.dropped, "event")} of node ${event.node} did not reach this page (the cluster's feed fell behind)`,
  [element("span", { class: "badge failed", text: "feed dropped" })]));
}

// A request to a declared route: a client event too, logged beside the frames.
function logRequest(event) {
  const query = new URLSearchParams(event.query || {}).toString();
  appendLog(logEntry({
    time: event.time, endpoint: "http", type: event.message_type, direction: "received",
    client: event.client, event: "http", arrow: "← request", where: `http from ${event.client}${atNode(event)}`,
  }, `${event.method} ${event.path}${query ? `?${query}` : ""} → ${event.status}`));
}

// A client whose upstream (serve --upstream) could not be reached: closed with 1011.
function logUpstreamFailure(event) {
  appendLog(logEntry({
    time: event.time, endpoint: event.endpoint, direction: "error", client: event.client,
    source: "upstream", event: "upstream", arrow: "✕ upstream",
    where: `${event.path} ${event.client ? `from ${event.client}` : ""}`,
  }, `${event.upstream}: ${event.reason} (closed with 1011)`,
  [element("span", { class: "badge failed", text: "upstream unreachable" })]));
}

// How a connection ended, in words: "closed 1000 (bye)", "dropped: no close frame".
function howItEnded(event) {
  const reason = event.reason ? ` (${event.reason})` : "";
  if (event.dropped) return `dropped by the server${reason}: no close frame`;
  if (event.code === null) return `connection lost: no close frame${reason}`;
  if (event.code === undefined) return `disconnected${reason}`;
  return `closed ${event.code}${reason}`;
}

function logConnection(event) {
  const connected = event.event === "client.connected";
  const dropped = !connected && (event.dropped || event.code === null);
  // In a cluster, the counts are of the client's node.
  const there = thisNode && event.node ? ` of node ${event.node}` : "";
  appendLog(logEntry({
    time: event.time, endpoint: event.endpoint, direction: "connection", client: event.client,
    event: connected ? "connect" : (dropped ? "drop" : "disconnect"),
    arrow: connected ? "+ connect" : (dropped ? "✕ drop" : "− close"),
    where: `${event.endpoint} ${event.client}${atNode(event)}`,
  }, connected ? `connected (${plural(event.clients, "client")} on ${event.endpoint}${there})`
    : `${howItEnded(event)} · ${plural(event.clients, "client")} left on ${event.endpoint}${there}`));
  if (!connected && event.clients === 0 && ownEvent(event)) cutStream(event.endpoint, howItEnded(event));
}

// A run's disconnect or drop step (run.hangup).
function logHangup(event) {
  const endpoints = event.endpoints || [];
  const what = event.drop ? "drop" : `disconnect ${event.code ?? ""}`.trim();
  appendLog(logEntry({
    time: event.time, endpoint: endpoints.join(" "), direction: "connection", client: event.to || "",
    event: "hangup", run: event.run_id, arrow: event.drop ? "✕ drop" : "− close",
    where: `${endpoints.join(", ")} to ${event.to || "all"}`,
  }, `run ${event.run_id} step ${event.step}: ${what}${event.reason ? ` (${event.reason})` : ""} · ` +
    `${plural(event.clients ?? 0, "client")}`));
  for (const endpoint of endpoints) cutStream(endpoint, event.drop ? "dropped" : `closed ${event.code ?? ""}`.trim());
}

function appendLog(entry) {
  applyFilters(entry);
  const log = $("#log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(entry);
  while (log.children.length > MAX_LOG) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

// --- the stream pane: one block per stream, ended by its close signal, by a disconnect
// or drop of its endpoint, or by the next run's chunks ---------------------------------------

function openStream(endpoint) {
  return document.querySelector(`#streams li[data-open="true"][data-endpoint="${CSS.escape(endpoint)}"]`);
}

function cutStream(endpoint, why) {
  const open = openStream(endpoint);
  if (!open) return;
  open.dataset.open = "false";
  open.dataset.cut = "true";
  open.append(element("span", { class: "cut", text: `cut: ${why}` }));
}

function assemble(chunk, envelope, endpoint, run) {
  const streams = $("#streams");
  let open = openStream(endpoint);
  const text = JSON.stringify(chunk);
  if (envelope.close.some((frame) => JSON.stringify(frame) === text)) {
    if (open && open.dataset.run === run) open.dataset.open = "false";
    else if (open) cutStream(endpoint, "another run's close signal");
    return;
  }
  const content = chunk[envelope.content];
  if (typeof content !== "string") return;
  if (open && open.dataset.run !== run) {
    cutStream(endpoint, run ? `run ${run} began another stream` : "another stream began");
    open = null;
  }
  if (!open) {
    open = element("li", { "data-open": "true", "data-endpoint": endpoint, "data-run": run });
    streams.append(open);
    while (streams.children.length > MAX_STREAMS) streams.firstElementChild.remove();
  }
  const kind = chunk[envelope.type] === envelope.tool ? "tool" : "text";
  // A tool's output and the text after it on lines of their own.
  const last = open.querySelector("span:last-of-type:not(.cut)");
  const apart = last && last.className !== kind ? "\n" : "";
  open.append(element("span", { class: kind, text: apart + content }));
  streams.scrollTop = streams.scrollHeight;
}

// A run that ends leaves no stream open behind it.
function endRunStreams(run, why) {
  for (const open of document.querySelectorAll(`#streams li[data-open="true"][data-run="${CSS.escape(run)}"]`)) {
    cutStream(open.dataset.endpoint, why);
  }
}

// --- filters (as DevTools': a text or /regex/, and the direction) ----------------------------

function textFilter() {
  const typed = $("#filter-text").value.trim();
  const regex = /^\/(.+)\/([a-z]*)$/.exec(typed);
  if (regex) {
    try { return new RegExp(regex[1], regex[2].includes("i") ? regex[2] : `${regex[2]}i`); } catch { /* as text */ }
  }
  const lowered = typed.toLowerCase();
  return lowered ? { test: (text) => text.toLowerCase().includes(lowered) } : null;
}

function applyFilters(entry, text = textFilter()) {
  const endpoint = $("#filter-endpoint").value;
  const direction = $("#filter-direction").value;
  const client = $("#filter-client").value.trim();
  const type = $("#filter-type").value.trim().toUpperCase();
  entry.hidden = Boolean(
    (endpoint && !entry.dataset.endpoint.split(" ").includes(endpoint))
    || (direction && entry.dataset.direction !== direction)
    || (client && !entry.dataset.client.includes(client))
    || (type && !entry.dataset.type.toUpperCase().includes(type))
    || (text && !text.test(entry.querySelector(".frame").textContent)));
}

function refilter() {
  const text = textFilter();
  for (const entry of $("#log").children) applyFilters(entry, text);
}
