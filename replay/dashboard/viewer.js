// The built-in viewer: a WebSocket client of every endpoint the server declares, as a
// frontend is. It shows what arrives (every frame, and the streamed text assembled), what
// the playing runs wait for, and lets a person answer them: one click for a plain wait,
// a frame editor for anything else.
"use strict";
// common.js, loaded first, gives $, element, encoder and the token.

const MAX_LOG = 1000; // frames kept in the log
const MAX_STREAMS = 50; // assembled streams kept
const MAX_HISTORY = 30; // frames kept in "Sent before"
const FIRST_RETRY = 500; // ms before the first reconnection; doubles up to LAST_RETRY
const LAST_RETRY = 5000;
// Schwarm's sockets, for a server that cannot tell its protocol (an older one, or an error).
const SCHWARM = {
  "/ws": { messages: { type: "message_type", payload: "message", data: "text", fields: {} }, chunks: null },
  "/ws/stream": {
    messages: null,
    chunks: { type: "type", content: "content", default: "default", tool: "tool", fields: {},
      close: [{ type: "close", content: null }] },
  },
};
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,64}$/; // replay.fields.CLIENT_ID_PATTERN


// --- the token (a server started with --token): readToken() and token, in common.js --------

async function api(path) {
  const response = await fetch(path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (response.status === 401) {
    $("#token-form").hidden = false;
    throw new Error("this server needs its token");
  }
  if (!response.ok) throw new Error(`${path}: ${response.status} ${response.statusText}`);
  return response.json();
}

// --- the protocol: which endpoints to connect to, and how their frames look ---------------

let endpoints = SCHWARM; // path -> {messages, chunks}, as GET /protocol declares them
let aliases = {}; // another path of an endpoint -> the endpoint's path
let routes = []; // the declared HTTP routes ("METHOD /path"): requests to them answer waits too
const HTTP = "http"; // the editor's and the log's name for requests to declared routes

// The declared path for `path`, which may be one of an endpoint's aliases.
function canonical(path) {
  return aliases[path] || path;
}

async function loadProtocol() {
  try {
    const protocol = await api("/protocol");
    const declared = {};
    aliases = {};
    for (const [path, endpoint] of Object.entries(protocol.endpoints || {})) {
      declared[path] = { messages: endpoint.messages || null, chunks: endpoint.chunks || null };
      for (const alias of endpoint.aliases || []) aliases[alias] = path;
    }
    routes = (protocol.routes || []).map((route) => `${route.method} ${route.path}`);
    endpoints = Object.keys(declared).length ? declared : SCHWARM;
  } catch {
    endpoints = SCHWARM; // an older server, or no token yet: its default sockets
    routes = [];
  }
  showEndpointChoices();
  if (wanted) syncSockets();
}

function showEndpointChoices() {
  const paths = Object.keys(endpoints);
  for (const [select, first] of [[$("#editor-endpoint"), null], [$("#log-endpoint"), "every endpoint"]]) {
    const chosen = select.value;
    select.replaceChildren(...(first ? [element("option", { value: "", text: first })] : []),
      ...paths.map((path) => element("option", { value: path, text: path })),
      routes.length ? element("option", { value: HTTP, text: "HTTP (a declared route)" }) : null);
    if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
    else if (!first) select.value = firstMessagesEndpoint() || paths[0] || "";
  }
  checkEditor();
}

function firstMessagesEndpoint() {
  return Object.keys(endpoints).find((path) => endpoints[path].messages) || null;
}

// --- the connections: one per endpoint, all with this page's client id --------------------

const links = {}; // path -> {socket, state, retry, timer, closed: {code, reason, at}}
let wanted = false; // whether the user wants to be connected (reconnect when dropped)
let me = ""; // the client id the open connections use ("" = the server picked one)

function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${path}${me ? `?client_id=${encodeURIComponent(me)}` : ""}`;
}

function connect() {
  const id = $("#client-id").value.trim();
  if (id && !CLIENT_ID.test(id)) {
    $("#client-id-error").textContent = `"${id}" is not a client id: 1 to 64 letters, digits, '.', '_', ':' or '-'.`;
    $("#client-id").setAttribute("aria-invalid", "true");
    $("#client-id").focus();
    return;
  }
  $("#client-id-error").textContent = "";
  $("#client-id").removeAttribute("aria-invalid");
  disconnect("reconnecting", false);
  me = id;
  wanted = true;
  const url = new URL(location.href);
  if (id) url.searchParams.set("client_id", id); else url.searchParams.delete("client_id");
  history.replaceState(null, "", url);
  syncSockets();
  showIdentity();
  renderWaits();
}

function disconnect(reason = "disconnected by the viewer", final = true) {
  wanted = false;
  for (const path of Object.keys(links)) closeLink(path, reason);
  if (final) {
    showIdentity();
    showConnection();
  }
}

// Open a connection to each declared endpoint that has none; close those no longer declared.
function syncSockets() {
  for (const path of Object.keys(links)) {
    if (!endpoints[path]) closeLink(path, "no longer declared");
  }
  // The stream first, so frames addressed to this client's id find every connection.
  const paths = Object.keys(endpoints).sort((a, b) => Boolean(endpoints[b].chunks) - Boolean(endpoints[a].chunks));
  for (const path of paths) if (!links[path] || links[path].state === "closed") openLink(path);
  showConnection();
}

function openLink(path) {
  const link = links[path] || (links[path] = { retry: FIRST_RETRY, closed: null });
  clearTimeout(link.timer);
  link.state = "connecting";
  const socket = new WebSocket(socketUrl(path));
  link.socket = socket;
  socket.addEventListener("open", () => {
    if (link.socket !== socket) return;
    link.state = "open";
    link.retry = FIRST_RETRY;
    showConnection();
  });
  socket.addEventListener("message", (message) => {
    if (link.socket !== socket) return;
    if (typeof message.data === "string") received(path, message.data);
    else logFrame({ direction: "in", endpoint: path, text: null, size: message.data.size });
  });
  socket.addEventListener("close", (closed) => {
    if (link.socket !== socket) return; // replaced on purpose
    link.closed = { code: closed.code, reason: closed.reason, at: Date.now() };
    logClose(path, closed.code, closed.reason, "server");
    cutStream(path, `cut: the connection closed (${closed.code})`);
    // A refused client id would only be refused again: the page waits for the user instead.
    // (Other 1008 closes, such as a client that fell behind, are worth another try.)
    if (!wanted || (closed.code === 1008 && /client_id/.test(closed.reason))) {
      link.state = "closed";
    } else {
      link.state = "waiting";
      link.due = Date.now() + link.retry;
      link.timer = setTimeout(() => { if (wanted && link.socket === socket) openLink(path); }, link.retry);
      link.retry = Math.min(link.retry * 2, LAST_RETRY);
    }
    showConnection();
  });
  showConnection();
}

function closeLink(path, reason) {
  const link = links[path];
  if (!link) return;
  clearTimeout(link.timer);
  const socket = link.socket;
  link.socket = null;
  link.state = "closed";
  if (socket && socket.readyState <= WebSocket.OPEN) {
    socket.close(1000, reason);
    link.closed = { code: 1000, reason, at: Date.now() };
    logClose(path, 1000, reason, "viewer");
    cutStream(path, "cut: the viewer disconnected");
  }
  if (!endpoints[path]) delete links[path];
}

function showIdentity() {
  const connected = Object.values(links).some((link) => link.state === "open");
  $("#whoami").textContent = wanted || connected
    ? (me ? `as client ${me}` : "as a client the server named") : "";
}

function showConnection() {
  const rows = Object.keys(endpoints).concat(Object.keys(links).filter((path) => !endpoints[path]))
    .map((path) => {
      const link = links[path];
      const state = link ? link.state : "closed";
      const text = { open: "connected", connecting: "connecting…", closed: "not connected",
        waiting: link ? `reconnecting in ${Math.max(0, Math.ceil((link.due - Date.now()) / 1000))} s` : "" }[state];
      const closed = link && link.closed;
      return element("tr", { "data-endpoint": path, "data-state": state },
        element("td", {}, element("code", { text: path })),
        element("td", { class: "state", text }),
        element("td", { class: "closed", text: closed ? closeText(closed.code, closed.reason) : "–" }));
    });
  $("#sockets").replaceChildren(...rows);
  const states = Object.keys(endpoints).map((path) => (links[path] ? links[path].state : "closed"));
  const status = $("#status");
  if (!wanted) {
    status.textContent = "Disconnected";
    status.dataset.state = "off";
  } else if (states.every((state) => state === "open")) {
    status.textContent = "Connected";
    status.dataset.state = "live";
  } else if (states.some((state) => state === "waiting")) {
    status.textContent = "Reconnecting…";
    status.dataset.state = "reconnecting";
  } else if (states.some((state) => state === "closed")) {
    status.textContent = "Refused: see the close reason";
    status.dataset.state = "off";
  } else {
    status.textContent = "Connecting…";
    status.dataset.state = "connecting";
  }
  $("#connect").textContent = wanted ? "Reconnect" : "Connect";
  $("#disconnect").disabled = !wanted;
  showIdentity();
  checkEditor();
}

const CLOSE_NAMES = { 1000: "normal", 1001: "going away", 1006: "lost, no close frame", 1008: "policy",
  1011: "server error", 1012: "service restart", 1013: "try again later" };

function closeText(code, reason) {
  const name = CLOSE_NAMES[code];
  return `${code}${name ? ` (${name})` : ""}${reason ? `: ${reason}` : ""}`;
}

// --- the frame log -------------------------------------------------------------------------


function clock(ms) {
  const when = new Date(ms);
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  return `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}.${pad(when.getMilliseconds(), 3)}`;
}

function sizeText(bytes) {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`;
}

