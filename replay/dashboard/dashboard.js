// The replay dashboard: state from the REST API, live updates from the event feed
// (GET /events, Server-Sent Events). Plain JavaScript, no build step, nothing from a CDN.
// Each panel has a script of its own, loaded before this one (see index.html), which
// asks the server through api() and is told of changes by handleEvent().
"use strict";

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
  clusterEvent(event);
  clientEvent(event);
  // In a cluster each node reports its copy of a run's frame: one mark, one line.
  const copy = kind === "frame.sent" ? frameCopy(event) : null;
  timelineEvent(event, copy);
  if (kind === "frame.sent" || kind === "frame.received") { logFrame(event, copy); refreshClients(); }
  if (kind === "frame.sent" && event.run_id) refreshRuns(); // its count of frames sent
  if (kind === "client.connected" || kind === "client.disconnected") { logConnection(event); refreshClients(); }
  if (kind === "run.hangup" && ownEvent(event)) logHangup(event);
  if (kind === "feed.dropped") { logDropped(event); refreshClients(); refreshRuns(); }
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
    // Whatever happened while we were away: load it all again (a node that restarted has
    // another id).
    loadNode();
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
// The node first (in a cluster, events are told apart by it), then the feed.
loadNode().finally(connect);
