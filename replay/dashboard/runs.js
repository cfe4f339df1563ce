// The Runs panel: each run's state and frames, what it waits for, and its control
// (pause, resume, step, speed, cancel).
"use strict";

const SPEEDS = [0.25, 0.5, 1, 2, 5, 10, 100];
let runList = [];
// What the last Step did, per run, said under it.
const stepped = new Map();

async function loadRuns() {
  const { runs } = await api("GET", "/runs");
  runList = runs;
  // Runs the feed has not told of (the page opened while they played); the feed's own
  // run events keep the others' pause and speed in step with their run time.
  for (const run of runs) if (!(runRecords.get(run.run_id) || {}).anchor) noteSummary({ ...run, sent: runSent(run) });
  const shown = runs.slice(0, 30);
  keepingFocus($("#runs"), () => $("#runs").replaceChildren(...shown.map(runItem)));
  $("#no-runs").hidden = runs.length > 0;
  const running = runs.filter((run) => run.state === "running" || runStillPlays(run)).length;
  $("#run-count").textContent = runs.length ? `${running} running · ${runs.length} in all` : "";
  if (!shownRun && runs.length) showRun(runs[0].run_id);
  else scheduleTimeline();
  renderSummary();
}

function renderSummary() {
  const running = runList.filter((run) => run.state === "running" || runStillPlays(run));
  const paused = running.filter((run) => run.paused).length;
  $("#summary").textContent = [plural(clientTotal, "client"), `${running.length} running`,
    paused ? `${paused} paused` : ""].filter(Boolean).join(" · ");
}

// "43/43 frames" only when the count is exact: a run that waits plays what the answers
// make it play, so its planned count is an estimate made with empty answers.
function framesText(whole) {
  const run = { ...whole, sent: runSent(whole) }; // in a cluster: a copy's, not the sum
  if (run.frames === null || run.frames === undefined) return `${run.sent} sent`;
  const known = scenarioList.find((scenario) => scenario.name === run.scenario);
  const exact = run.frames_exact !== undefined ? run.frames_exact : !(known && known.waits);
  if (exact && run.sent <= run.frames) return `${run.sent}/${run.frames} frames`;
  return `${run.sent} sent (${run.frames} planned${exact ? "" : " with empty answers"})`;
}

function stateText(run) {
  if (run.state !== "running" && runStillPlays(run)) return "running"; // on another node
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
  const nodes = runNodesText(run);
  item.append(element("div", { class: "line" }, pick,
    element("span", { class: "name", text: run.scenario }),
    element("span", { class: "state", text: stateText(run) }),
    element("span", { class: "frames", text: framesText(run) }),
    element("span", { class: "by", text: `by ${run.started_by}${speed}` }),
    nodes ? element("span", { class: "nodes", text: nodes }) : null));
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