function parse(text) {
  try { return { ok: true, value: JSON.parse(text) }; } catch (error) { return { ok: false, error }; }
}

// A short line for a frame: "TYPE: message" for a typed message, "tool: content" for a chunk.
function summary(path, data, text) {
  const endpoint = endpoints[path] || {};
  if (data && typeof data === "object" && !Array.isArray(data)) {
    const messages = endpoint.messages;
    if (messages && typeof data[messages.type] === "string") {
      const payload = data[messages.payload];
      // An empty message is shown as "" (a bare "TYPE:" reads as a cut-off line).
      const shown = typeof payload === "string" ? payload || '""' : JSON.stringify(payload);
      return `${data[messages.type]}: ${shown}`;
    }
    const chunks = endpoint.chunks;
    if (chunks && typeof data[chunks.type] === "string") {
      const content = data[chunks.content];
      return `${data[chunks.type]}${content === null || content === undefined ? "" : `: ${content}`}`;
    }
  }
  return text;
}

function logFrame({ direction, endpoint, text, size }) {
  const now = Date.now();
  const bytes = size !== undefined ? size : encoder.encode(text).length;
  const parsed = text === null ? { ok: false } : parse(text);
  const data = parsed.ok ? parsed.value : null;
  const line = text === null ? `[binary frame, ${sizeText(bytes)}]` : summary(endpoint, data, text);
  const head = [
    element("time", { class: "when", datetime: new Date(now).toISOString(), text: clock(now) }),
    element("span", { class: "direction", text: direction === "in" ? "↓ in" : "↑ out" }),
    element("code", { class: "where", title: endpoint, text: endpoint }),
    element("span", { class: "size", text: sizeText(bytes) }),
    element("span", { class: "frame", text: line }),
  ];
  const structured = data !== null && typeof data === "object";
  const body = structured
    ? element("details", {}, element("summary", {}, ...head), element("pre", { text: JSON.stringify(data, null, 2) }))
    : element("div", { class: "line" }, ...head);
  appendLog(element("li", { "data-direction": direction, "data-endpoint": endpoint,
    "data-type": structured ? typeOf(endpoint, data) : "" }, body));
}

