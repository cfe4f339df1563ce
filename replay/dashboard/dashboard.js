// The replay dashboard: state from the REST API, live updates from the event feed
// (GET /events, Server-Sent Events). Plain JavaScript, no build step, nothing from a CDN.
"use strict";

const MAX_LOG = 500;
const $ = (selector) => document.querySelector(selector);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

// A server started with --token needs it on every call: from ?token= in the page's
// address (then kept for this tab only, and taken out of the address bar), or typed in.
function readToken() {
  const url = new URL(location.href);
  const given = url.searchParams.get("token");
  if (given) {
    sessionStorage.setItem("replay-token", given);
    url.searchParams.delete("token");
    history.replaceState(null, "", url);
  }
  return sessionStorage.getItem("replay-token") || "";
}

let token = readToken();

function askForToken() {
  const form = $("#token-form");
  form.hidden = false;
  $("#status").dataset.state = "reconnecting";
  $("#status").textContent = "This server needs its token";
  $("#token").focus();
}

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (token) options.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 401) askForToken();
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const problems = (data.problems || []).map((p) => p.text).join("\n");
    throw new Error([data.detail || `${response.status} ${response.statusText}`, problems]
      .filter(Boolean).join("\n"));
  }
  return data;
}

// Coalesce bursts of events into one refresh.
function debounced(action, wait = 150) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(action, wait);
  };
}

