// The side bar: the scenarios, their search, and Play with variables and a speed.
"use strict";

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