function typeOf(path, data) {
  const endpoint = endpoints[path] || {};
  const field = endpoint.messages ? endpoint.messages.type : endpoint.chunks ? endpoint.chunks.type : null;
  return field && typeof data[field] === "string" ? data[field] : "";
}

function logClose(path, code, reason, by) {
  const now = Date.now();
  appendLog(element("li", { "data-direction": "event", "data-endpoint": path },
    element("div", { class: "line" },
      element("time", { class: "when", datetime: new Date(now).toISOString(), text: clock(now) }),
      element("span", { class: "direction", text: "✕ closed" }),
      element("code", { class: "where", text: path }),
      element("span", { class: "frame", text: `${by === "viewer" ? "by the viewer" : "by the server or the network"}: ${closeText(code, reason)}` }))));
}

function appendLog(entry) {
  const log = $("#log");
  const list = $("#messages");
  const filter = $("#log-endpoint").value;
  entry.hidden = Boolean(filter) && entry.dataset.endpoint !== filter;
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  list.append(entry);
  while (list.children.length > MAX_LOG) list.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function received(path, text) {
  logFrame({ direction: "in", endpoint: path, text });
  const chunks = endpoints[path] && endpoints[path].chunks;
  if (!chunks) return;
  const parsed = parse(text);
  if (parsed.ok && parsed.value && typeof parsed.value === "object") {
    rawText.set(parsed.value, text);
    assemble(path, parsed.value, chunks);
  }
}

// --- the assembled stream --------------------------------------------------------------------

// Which run sent a chunk is in the event feed (frame.sent), not in the chunk: a chunk is
// paired with the feed's report of the same text on the same endpoint, whichever comes first.
// Where the run changes inside a block, a new stream started: the block is split there.
const unpaired = { chunks: new Map(), runs: new Map() }; // "path\ntext" -> [span] / [run id]
const MAX_UNPAIRED = 2000; // reports of frames this page never got (sent before it connected)

function assemble(path, chunk, envelope) {
  const streams = $("#streams");
  let open = streams.querySelector('li[data-open="true"]');
  const text = JSON.stringify(chunk);
  if ((envelope.close || []).some((frame) => JSON.stringify(frame) === text)) {
    if (open) endStream(open, "close");
    return;
  }
  const content = chunk[envelope.content];
  if (typeof content !== "string") return;
  if (!open) {
    open = element("li", { "data-open": "true", "data-endpoint": path });
    streams.append(open);
    while (streams.children.length > MAX_STREAMS) streams.firstElementChild.remove();
  }
  const span = element("span", { class: chunk[envelope.type] === envelope.tool ? "tool" : "text", text: content });
  open.append(span);
  pair("chunks", "runs", `${path}\n${rawText.get(chunk)}`, span);
  streams.scrollTop = streams.scrollHeight;
}

const rawText = new WeakMap(); // a parsed chunk -> the frame's text as it came

// Take a partner for `item` from `have`, or keep `item` waiting in `wait` for one. Partners
// older than PAIRING_S are stale (a report of a frame sent before this page connected, say)
// and are dropped rather than paired with a later frame of the same text.
const PAIRING_S = 10;

function pair(wait, have, key, item) {
  const now = Date.now();
  const partners = (unpaired[have].get(key) || []).filter((partner) => now - partner.at < PAIRING_S * 1000);
  const partner = partners.shift();
  if (partners.length) unpaired[have].set(key, partners); else unpaired[have].delete(key);
  if (partner) {
    const [span, run] = wait === "chunks" ? [item, partner.item] : [partner.item, item];
    span.dataset.run = run;
    splitAt(span);
    if (span.nextElementSibling) splitAt(span.nextElementSibling);
    return;
  }
  const waiting = unpaired[wait].get(key) || [];
  waiting.push({ item, at: now });
  unpaired[wait].set(key, waiting);
  for (const kind of ["chunks", "runs"]) {
    while (unpaired[kind].size > MAX_UNPAIRED) unpaired[kind].delete(unpaired[kind].keys().next().value);
  }
}

// Split a block where its chunks' runs differ: the earlier part ends ("a new stream started").
function splitAt(span) {
  const before = span.previousElementSibling;
  if (!before || !before.dataset.run || !span.dataset.run || before.dataset.run === span.dataset.run) return;
  const block = span.parentElement;
  const rest = element("li", { "data-open": block.dataset.open, "data-endpoint": block.dataset.endpoint });
  if (block.dataset.ended) rest.dataset.ended = block.dataset.ended;
  for (let node = span; node;) {
    const next = node.nextSibling;
    rest.append(node);
    node = next;
  }
  block.after(rest);
  delete block.dataset.ended;
  endStream(block, "a new stream started");
}

function chunkSent(event) {
  const endpoint = endpoints[event.endpoint];
  if (!endpoint || !endpoint.chunks || !event.run_id || event.binary || !event.clients) return;
  if (event.to && event.to !== me) return;
  pair("runs", "chunks", `${event.endpoint}\n${event.frame}`, event.run_id);
}

function endStream(open, why) {
  open.dataset.open = "false";
  if (why !== "close") {
    open.dataset.ended = why;
    open.append(element("span", { class: "ended", text: ` (${why})` }));
  }
}

// A stream whose connection closed will get no more chunks: it ends there, marked.
function cutStream(path, why) {
  const open = $(`#streams li[data-open="true"][data-endpoint="${CSS.escape(path)}"]`);
  if (open) endStream(open, why);
}

// --- sending ---------------------------------------------------------------------------------

let sentBefore = []; // [{endpoint, text}], newest first

function send(path, text) {
  if (path === HTTP) return request(text);
  path = canonical(path);
  const link = links[path];
  if (!link || link.state !== "open") {
    note(`Not sent: not connected to ${path}. Connect first.`, true);
    return false;
  }
  link.socket.send(text);
  logFrame({ direction: "out", endpoint: path, text });
  remember(path, text);
  return true;
}

// "POST /chat?user_input=hi" on the first line, then the body if any: a request to a
// declared route, as this client (X-Replay-Client), which a wait for that route takes.
function parseRequest(text) {
  const [line, ...rest] = text.split("\n");
  // The rest of the line is the target, spaces and all (fetch encodes them as %20).
  const found = /^\s*([A-Za-z]+)\s+(\/.*?)\s*$/.exec(line);
  if (!found) return null;
  return { method: found[1].toUpperCase(), target: found[2], body: rest.join("\n").trim() };
}

function request(text) {
  const parsed = parseRequest(text);
  if (!parsed) {
    note("Not sent: the first line must be METHOD /path?query, e.g. POST /chat?user_input=hi.", true);
    return false;
  }
  const headers = me ? { "X-Replay-Client": me } : {};
  const hasBody = parsed.body && !["GET", "HEAD"].includes(parsed.method);
  if (hasBody) headers["Content-Type"] = parse(parsed.body).ok ? "application/json" : "text/plain";
  logFrame({ direction: "out", endpoint: HTTP, text });
  remember(HTTP, text);
  fetch(parsed.target, { method: parsed.method, headers, body: hasBody ? parsed.body : undefined })
    .then(async (response) => {
      const body = await response.text();
      logFrame({ direction: "in", endpoint: HTTP, text: `${response.status} ${body}`.trim() });
    })
    .catch((error) => note(`The request failed: ${error.message}`, true));
  return true;
}

function remember(path, text) {
  sentBefore = [{ endpoint: path, text }, ...sentBefore.filter((item) => item.endpoint !== path || item.text !== text)]
    .slice(0, MAX_HISTORY);
  $("#history-empty").hidden = sentBefore.length > 0;
  $("#history").replaceChildren(...sentBefore.map((item) => element("li", {},
    element("button", { type: "button", class: "resend", title: "Send this frame again" },
      element("span", { class: "visually-hidden", text: "Send again: " }),
      element("code", { class: "where", text: item.endpoint }), " ", element("span", { class: "frame", text: item.text })),
    element("button", { type: "button", class: "edit", "aria-label": `Edit: ${item.text}`, text: "Edit" }))));
}

$("#history").addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  const item = sentBefore[[...$("#history").children].indexOf(button.closest("li"))];
  if (!item) return;
  if (button.classList.contains("edit")) openEditor(item.endpoint, item.text, null);
  else send(item.endpoint, item.text);
});