function seconds(value) {
  if (value === null || value === undefined) return "until cancelled";
  return value < 1 && value > 0 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(2)} s`;
}

// --- scenarios ---------------------------------------------------------------------------

async function loadScenarios() {
  const { scenarios } = await api("GET", "/scenarios");
  const list = $("#scenarios");
  list.replaceChildren(...scenarios.map(renderScenario));
}

function renderScenario(scenario) {
  const item = element("li", {
    class: "scenario", "data-name": scenario.name, "data-valid": String(scenario.valid),
  });
  item.append(element("h3", { text: scenario.name }));
  if (scenario.description) item.append(element("p", { text: scenario.description }));
  if (scenario.valid) {
    const parts = [];
    if (scenario.frames !== null && scenario.frames !== undefined) parts.push(`${scenario.frames} frames`);
    parts.push(seconds(scenario.duration_s));
    if (scenario.waits) parts.push(`waits for a client ${scenario.waits}×`);
    if (scenario.reacts_to) parts.push(`reacts to ${scenario.reacts_to.message}`);
    if (scenario.on_connect) parts.push("plays on connect");
    item.append(element("p", { class: "meta", text: parts.join(" · ") }));
  } else {
    const problems = element("ul", { class: "problems", "aria-label": `Problems in ${scenario.name}` });
    for (const problem of scenario.problems) problems.append(element("li", { text: problem.text }));
    item.append(problems);
  }
  const vars = Object.entries(scenario.vars || {});
  const fields = element("fieldset", {}, element("legend", { class: "visually-hidden", text: `Variables of ${scenario.name}` }));
  for (const [name, value] of vars) {
    const shown = typeof value === "string" ? value : JSON.stringify(value);
    fields.append(element("label", {}, `${name} `,
      element("input", { "data-var": name, value: shown, size: Math.max(6, Math.min(24, shown.length)) })));
  }
  if (vars.length) item.append(fields);
  const play = element("button", {
    type: "button", "data-play": scenario.name, text: "Play",
    "aria-label": `Play ${scenario.name}`, disabled: !scenario.valid,
  });
  play.addEventListener("click", () => playScenario(scenario.name, item));
  item.append(play);
  return item;
}

function readVars(item) {
  const vars = {};
  for (const input of item.querySelectorAll("input[data-var]")) {
    // As on the command line: JSON if it parses, else text.
    try { vars[input.dataset.var] = JSON.parse(input.value); } catch { vars[input.dataset.var] = input.value; }
  }
  return vars;
}

async function playScenario(name, item) {
  const error = $("#play-error");
  error.hidden = true;
  const speed = $("#speed").value || "1";
  try {
    await api("POST", `/trigger/${encodeURIComponent(name)}?wait=false&speed=${encodeURIComponent(speed)}`,
      { vars: readVars(item) });
    refreshRuns();
  } catch (problem) {
    error.textContent = `Could not play ${name}: ${problem.message}`;
    error.hidden = false;
  }
}

// --- clients -----------------------------------------------------------------------------

async function loadClients() {
  const { clients } = await api("GET", "/clients");
  const counts = {};
  for (const cell of document.querySelectorAll("[data-count]")) counts[cell.dataset.count] = 0;
  const rows = clients.map((client) => {
    counts[client.endpoint] = (counts[client.endpoint] || 0) + 1;
    return element("tr", { "data-client": client.client_id },
      element("td", { text: client.client_id }),
      element("td", { text: client.endpoint }),
      element("td", { text: new Date(client.connected_at * 1000).toLocaleTimeString() }),
      element("td", { text: String(client.sent) }),
      element("td", { text: String(client.received) }));
  });
  $("#clients").replaceChildren(...rows);
  for (const cell of document.querySelectorAll("[data-count]")) {
    cell.textContent = String(counts[cell.dataset.count] || 0);
  }
  for (const cell of document.querySelectorAll("[data-clients]")) {
    cell.textContent = String(counts[cell.dataset.clients] || 0);
  }
}

// --- runs --------------------------------------------------------------------------------

async function loadRuns() {
  const { runs } = await api("GET", "/runs");
  $("#runs").replaceChildren(...runs.slice(0, 30).map((run) => {
    const actions = element("td");
    if (run.state === "running") {
      const cancel = element("button", {
        type: "button", text: "Cancel", "data-cancel": run.run_id, "aria-label": `Cancel run ${run.run_id}`,
      });
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        try { await api("DELETE", `/runs/${run.run_id}`); } catch { /* it ended meanwhile */ }
        refreshRuns();
      });
      actions.append(cancel);
    }
    const state = run.waiting ? `${run.state} (waiting for ${run.waiting})` : run.state;
    return element("tr", { "data-run": run.run_id, "data-state": run.state, title: run.error || "" },
      element("td", {}, element("code", { text: run.run_id })),
      element("td", { text: run.scenario }),
      element("td", { class: "state", text: run.error ? `${state}: ${run.error}` : state }),
      element("td", { text: run.frames === null ? String(run.sent) : `${run.sent}/${run.frames}` }),
      element("td", { text: run.started_by }),
      actions);
  }));
}

// --- the protocol: what the folder speaks ------------------------------------------------

// GET /protocol as last loaded (null before): the frame log reads its envelopes.
let protocol = null;

async function loadProtocol() {
  protocol = await api("GET", "/protocol");
  renderProtocol(protocol);
  const paths = Object.keys(protocol.endpoints);
  renderClientCounts(paths);
  renderEndpointChoices(paths);
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

function renderProtocol(declared) {
  const description = $("#protocol-description");
  description.textContent = declared.description;
  description.hidden = !declared.description;
  const counts = [
    plural(Object.keys(declared.endpoints).length, "endpoint"),
    plural(Object.keys(declared.message_types).length, "message type"),
    plural(declared.routes.length, "HTTP route"),
  ].join(" · ");
  $("#protocol-source").replaceChildren(...(declared.file
    ? ["Declared in ", element("code", { text: declared.file }),
      declared.extends === "schwarm" ? " on top of Schwarm's" : " (extends: none)"]
    : ["No ", element("code", { text: "_protocol.yaml" }),
      " in the scenarios folder: Schwarm's, the default"]), ` · ${counts}`);
  const problems = $("#protocol-problems");
  problems.querySelector("ul").replaceChildren(
    ...declared.problems.map((problem) => element("li", { text: problem.text })));
  problems.hidden = declared.problems.length === 0;
  $("#endpoints").replaceChildren(
    ...Object.entries(declared.endpoints).map(([path, endpoint]) => endpointRow(path, endpoint)));
  $("#no-endpoints").hidden = Object.keys(declared.endpoints).length > 0;
  // A schema being read stays open when the protocol is loaded again.
  const open = new Set([...document.querySelectorAll("#message-types tr.schema:not([hidden])")]
    .map((row) => row.dataset.schemaOf));
  const types = Object.entries(declared.message_types);
  const fallback = Object.keys(declared.endpoints).find((path) => declared.endpoints[path].messages);
  $("#message-types").replaceChildren(
    ...types.flatMap(([name, kind]) => messageTypeRows(name, kind, fallback, open.has(name))));
  $("#no-message-types").hidden = types.length > 0;
}

function code(value) {
  return element("code", { text: typeof value === "string" ? value : JSON.stringify(value) });
}

// Items with a separator between them, as children of an element.
function joined(items, separator) {
  return items.flatMap((item, index) => (index ? [separator, item] : [item]));
}

function endpointRow(path, endpoint) {
  const where = element("th", { scope: "row" }, code(path));
  if (endpoint.aliases.length) {
    where.append(element("div", { class: "meta" }, "also ", ...joined(endpoint.aliases.map(code), ", ")));
  }
  const takes = element("td", { class: "takes" });
  const messages = endpoint.messages;
  if (messages) {
    takes.append(element("div", {}, "messages ",
      code(`{${messages.type}: type, ${messages.payload}: payload}`),
      messages.data === "json" ? " · data as JSON" : " · data as text",
      ...(Object.keys(messages.fields).length ? [" · with ", code(messages.fields)] : [])));
  }
  const chunks = endpoint.chunks;
  if (chunks) {
    takes.append(element("div", {}, "chunks ",
      code(`{${chunks.type}: kind, ${chunks.content}: text}`),
      " · kinds ", code(chunks.default), " / ", code(chunks.tool),
      ...(Object.keys(chunks.fields).length ? [" · with ", code(chunks.fields)] : []),
      ...(chunks.close.length
        ? [" · closed by ", ...joined(chunks.close.map(code), " then ")]
        : [" · no close frame"])));
  }
  return element("tr", { "data-endpoint": path },
    where,
    takes,
    element("td", { "data-clients": path, text: String(endpoint.clients) }),
    element("td", { text: endpoint.description }));
}

// A type's row, and under it the row its payload's schema is shown in (all of the
// table's width: a JSON Schema is too wide for a cell), opened by the button in the row.
function messageTypeRows(name, kind, fallback, open) {
  const endpoint = kind.endpoint || fallback;
  const cells = [
    element("th", { scope: "row" }, code(name)),
    element("td", {}, endpoint ? code(endpoint) : "–"),
    element("td", { text: kind.sent_by }),
    element("td", { text: kind.description }),
  ];
  if (!kind.schema) {
    cells.push(element("td", {}, element("span", { class: "meta", text: "none" })));
    return [element("tr", { "data-message-type": name }, ...cells)];
  }
  const id = `schema-${name}`;
  const shown = element("tr", { id, class: "schema", "data-schema-of": name, hidden: !open },
    element("td", { colspan: "5" }, element("pre", { text: JSON.stringify(kind.schema, null, 2) })));
  const toggle = element("button", {
    type: "button", class: "link", text: "JSON Schema", "aria-controls": id,
    "aria-expanded": String(open), "aria-label": `JSON Schema of ${name}`,
  });
  toggle.addEventListener("click", () => {
    shown.hidden = !shown.hidden;
    toggle.setAttribute("aria-expanded", String(!shown.hidden));
  });
  cells.push(element("td", {}, toggle));
  return [element("tr", { "data-message-type": name }, ...cells), shown];
}

// The Clients panel's counts, one per endpoint served.
function renderClientCounts(paths) {
  const known = {};
  for (const cell of document.querySelectorAll("[data-count]")) known[cell.dataset.count] = cell.textContent;
  $("#client-counts").replaceChildren(...joined(paths.map((path) => element("span", {},
    code(path), ": ", element("strong", {
      "data-count": path, text: known[path] || String(protocol.endpoints[path].clients),
    }))), " · "));
}

// The frame log's endpoint filter: every endpoint served, and HTTP requests.
function renderEndpointChoices(paths) {
  const select = $("#filter-endpoint");
  const chosen = select.value;
  select.replaceChildren(element("option", { value: "", text: "all" }),
    ...[...paths, "http"].map((path) => element("option", { text: path })));
  select.value = [...select.options].some((option) => option.value === chosen) ? chosen : "";
  refilter();
}

// --- HTTP routes and the shared state ----------------------------------------------------

async function loadRoutes() {
  const { routes } = await api("GET", "/routes");
  $("#routes").replaceChildren(...routes.map((route) => {
    const about = [route.description, route.latency ? `(answers after ${seconds(route.latency)})` : ""];
    return element("tr", { "data-route": route.key },
      element("td", {}, element("code", { text: route.method })),
      element("td", {}, element("code", { text: route.path })),
      element("td", { text: String(route.status) }),
      element("td", { text: about.filter(Boolean).join(" ") }));
  }));
  $("#no-routes").hidden = routes.length > 0;
}

async function loadState() {
  const state = await api("GET", "/state");
  // A value being typed is kept: the state changes under it only once it is set.
  const editing = document.activeElement && document.activeElement.dataset.key;
  const typed = editing ? document.activeElement.value : null;
  $("#state").replaceChildren(...Object.entries(state).map(([key, value]) => stateRow(key, value)));
  const input = editing ? document.querySelector(`#state input[data-key="${CSS.escape(editing)}"]`) : null;
  if (input) { input.value = typed; input.focus(); }
}

