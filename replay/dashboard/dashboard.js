// The replay dashboard: state from the REST API, live updates from the event feed
// (GET /events, Server-Sent Events). Plain JavaScript, no build step, nothing from a CDN;
// common.js, log.js (the live log) and timeline.js are loaded before it.
"use strict";

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
    const detail = typeof data.detail === "string" ? data.detail
      : Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join("; ") : "";
    throw new Error([detail || `${response.status} ${response.statusText}`, problems]
      .filter(Boolean).join("\n"));
  }
  return data;
}

// Lists are drawn again as the feed says they changed: the control that had the focus
// gets it back (by its data-focus key), so a keyboard user does not lose their place.
function keepingFocus(container, draw) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focus : null;
  draw();
  if (key) {
    const again = container.querySelector(`[data-focus="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

// --- scenarios ---------------------------------------------------------------------------

// GET /scenarios as last loaded: the runs read whether a scenario waits.
let scenarioList = [];

async function loadScenarios() {
  const { scenarios } = await api("GET", "/scenarios");
  scenarioList = scenarios;
  const list = $("#scenarios");
  // Variables being typed are kept.
  const typed = new Map([...list.querySelectorAll("input[data-var]")]
    .map((input) => [`${input.closest("[data-name]").dataset.name}/${input.dataset.var}`, input.value]));
  keepingFocus(list, () => list.replaceChildren(...scenarios.map(renderScenario)));
  for (const input of list.querySelectorAll("input[data-var]")) {
    const key = `${input.closest("[data-name]").dataset.name}/${input.dataset.var}`;
    if (typed.has(key)) input.value = typed.get(key);
  }
  $("#scenario-count").textContent = String(scenarios.length);
  searchScenarios();
}

function renderScenario(scenario) {
  const item = element("li", {
    class: "scenario", "data-name": scenario.name, "data-valid": String(scenario.valid),
  });
  const play = element("button", {
    type: "button", "data-play": scenario.name, "data-focus": `play/${scenario.name}`, text: "Play",
    class: "primary", "aria-label": `Play ${scenario.name}`, disabled: !scenario.valid,
  });
  play.addEventListener("click", () => playScenario(scenario.name, item));
  item.append(element("div", { class: "head" }, element("h3", { text: scenario.name }), play));
  if (scenario.description) {
    item.append(element("p", { class: "description", text: scenario.description, title: scenario.description }));
  }
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
    fields.append(element("label", {}, element("span", { text: name }),
      element("input", { "data-var": name, "data-focus": `var/${scenario.name}/${name}`, value: shown })));
  }
  if (vars.length) item.append(fields);
  return item;
}

// The side bar's search: a scenario's name, description, what it reacts to, or its problems.
function searchScenarios() {
  const words = $("#scenario-search").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const item of $("#scenarios").children) {
    const text = item.textContent.toLowerCase();
    item.hidden = !words.every((word) => text.includes(word));
    if (!item.hidden) shown += 1;
  }
  $("#no-scenarios").hidden = shown > 0 || !scenarioList.length;
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
    const started = await api("POST", `/trigger/${encodeURIComponent(name)}?wait=false&speed=${encodeURIComponent(speed)}`,
      { vars: readVars(item) });
    if (started.run_id) { shownPinned = false; showRun(started.run_id); }
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
    return element("tr", {
      "data-client": client.client_id, "data-endpoint": client.endpoint,
      title: `${client.client_id} on ${client.endpoint} since ${clockTime(client.connected_at)}`,
    },
      element("td", {}, code(client.client_id)),
      element("td", {}, code(client.endpoint)),
      element("td", { text: clockTime(client.connected_at).slice(0, 8) }),
      element("td", { class: "number sent", text: String(client.sent) }),
      element("td", { class: "number received", text: String(client.received) }));
  });
  $("#clients").replaceChildren(...rows);
  $("#no-clients").hidden = clients.length > 0;
  for (const cell of document.querySelectorAll("[data-count]")) {
    cell.textContent = String(counts[cell.dataset.count] || 0);
  }
  for (const cell of document.querySelectorAll("[data-clients]")) {
    cell.textContent = String(counts[cell.dataset.clients] || 0);
  }
  clientTotal = clients.length;
  renderSummary();
}

// --- runs and their control ----------------------------------------------------------------

const SPEEDS = [0.25, 0.5, 1, 2, 5, 10, 100];
let runList = [];
let clientTotal = 0;
// What the last Step did, per run, said under it.
const stepped = new Map();

async function loadRuns() {
  const { runs } = await api("GET", "/runs");
  runList = runs;
  // Runs the feed has not told of (the page opened while they played); the feed's own
  // run events keep the others' pause and speed in step with their run time.
  for (const run of runs) if (!(runRecords.get(run.run_id) || {}).anchor) noteSummary(run);
  const shown = runs.slice(0, 30);
  keepingFocus($("#runs"), () => $("#runs").replaceChildren(...shown.map(runItem)));
  $("#no-runs").hidden = runs.length > 0;
  const running = runs.filter((run) => run.state === "running").length;
  $("#run-count").textContent = runs.length ? `${running} running · ${runs.length} in all` : "";
  if (!shownRun && runs.length) showRun(runs[0].run_id);
  else scheduleTimeline();
  renderSummary();
}

function renderSummary() {
  const running = runList.filter((run) => run.state === "running");
  const paused = running.filter((run) => run.paused).length;
  $("#summary").textContent = [plural(clientTotal, "client"), `${running.length} running`,
    paused ? `${paused} paused` : ""].filter(Boolean).join(" · ");
}

// "43/43 frames" only when the count is exact: a run that waits plays what the answers
// make it play, so its planned count is an estimate made with empty answers.
function framesText(run) {
  if (run.frames === null || run.frames === undefined) return `${run.sent} sent`;
  const known = scenarioList.find((scenario) => scenario.name === run.scenario);
  const exact = run.frames_exact !== undefined ? run.frames_exact : !(known && known.waits);
  if (exact && run.sent <= run.frames) return `${run.sent}/${run.frames} frames`;
  return `${run.sent} sent (${run.frames} planned${exact ? "" : " with empty answers"})`;
}

function stateText(run) {
  return run.state === "running" && run.paused ? "paused" : run.state;
}

function runItem(run) {
  const id = run.run_id;
  const item = element("li", {
    class: "run", "data-run": id, "data-state": run.state, "data-paused": String(Boolean(run.paused)),
    "aria-current": id === shownRun ? "true" : undefined,
  });
  const pick = element("button", {
    type: "button", class: "link pick", text: id, "data-focus": `pick/${id}`,
    "aria-label": `Show run ${id} on the timeline`,
  });
  pick.addEventListener("click", () => showRun(id, true));
  const speed = typeof run.speed === "number" ? ` · speed ${run.speed}` : "";
  item.append(element("div", { class: "line" }, pick,
    element("span", { class: "name", text: run.scenario }),
    element("span", { class: "state", text: stateText(run) }),
    element("span", { class: "frames", text: framesText(run) }),
    element("span", { class: "by", text: `by ${run.started_by}${speed}` })));
  if (run.state === "running" && run.waiting) item.append(waitingLine(run));
  if (run.state === "running") item.append(runControls(run));
  const note = stepped.get(id);
  if (note && run.state === "running") item.append(element("p", { class: "stepped", text: note }));
  if (run.error) item.append(element("p", { class: "run-error", text: run.error }));
  return item;
}

// What a waiting run waits for, and a way to answer it: the viewer, as that client.
function waitingLine(run) {
  const expects = run.expects || [];
  const source = (expects.find((entry) => entry.source) || {}).source || run.client || "";
  const link = element("a", {
    href: source ? `/viewer?client_id=${encodeURIComponent(source)}` : "/viewer",
    target: "_blank", rel: "noopener", text: "Answer in the viewer",
    title: `Opens the viewer in a new tab, connected as ${source || "a new client"}`,
  });
  return element("p", { class: "waiting" }, `waiting for ${run.waiting} `, link);
}

function controlButton(run, action, label, extra = {}) {
  // Pause and Resume are one place for the keyboard: the focus stays as one becomes the other.
  const place = action === "pause" || action === "resume" ? "pause-resume" : action;
  const button = element("button", {
    type: "button", text: label, "data-control": action, "data-focus": `${place}/${run.run_id}`,
    "aria-label": `${label} run ${run.run_id}`, ...extra,
  });
  button.addEventListener("click", () => control(run.run_id, action, button));
  return button;
}

function runControls(run) {
  // A run started at speed 0 has no pauses to scale (it can still be paused and stepped).
  const pausable = run.speed !== 0;
  const group = element("div", { class: "controls", role: "group", "aria-label": `Control run ${run.run_id}` },
    run.paused ? controlButton(run, "resume", "Resume") : controlButton(run, "pause", "Pause"),
    controlButton(run, "step", "Step"));
  const choices = [...new Set([...SPEEDS, run.speed ?? 1])].sort((a, b) => a - b);
  const select = element("select", {
    "data-control": "speed", "data-focus": `speed/${run.run_id}`, disabled: !pausable,
    title: pausable ? undefined : "A run started at speed 0 has no pauses to scale",
  }, ...choices.map((value) => element("option", { value: String(value), text: `${value}×`, selected: value === run.speed })));
  select.addEventListener("change", () => control(run.run_id, "speed", select, Number(select.value)));
  group.append(element("label", {}, "Speed", select),
    controlButton(run, "cancel", "Cancel"));
  return group;
}

// Pause, resume, step, speed and cancel (the contract's control routes).
// One control at a time per run. The widget is not disabled meanwhile: a disabled
// button loses the keyboard's focus, which must stay on it.
const controlling = new Set();

async function control(id, action, widget, value) {
  if (controlling.has(id)) return;
  controlling.add(id);
  const message = $("#run-message");
  message.hidden = true;
  widget.setAttribute("aria-busy", "true");
  try {
    if (action === "cancel") await api("DELETE", `/runs/${id}`);
    else if (action === "speed") await api("POST", `/runs/${id}/speed?speed=${encodeURIComponent(value)}`);
    else {
      const answer = await api("POST", `/runs/${id}/${action}`);
      if (action === "step") stepped.set(id, steppedText(answer.stepped));
    }
  } catch (problem) {
    message.textContent = `Could not ${action} run ${id}: ${problem.message}`;
    message.hidden = false;
  }
  controlling.delete(id);
  widget.removeAttribute("aria-busy");
  refreshRuns();
}

function steppedText(done) {
  if (!done) return "Stepped.";
  const what = { frame: "a frame went out", disconnect: "a disconnect", drop: "a drop", set: "the state was set",
    wait: "a wait began", end: "the run ended" }[done.kind] || done.kind;
  return `Stepped: ${what}${done.step ? ` (step ${done.step})` : ""}; paused again.`;
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
  $("#tab-protocol").dataset.problems = String(declared.problems.length > 0);
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
  select.replaceChildren(element("option", { value: "", text: "all endpoints" }),
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


// --- tabs: the protocol, the HTTP routes and state, the recordings -----------------------

function chooseTab(tab) {
  for (const other of document.querySelectorAll('[role="tab"]')) {
    const chosen = other === tab;
    other.setAttribute("aria-selected", String(chosen));
    other.tabIndex = chosen ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !chosen;
  }
}

for (const tab of document.querySelectorAll('[role="tab"]')) {
  tab.addEventListener("click", () => chooseTab(tab));
  tab.addEventListener("keydown", (event) => {
    const tabs = [...document.querySelectorAll('[role="tab"]')];
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
    chooseTab(next);
    next.focus();
  });
}

// --- the live feed -----------------------------------------------------------------------

const refreshScenarios = debounced(() => loadScenarios().catch(showOffline));
// Frames change the clients' counts: at most four reloads a second while they flow, and
// one more once they stop (a frame is counted when it is written, just after its event).
const reloadClients = throttled(() => loadClients().catch(showOffline), 250);
const settleClients = debounced(() => loadClients().catch(showOffline), 500);
function refreshClients() { reloadClients(); settleClients(); }
const refreshRuns = throttled(() => loadRuns().catch(showOffline), 300);
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

// One event of the feed: the log, the timeline, and the panels it changes.
function handleEvent(event) {
  const kind = event.event;
  timelineEvent(event);
  if (kind === "frame.sent" || kind === "frame.received") { logFrame(event); refreshClients(); }
  if (kind === "frame.sent" && event.run_id) refreshRuns(); // its count of frames sent
  if (kind === "client.connected" || kind === "client.disconnected") { logConnection(event); refreshClients(); }
  if (kind === "run.hangup") logHangup(event);
  if (kind === "run.finished" || kind === "run.failed" || kind === "run.cancelled") endRunStreams(event.run_id, `run ${kind.slice(4)}`);
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
}

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
  feed.addEventListener("message", (message) => handleEvent(JSON.parse(message.data)));
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("#token").value.trim();
  sessionStorage.setItem("replay-token", token);
  $("#token-form").hidden = true;
  if (feed) feed.close();
  connect();
});
$("#scenario-search").addEventListener("input", searchScenarios);
$("#filters").addEventListener("input", refilter);
$("#filters").addEventListener("submit", (event) => event.preventDefault());
$("#state-add").addEventListener("submit", (event) => {
  event.preventDefault();
  setState($("#state-key").value.trim(), $("#state-value").value);
  $("#state-add").reset();
});
$("#refresh-recordings").addEventListener("click", refreshRecordings);
$("#more-frames").addEventListener("click", () => { if (viewed && viewed.next !== null) showRecording(viewed.session, viewed.next); });
$("#clear-log").addEventListener("click", () => { $("#log").replaceChildren(); $("#streams").replaceChildren(); });
connect();