function note(text, bad = false) {
  const node = $("#waits-note");
  node.textContent = text;
  node.classList.toggle("error", bad);
}

// --- the frame editor ----------------------------------------------------------------------

let target = null; // the wait the editor's frame is for: its key, or null

function openEditor(path, text, key) {
  path = path && canonical(path);
  if (path && (endpoints[path] || (path === HTTP && routes.length))) $("#editor-endpoint").value = path;
  $("#editor-text").value = text;
  target = key;
  checkEditor();
  $("#editor-text").focus();
}

function checkEditor() {
  const area = $("#editor-text");
  const text = area.value;
  const check = $("#editor-check");
  const path = $("#editor-endpoint").value;
  const link = links[path];
  $("#editor-for").textContent = me ? `as ${me}` : "";
  $("#send").disabled = path === HTTP ? !parseRequest(text) : !text || !link || link.state !== "open";
  if (path === HTTP && text.trim()) {
    checkRequest(text, area, check);
  } else if (!text.trim()) {
    check.textContent = "";
    check.dataset.state = "";
    area.removeAttribute("aria-invalid");
  } else {
    const parsed = parse(text);
    if (parsed.ok) {
      check.textContent = `✓ valid JSON (${sizeText(encoder.encode(text).length)})`;
      check.dataset.state = "ok";
      area.removeAttribute("aria-invalid");
    } else {
      check.textContent = `Not JSON: ${jsonProblem(text, parsed.error)}. It will be sent as plain text.`;
      check.dataset.state = "error";
      area.setAttribute("aria-invalid", "true");
    }
  }
  showConstraints(text);
}