function stateRow(key, value) {
  const shown = JSON.stringify(value);
  const input = element("input", {
    "data-key": key, value: shown, "aria-label": `Value of ${key}`, size: Math.max(6, Math.min(30, shown.length)),
  });
  const set = element("button", { type: "button", text: "Set", "aria-label": `Set ${key}` });
  set.addEventListener("click", () => setState(key, input.value));
  input.addEventListener("keydown", (event) => { if (event.key === "Enter") setState(key, input.value); });
  return element("tr", { "data-key": key },
    element("th", { scope: "row" }, element("code", { text: key })),
    element("td", {}, input),
    element("td", {}, set));
}

async function setState(key, text) {
  const error = $("#state-error");
  error.hidden = true;
  let value;
  // As variables: JSON if it parses, else text.
  try { value = JSON.parse(text); } catch { value = text; }
  try {
    await api("PUT", "/state", { [key]: value });
    if (document.activeElement) document.activeElement.blur();
    refreshState();
  } catch (problem) {
    error.textContent = `Could not set ${key}: ${problem.message}`;
    error.hidden = false;
  }
}

// --- the frame log and the assembled stream ----------------------------------------------

function logFrame(event) {
  const received = event.event === "frame.received";
  let type = "";
  let parsed = null;
  try { parsed = JSON.parse(event.frame); } catch { /* raw or binary: shown as is */ }
  const declared = protocol && protocol.endpoints[event.endpoint];
  if (parsed && typeof parsed === "object") {
    const field = declared && (declared.messages ? declared.messages.type : declared.chunks && declared.chunks.type);
    type = String((field && parsed[field]) || parsed.message_type || parsed.type || "");
  }
  // Under serve --upstream: the real backend's frames, and the scenarios' injected between them.
  const source = received ? "client" : (event.upstream && "upstream") || (event.injected && "injected") || "replay";
  const who = received ? `from ${event.client}` : `to ${event.to || "all"} (${event.clients})`;
  const entry = element("li", {
    "data-endpoint": event.endpoint, "data-type": type, "data-direction": received ? "received" : "sent",
    "data-client": received ? event.client : (event.to || ""), "data-source": source,
  },
  element("span", { class: "when", text: new Date(event.time * 1000).toLocaleTimeString() }),
  element("span", { class: "where", text: `${event.endpoint} ${who}` }),
  source === "upstream" || source === "injected"
    ? element("span", { class: `badge ${source}`, text: source }) : null,
  element("span", { class: "frame", text: event.binary ? `[binary ${event.frame}]` : event.frame }));
  appendLog(entry);
  // Chunks as the endpoint declares them (Schwarm's /ws/stream until the protocol is known).
  const chunks = protocol ? declared && declared.chunks : event.endpoint === "/ws/stream" && SCHWARM_CHUNKS;
  if (!received && chunks && parsed && typeof parsed === "object") assemble(parsed, chunks);
}

