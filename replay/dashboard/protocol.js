// The Protocol tab (what the folder speaks) and the HTTP routes and state tab.
"use strict";

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
  // A value being typed is kept, with its caret and selection: the state changes under it
  // only once it is set, and what is typed next goes where it would have gone.
  const active = document.activeElement;
  const editing = active && active.dataset.key;
  const typed = editing ? active.value : null;
  const selected = editing ? [active.selectionStart, active.selectionEnd, active.selectionDirection] : null;
  $("#state").replaceChildren(...Object.entries(state).map(([key, value]) => stateRow(key, value)));
  const input = editing ? document.querySelector(`#state input[data-key="${CSS.escape(editing)}"]`) : null;
  if (input) { input.value = typed; input.focus(); input.setSelectionRange(...selected); }
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