function checkRequest(text, area, check) {
  const parsed = parseRequest(text);
  const body = parsed && parsed.body ? parse(parsed.body) : { ok: true };
  if (!parsed) {
    check.textContent = "The first line must be METHOD /path?query (e.g. POST /chat?user_input=hi); a body may follow on the next lines.";
  } else if (!body.ok) {
    check.textContent = `The body is not JSON: ${jsonProblem(parsed.body, body.error)}. It will be sent as plain text.`;
  } else {
    check.textContent = `✓ ${parsed.method} ${parsed.target}${parsed.body ? " with a JSON body" : ""}`;
  }
  check.dataset.state = parsed && body.ok ? "ok" : "error";
  if (parsed && body.ok) area.removeAttribute("aria-invalid"); else area.setAttribute("aria-invalid", "true");
}

// "Expected ',' or '}' after property value at line 1, column 18" from the engine's message.
function jsonProblem(text, error) {
  const message = String(error.message || error).replace(/^JSON\.parse: /, "");
  const position = /at position (\d+)/.exec(message);
  if (!position) return message.replace(/\s*\(line \d+ column \d+\)/, "");
  const before = text.slice(0, Number(position[1])).split("\n");
  const where = `line ${before.length}, column ${before[before.length - 1].length + 1}`;
  return `${message.replace(/\s*in JSON at position \d+.*$/, "").replace(/\s*at position \d+.*$/, "")} at ${where}`;
}

// What the waiting run accepts, checked against the editor's frame as it is typed. The check
// uses JavaScript's regular expressions; the server matches with RE2, which decides.
function showConstraints(text) {
  const list = $("#editor-constraints");
  const wait = target && waitByKey(target);
  if (!wait) {
    list.replaceChildren();
    list.hidden = true;
    return;
  }
  list.hidden = false;
  const expects = wait.expects;
  const endpoint = endpoints[canonical(expects.endpoint || "")] || endpoints[$("#editor-endpoint").value] || {};
  const envelope = endpoint.messages || SCHWARM["/ws"].messages;
  const parsed = parse(text);
  const frame = parsed.ok && parsed.value && typeof parsed.value === "object" ? parsed.value : null;
  const payload = frame ? frame[envelope.payload] : null;
  const message = payload === null || payload === undefined ? "" : typeof payload === "string" ? payload : JSON.stringify(payload);
  if (expects.endpoint === HTTP) {
    const accepts = [[`run ${wait.scenario} (${wait.run_id}), step ${expects.step} waits for a request: ${expects.message_type}`, null]];
    if (expects.match) accepts.push([`its JSON body matches /${expects.match}/`, null]);
    for (const [path, pattern] of Object.entries(expects.fields || {})) accepts.push([`${path} matches /${pattern}/`, null]);
    list.replaceChildren(...accepts.map(([label]) => element("li", { "data-ok": "" }, element("span", { class: "mark", text: "•" }), ` ${label}`)));
    return;
  }
  const items = [
    [`run ${wait.scenario} (${wait.run_id}), step ${expects.step} waits for ${expects.message_type}`, null],
    [`${envelope.type} is ${expects.message_type}`, Boolean(frame) && frame[envelope.type] === expects.message_type],
    [`endpoint ${expects.endpoint || firstMessagesEndpoint()}`, $("#editor-endpoint").value === canonical(expects.endpoint || firstMessagesEndpoint())],
  ];
  if (expects.match) items.push([`${envelope.payload} matches /${expects.match}/`, searches(expects.match, message)]);
  for (const [path, pattern] of Object.entries(expects.fields || {})) {
    const [found, value] = lookup(frame, path);
    items.push([`${path} matches /${pattern}/`, found ? searches(pattern, typeof value === "string" ? value : JSON.stringify(value)) : false]);
  }
  list.replaceChildren(...items.map(([label, ok]) => element("li", {
    "data-ok": ok === null ? "" : ok === undefined ? "unknown" : String(ok),
  }, element("span", { class: "mark", text: ok === null ? "•" : ok === undefined ? "?" : ok ? "✓" : "✗" }),
  ` ${label}${ok === undefined ? " (cannot check this pattern here; the server decides)" : ""}`)));
}