const SCHWARM_CHUNKS = {
  type: "type", content: "content", tool: "tool", close: [{ type: "close", content: null }],
};

// A request to a declared route: a client event too, logged beside the frames.
function logRequest(event) {
  const query = new URLSearchParams(event.query || {}).toString();
  appendLog(element("li", {
    "data-endpoint": "http", "data-type": event.message_type, "data-direction": "received",
    "data-client": event.client,
  },
  element("span", { class: "when", text: new Date(event.time * 1000).toLocaleTimeString() }),
  element("span", { class: "where", text: `http from ${event.client}` }),
  element("span", { class: "frame", text: `${event.method} ${event.path}${query ? `?${query}` : ""} → ${event.status}` })));
}

// A client whose upstream (serve --upstream) could not be reached: closed with 1011.
function logUpstreamFailure(event) {
  appendLog(element("li", {
    "data-endpoint": event.endpoint, "data-type": "", "data-direction": "error",
    "data-client": event.client || "", "data-source": "upstream",
  },
  element("span", { class: "when", text: new Date(event.time * 1000).toLocaleTimeString() }),
  element("span", { class: "where", text: `${event.path} ${event.client ? `from ${event.client}` : ""}` }),
  element("span", { class: "badge failed", text: "upstream unreachable" }),
  element("span", { class: "frame", text: `${event.upstream}: ${event.reason} (closed with 1011)` })));
}

function appendLog(entry) {
  applyFilters(entry);
  const log = $("#log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(entry);
  while (log.children.length > MAX_LOG) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function assemble(chunk, envelope) {
  const streams = $("#streams");
  let open = streams.querySelector('li[data-open="true"]');
  const text = JSON.stringify(chunk);
  if (envelope.close.some((frame) => JSON.stringify(frame) === text)) {
    if (open) open.dataset.open = "false";
    return;
  }
  const content = chunk[envelope.content];
  if (typeof content !== "string") return;
  if (!open) {
    open = element("li", { "data-open": "true" });
    streams.append(open);
    while (streams.children.length > 50) streams.firstElementChild.remove();
  }
  const tool = chunk[envelope.type] === envelope.tool;
  const piece = element("span", { class: tool ? "tool" : "text", text: content });
  open.append(piece);
}

function applyFilters(entry) {
  const endpoint = $("#filter-endpoint").value;
  const client = $("#filter-client").value.trim();
  const type = $("#filter-type").value.trim().toUpperCase();
  entry.hidden = Boolean(
    (endpoint && entry.dataset.endpoint !== endpoint)
    || (client && !entry.dataset.client.includes(client))
    || (type && !entry.dataset.type.toUpperCase().includes(type)));
}

function refilter() {
  for (const entry of $("#log").children) applyFilters(entry);
}

// --- recordings --------------------------------------------------------------------------

const FRAMES_PER_PAGE = 200;

async function loadRecordings() {
  const listing = await api("GET", "/recordings");
  $("#recordings-folder").replaceChildren("Folder ", code(listing.folder),
    listing.exists ? "" : " (not there yet)",
    listing.truncated ? ` · ${plural(listing.truncated, "older recording")} not shown` : "");
  $("#recordings").replaceChildren(...listing.recordings.map(recordingRow));
  $("#no-recordings").hidden = listing.recordings.length > 0;
  markShown();
}

function recordingRow(recording) {
  const session = recording.session;
  const name = element("th", { scope: "row" }, code(session));
  if (recording.error) {
    return element("tr", { "data-recording": session, "data-error": "true" }, name,
      element("td", { colspan: "8", class: "error", text: `Cannot be read: ${recording.error}` }));
  }
  const view = element("button", { type: "button", text: "View", "aria-label": `View recording ${session}` });
  view.addEventListener("click", () => showRecording(session));
  const convert = element("button", {
    type: "button", text: "Convert", "aria-label": `Convert recording ${session} into a scenario`,
  });
  convert.addEventListener("click", () => convertRecording(session));
  return element("tr", { "data-recording": session, "data-ended": String(recording.ended) }, name,
    element("td", {}, code(recording.endpoint)),
    element("td", { text: recording.client || "–" }),
    element("td", { text: recording.upstream || "–" }),
    element("td", { text: new Date(recording.started * 1000).toLocaleString() }),
    element("td", { text: `${recording.client_frames} / ${recording.server_frames}` }),
    element("td", { text: seconds(recording.duration_s) }),
    element("td", { class: "end", text: recording.ended ? ended(recording.end) : "cut short" }),
    element("td", { class: "actions" }, view, convert));
}

function ended(end) {
  const how = end.code === null ? "closed without a code" : `closed ${end.code}`;
  return end.by ? `${how} by the ${end.by}` : how;
}

// The recording being viewed, and where its next page starts (null: no more).
let viewed = null;

function markShown() {
  for (const row of document.querySelectorAll("#recordings tr")) {
    if (viewed && row.dataset.recording === viewed.session) row.setAttribute("aria-current", "true");
    else row.removeAttribute("aria-current");
  }
}

async function showRecording(session, offset = 0) {
  const message = $("#recordings-message");
  message.hidden = true;
  try {
    const page = await api("GET",
      `/recordings/${encodeURIComponent(session)}?offset=${offset}&limit=${FRAMES_PER_PAGE}`);
    if (offset === 0) {
      $("#recording-frames").replaceChildren();
      $("#recording-title").textContent = `Recording ${session}`;
      const header = page.header;
      $("#recording-meta").textContent = [
        `${header.kind} ${header.endpoint}${header.query ? `?${header.query}` : ""}`,
        header.upstream ? `upstream ${header.upstream}` : "",
        header.subprotocol ? `subprotocol ${header.subprotocol}` : "",
        `started ${new Date(header.started * 1000).toLocaleString()}`,
        page.ended ? ended(page.end) : "cut short",
      ].filter(Boolean).join(" · ");
    }
    $("#recording-frames").append(...page.frames.flatMap(frameRows));
    viewed = { session, next: page.next };
    $("#more-frames").hidden = page.next === null;
    const shown = page.next === null ? page.frame_count : page.next;
    $("#recording-count").textContent = `${shown} of ${plural(page.frame_count, "frame")} shown`;
    $("#recording").hidden = false;
    markShown();
  } catch (problem) {
    message.textContent = `Could not show recording ${session}: ${problem.message}`;
    message.hidden = false;
  }
}

async function convertRecording(session) {
  const message = $("#recordings-message");
  message.hidden = true;
  try {
    const converted = await api("POST", `/recordings/${encodeURIComponent(session)}/convert`);
    const parts = converted.files.length > 1 ? ` (${converted.files.length} files)` : "";
    message.textContent = `Recording ${session} is now the scenario ${converted.scenario}${parts}: ` +
      `${converted.frames} frames, ${converted.waits} waits.`;
    message.hidden = false;
  } catch (problem) {
    message.textContent = `Could not convert recording ${session}: ${problem.message}`;
    message.hidden = false;
  }
}

// A frame's row (direction, offset, opcode, size, its text on one line) and the row under
// it that shows it whole, JSON pretty-printed, opened by a click on the text.
function frameRows(frame) {
  const id = `frame-${frame.index}`;
  const whole = element("tr", { id, class: "detail", hidden: true },
    element("td", { colspan: "6" }, element("pre", { text: frameDetail(frame) })));
  const toggle = element("button", {
    type: "button", class: "frame-text", text: frameSummary(frame) || " ",
    "aria-expanded": "false", "aria-controls": id,
  });
  toggle.addEventListener("click", () => {
    whole.hidden = !whole.hidden;
    toggle.setAttribute("aria-expanded", String(!whole.hidden));
  });
  const from = frame.from === "client" ? "client →" : "← server";
  return [element("tr", { "data-frame": String(frame.index), "data-from": frame.from, "data-op": frame.op },
    element("td", { text: String(frame.index) }),
    element("td", { class: "number", text: `${frame.ms.toFixed(1)} ms` }),
    element("td", { class: "from", text: from }),
    element("td", {}, code(frame.op)),
    element("td", { class: "number", text: bytes(frame.size) }),
    element("td", { class: "data" }, toggle)), whole];
}

function frameSummary(frame) {
  if (frame.op === "close") return `${frame.code === null ? "no code" : frame.code} ${frame.reason || ""}`.trim();
  if (frame.op === "text") return frame.data;
  if (frame.data !== undefined) return `base64 ${frame.data}`;
  return JSON.stringify(frame);
}

function frameDetail(frame) {
  const cut = frame.truncated ? `\n\n(cut: the first 1 MiB of ${bytes(frame.size)})` : "";
  if (frame.op === "text" && !frame.truncated) {
    try { return JSON.stringify(JSON.parse(frame.data), null, 2); } catch { /* not JSON */ }
  }
  if (frame.op === "text") return frame.data + cut;
  if (frame.op === "close") return frameSummary(frame);
  const shown = { ...frame };
  delete shown.index; delete shown.ms;
  return JSON.stringify(shown, null, 2) + cut;
}

function bytes(size) {
  if (size < 1024) return `${size} B`;
  return size < 1024 * 1024 ? `${(size / 1024).toFixed(1)} KiB` : `${(size / 1024 / 1024).toFixed(1)} MiB`;
}

// --- the live feed -----------------------------------------------------------------------

const refreshScenarios = debounced(() => loadScenarios().catch(showOffline));
const refreshClients = debounced(() => loadClients().catch(showOffline));
const refreshRuns = debounced(() => loadRuns().catch(showOffline));
const refreshRoutes = debounced(() => loadRoutes().catch(showOffline));
const refreshProtocol = debounced(() => loadProtocol().catch(showOffline));
const refreshState = debounced(() => loadState().catch(showOffline));
const refreshRecordings = debounced(() => loadRecordings().catch(showOffline));

function showOffline() {
  const status = $("#status");
  status.dataset.state = "reconnecting";
  status.textContent = "Server unreachable: reconnecting…";
}

let feed = null;

function connect() {
  feed = new EventSource(token ? `/events?token=${encodeURIComponent(token)}` : "/events");
  feed.addEventListener("open", () => {
    const status = $("#status");
    status.dataset.state = "live";
    status.textContent = "Live";
    // Whatever happened while we were away: load it all again.
    refreshScenarios(); refreshClients(); refreshRuns(); refreshRoutes(); refreshState();
    refreshProtocol(); refreshRecordings();
  });
  feed.addEventListener("error", () => {
    showOffline();
    // An EventSource cannot tell a 401 from a dead server: ask the API which it is.
    loadScenarios().then(() => {}, () => {});
    // EventSource retries by itself, but gives up for good after an HTTP error.
    if (feed.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  });
  feed.addEventListener("message", (message) => {
    const event = JSON.parse(message.data);
    const kind = event.event;
    if (kind === "frame.sent" || kind === "frame.received") logFrame(event);
    if (kind.startsWith("client.")) refreshClients();
    if (kind.startsWith("run.") && kind !== "run.step") refreshRuns();
    if (kind.startsWith("scenario.")) { refreshScenarios(); refreshRoutes(); }
    if (kind === "protocol.changed") { refreshProtocol(); refreshRoutes(); refreshScenarios(); }
    if (kind === "http.request") logRequest(event);
    if (kind === "upstream.failed") logUpstreamFailure(event);
    if (kind === "state.changed") {
      refreshState();
      if (event.by === "protocol file") refreshRoutes();
    }
    if (kind === "lagged") { refreshClients(); refreshRuns(); refreshState(); refreshProtocol(); }
  });
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("#token").value.trim();
  sessionStorage.setItem("replay-token", token);
  $("#token-form").hidden = true;
  if (feed) feed.close();
  connect();
});
$("#filters").addEventListener("input", refilter);
$("#state-add").addEventListener("submit", (event) => {
  event.preventDefault();
  setState($("#state-key").value.trim(), $("#state-value").value);
  $("#state-add").reset();
});
$("#refresh-recordings").addEventListener("click", refreshRecordings);
$("#more-frames").addEventListener("click", () => { if (viewed && viewed.next !== null) showRecording(viewed.session, viewed.next); });
$("#clear-log").addEventListener("click", () => { $("#log").replaceChildren(); $("#streams").replaceChildren(); });
connect();