// An RE2 pattern searched in text, as far as JavaScript can tell (undefined: cannot say).
function searches(pattern, text) {
  let source = pattern;
  let flags = "u";
  const inline = /^\(\?([ims]+)\)/.exec(source);
  if (inline) {
    flags += inline[1];
    source = source.slice(inline[0].length);
  }
  source = source.replace(/\(\?P</g, "(?<").replace(/\\A/g, "^").replace(/\\z/g, "$(?![\\s\\S])")
    .replace(/\\p([A-Z])/g, "\\p{$1}");
  for (const mode of [flags, flags.replace("u", "")]) {
    try { return new RegExp(source, mode).test(text); } catch { /* try without unicode mode */ }
  }
  return undefined;
}

// replay.matching.lookup: a dotted path into a frame; strings holding JSON are looked into.
function lookup(value, path) {
  for (const part of path.split(".")) {
    if (typeof value === "string") {
      const parsed = parse(value);
      value = parsed.ok ? parsed.value : null;
    }
    if (value && typeof value === "object" && !Array.isArray(value) && part in value) value = value[part];
    else if (Array.isArray(value) && /^\d+$/.test(part) && Number(part) < value.length) value = value[Number(part)];
    else return [false, null];
  }
  return [true, value];
}

$("#editor-text").addEventListener("input", checkEditor);
$("#editor-endpoint").addEventListener("change", checkEditor);
$("#editor-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    $("#editor").requestSubmit();
  }
});
$("#editor").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("#editor-text").value;
  if (text) send($("#editor-endpoint").value, text);
});
$("#format").addEventListener("click", () => {
  const parsed = parse($("#editor-text").value);
  if (parsed.ok) $("#editor-text").value = JSON.stringify(parsed.value, null, 2);
  checkEditor();
});
$("#clear-editor").addEventListener("click", () => { openEditor(null, "", null); });

// --- what the playing runs wait for --------------------------------------------------------

const runs = new Map(); // run_id -> the summary of a playing run
const deadlines = new Map(); // wait key -> {at: ms (local clock), left: s when paused}

function waitKey(runId, expects) {
  return `${runId}/${expects.step}/${expects.kind}`;
}

// A run summary, as GET /runs and the run.* events give it.
function updateRun(summary) {
  if (summary.state !== "running") {
    runs.delete(summary.run_id);
    for (const key of deadlines.keys()) if (key.startsWith(`${summary.run_id}/`)) deadlines.delete(key);
    return;
  }
  runs.set(summary.run_id, summary);
  const now = Date.now();
  for (const expects of summary.expects || []) {
    const key = waitKey(summary.run_id, expects);
    const known = deadlines.get(key);
    if (!known) {
      // Run time now: the time since the run started, less the time it spent paused (the
      // server's clock, as far as the feed's event times tell this page's).
      const runNow = (now / 1000 - skew - summary.started_at) - (summary.paused_s || 0);
      const left = Math.max(0, (expects.timeout_s || 0) - (runNow - (expects.since || 0)));
      deadlines.set(key, { at: now + left * 1000, left, paused: Boolean(summary.paused) });
    } else if (summary.paused && !known.paused) {
      known.left = Math.max(0, (known.at - now) / 1000); // a paused run's timeouts stand still
      known.paused = true;
    } else if (!summary.paused && known.paused) {
      known.at = now + known.left * 1000;
      known.paused = false;
    }
  }
}

let skew = 0; // seconds this page's clock is ahead of the server's (the least seen)
let skewKnown = false;

function seeTime(serverTime) {
  if (typeof serverTime !== "number") return;
  const ahead = Date.now() / 1000 - serverTime;
  if (!skewKnown || ahead < skew) skew = ahead;
  skewKnown = true;
}

async function loadRuns() {
  try {
    const answer = await api("/runs");
    runs.clear();
    for (const summary of answer.runs || []) updateRun(summary);
  } catch (error) {
    note(`Could not load the runs: ${error.message}`, true);
  }
  renderWaits();
}

// The waits to show: a run's `expects` (servers that describe their waits) or, from older
// servers, its `waiting` text read as well as it can be.
function currentWaits() {
  const waits = [];
  for (const summary of runs.values()) {
    if (Array.isArray(summary.expects)) {
      for (const expects of summary.expects) {
        waits.push({ key: waitKey(summary.run_id, expects), run_id: summary.run_id, scenario: summary.scenario,
          paused: Boolean(summary.paused), expects });
      }
    } else if (summary.waiting) {
      waits.push({ key: `${summary.run_id}/waiting`, run_id: summary.run_id, scenario: summary.scenario,
        paused: false, waiting: summary.waiting, expects: guessExpects(summary) });
    }
  }
  return waits;
}

function waitByKey(key) {
  return currentWaits().find((wait) => wait.key === key) || null;
}

// "CHAT_INPUT from any client" (the only description an older server gives): the type and
// the client, so the editor can start from a frame of that type. Its match and fields are
// unknown, so it is never answered in one click.
function guessExpects(summary) {
  const found = /^([A-Za-z][\w.:-]*) from (?:any client|client (\S+))$/.exec(summary.waiting.split("; ")[0]);
  if (!found) return null;
  return { kind: "message", step: summary.step, message_type: found[1], match: null, fields: {},
    source: found[2] || summary.client || null, endpoint: firstMessagesEndpoint(), example: null, unknown: true };
}

function whoFor(expects) {
  const client = expects.kind === "connect" ? expects.client : expects.source;
  if (!client || client === "any") return { for: "any", text: "any client" };
  if (me && client === me) return { for: "me", text: "this client" };
  return { for: "other", text: `client ${client}` };
}

// The frame a wait accepts: the server's example, else the endpoint's envelope with the type.
function exampleFrame(expects) {
  if (expects.endpoint === HTTP) return expects.message_type; // "POST /chat": the request line
  if (expects.example) return expects.example;
  const endpoint = endpoints[canonical(expects.endpoint || "") || firstMessagesEndpoint()];
  const envelope = endpoint && endpoint.messages;
  if (!envelope) return null;
  return JSON.stringify({ [envelope.type]: expects.message_type, [envelope.payload]: envelope.data === "json" ? {} : "" });
}

function constrained(expects) {
  // A route with parameters ("GET /items/{id}") needs them filled in, too.
  const params = expects.endpoint === HTTP && /[{]/.test(expects.message_type || "");
  return Boolean(params || expects.unknown || expects.match || Object.keys(expects.fields || {}).length);
}

function renderWaits() {
  const waits = currentWaits();
  $("#waits-empty").hidden = waits.length > 0;
  const focused = document.activeElement && document.activeElement.closest("#waits li") ? document.activeElement : null;
  const focusKey = focused && focused.closest("li").dataset.key;
  const focusAction = focused && focused.dataset.action;
  $("#waits").replaceChildren(...waits.map(renderWait));
  if (focusKey) {
    // The wait answered is gone: focus moves to the next one's first button, or the heading.
    const again = $(`#waits li[data-key="${CSS.escape(focusKey)}"] button[data-action="${focusAction}"]`)
      || $("#waits li button") || $("#waits-title");
    again.focus();
  }
  tick();
  checkEditor();
}

function renderWait(wait) {
  const expects = wait.expects;
  const who = expects ? whoFor(expects) : { for: "any", text: "" };
  const item = element("li", { "data-key": wait.key, "data-run": wait.run_id, "data-for": who.for,
    "data-kind": expects ? expects.kind : "unknown" });
  const title = !expects ? wait.waiting
    : expects.kind === "connect" ? `a ${expects.new ? "new " : ""}connection`
      : expects.message_type;
  item.append(element("h3", {}, element("span", { class: "what", text: title }),
    who.text ? element("span", { class: `badge ${who.for}`, text: who.for === "me" ? "waits for you" : `from ${who.text}` }) : null));
  const facts = [["run", `${wait.scenario} (${wait.run_id})`]];
  if (expects) {
    facts.push(["step", expects.step ?? "–"]);
    facts.push(["endpoint", expects.endpoint === HTTP ? "HTTP (a declared route)"
      : expects.endpoint || (expects.kind === "connect" ? "any" : firstMessagesEndpoint() || "–")]);
    if (expects.kind === "message") {
      if (expects.match) facts.push(["match", `/${expects.match}/`]);
      for (const [path, pattern] of Object.entries(expects.fields || {})) facts.push([path, `/${pattern}/`]);
      if (expects.unknown) facts.push(["waiting", wait.waiting]);
    }
  }
  const list = element("dl", {});
  for (const [name, value] of facts) list.append(element("div", {}, element("dt", { text: name }), element("dd", { text: String(value) })));
  const left = element("div", { class: "left" }, element("dt", { text: "time left" }), element("dd", { "data-deadline": wait.key, text: "–" }));
  list.append(left);
  item.append(list, element("div", { class: "actions" }, ...actionsFor(wait, who)));
  return item;
}

function actionsFor(wait, who) {
  const expects = wait.expects;
  if (!expects) return [element("button", { type: "button", "data-action": "edit", text: "Write an answer…" })];
  if (expects.kind === "connect") {
    const client = expects.client && expects.client !== "any" ? expects.client : null;
    if (who.for === "other") return [element("button", { type: "button", "data-action": "become", "data-client": client, text: `Connect as ${client}` })];
    return [element("button", { type: "button", class: "primary", "data-action": "reconnect", text: "Reconnect" })];
  }
  const buttons = [];
  if (who.for === "other") {
    buttons.push(element("button", { type: "button", "data-action": "become", "data-client": expects.source, text: `Connect as ${expects.source}` }));
  }
  if (constrained(expects)) {
    buttons.push(element("button", { type: "button", class: who.for === "other" ? null : "primary", "data-action": "edit",
      text: `Edit ${expects.message_type} answer…` }));
  } else {
    buttons.push(element("button", { type: "button", class: who.for === "other" ? null : "primary", "data-action": "answer",
      text: `Send ${expects.message_type}` }));
    buttons.push(element("button", { type: "button", "data-action": "edit", text: "Edit…" }));
  }
  return buttons;
}

$("#waits").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const wait = waitByKey(button.closest("li").dataset.key);
  if (!wait) return;
  const expects = wait.expects;
  const action = button.dataset.action;
  if (action === "become") {
    $("#client-id").value = button.dataset.client;
    connect();
  } else if (action === "reconnect") {
    connect();
  } else if (action === "edit") {
    const path = (expects && expects.endpoint) || firstMessagesEndpoint();
    openEditor(path, expects ? exampleFrame(expects) || "" : "", wait.key);
  } else if (action === "answer") {
    const frame = exampleFrame(expects);
    const path = expects.endpoint || firstMessagesEndpoint();
    if (frame === null) openEditor(path, "", wait.key);
    else if (send(path, frame)) note(`Sent ${expects.message_type} to run ${wait.scenario} (${wait.run_id}).`);
  }
});

// The time left before each wait times out, once a second.
function tick() {
  for (const cell of document.querySelectorAll("#waits [data-deadline]")) {
    const deadline = deadlines.get(cell.dataset.deadline);
    const wait = deadline && waitByKey(cell.dataset.deadline);
    if (!deadline || !wait) {
      cell.textContent = "–";
      continue;
    }
    const left = wait.paused ? deadline.left : Math.max(0, (deadline.at - Date.now()) / 1000);
    const whole = Math.ceil(left);
    cell.textContent = `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}${wait.paused ? " (run paused)" : ""}`;
    cell.closest("li").dataset.urgent = String(!wait.paused && left < 10);
  }
  for (const link of Object.values(links)) if (link.state === "waiting") { showConnection(); break; }
}

// --- the event feed --------------------------------------------------------------------------

let feed = null;

function follow() {
  if (feed) feed.close();
  // This server's events only: in a cluster, the other nodes play the same runs to their
  // own clients, and this page is one client of this node.
  feed = new EventSource(token ? `/events?local=true&token=${encodeURIComponent(token)}` : "/events?local=true");
  feed.addEventListener("open", loadRuns);
  feed.addEventListener("message", (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    onEvent(event);
  });
}

function onEvent(event) {
  const kind = event.event || "";
  seeTime(event.time);
  if (kind === "frame.sent") {
    chunkSent(event);
    return;
  }
  if (kind === "run.wait") {
    const summary = runs.get(event.run_id);
    if (summary && Array.isArray(summary.expects) && event.expects) {
      summary.expects = summary.expects.filter((e) => e.step !== event.expects.step).concat([event.expects]);
      deadlines.set(waitKey(event.run_id, event.expects), { at: Date.now() + (event.expects.timeout_s || 0) * 1000,
        left: event.expects.timeout_s || 0, paused: Boolean(summary.paused) });
    } else {
      loadRuns();
      return;
    }
  } else if (kind === "run.waited") {
    const summary = runs.get(event.run_id);
    if (summary && Array.isArray(summary.expects)) summary.expects = summary.expects.filter((e) => e.step !== event.step);
    const by = event.ended_by === "frame" || event.ended_by === "connect" ? `answered by ${event.client || "a client"}` : event.ended_by === "timeout" ? "timed out" : event.ended_by;
    note(`Run ${event.scenario} (${event.run_id}), step ${event.step}: ${by}.`);
  } else if (kind === "run.waiting") {
    const summary = runs.get(event.run_id);
    if (summary) summary.waiting = event.waiting;
    else { loadRuns(); return; }
  } else if (kind === "run.step") {
    const summary = runs.get(event.run_id);
    if (summary && !Array.isArray(summary.expects)) summary.waiting = null; // an older server: it moved on
  } else if (kind.startsWith("run.") && event.run) {
    updateRun(event.run);
  } else if (kind === "protocol.changed") {
    loadProtocol();
    return;
  } else if (kind === "lagged") {
    loadRuns();
    return;
  } else {
    return;
  }
  renderWaits();
}

// --- start ---------------------------------------------------------------------------------

$("#identity").addEventListener("submit", (event) => { event.preventDefault(); connect(); });
$("#disconnect").addEventListener("click", () => disconnect());
$("#log-endpoint").addEventListener("change", () => {
  const filter = $("#log-endpoint").value;
  for (const entry of $("#messages").children) entry.hidden = Boolean(filter) && entry.dataset.endpoint !== filter;
});
$("#clear-log").addEventListener("click", () => { $("#messages").replaceChildren(); $("#streams").replaceChildren(); });
$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("#token").value.trim();
  sessionStorage.setItem("replay-token", token);
  $("#token-form").hidden = true;
  loadProtocol();
  follow();
});

$("#client-id").value = new URL(location.href).searchParams.get("client_id") || `viewer-${Math.random().toString(16).slice(2, 6)}`;
setInterval(tick, 1000);
showEndpointChoices();
follow();
// The declared endpoints first (Schwarm's if the server cannot say), then connect to them.
loadProtocol().then(connect);
