// The timeline: one run's frames on a time axis, a lane per endpoint (and per client when
// a frame is for one client), each frame's actual delivery against its planned position,
// waits as spans with what ended them, disconnects and drops; and, ahead of what happened,
// what the plan (GET /scenarios/{name}'s timeline) says comes next.
"use strict";

const MAX_RUN_RECORDS = 30;
const MAX_MARKS = 1500; // the newest frames drawn; older ones are in the log
const MAX_GHOSTS = 300;
const LANE_HEIGHT = 30;
const AXIS_HEIGHT = 22;
// A frame this much later than planned (seconds) is drawn as late.
const LATE = 0.01;

// What the page knows of each run, from the feed: run id -> record.
const runRecords = new Map();
// The run shown, and whether the user chose it (else the newest run is shown).
let shownRun = null;
let shownPinned = false;
// The server's clock minus ours, from the events' times (the "now" line).
let skew = 0;
// Each scenario's planned cues (null while loading or when it has none).
const plans = new Map();
// The mark whose frame is shown below the timeline.
let chosenMark = null;

function serverNow() {
  return Date.now() / 1000 + skew;
}

function runRecord(id, scenario) {
  let record = runRecords.get(id);
  if (!record) {
    record = {
      id, scenario, summary: null, startedAt: null, startSpeed: null, frames: [], waits: [],
      hangups: [], anchor: null,
    };
    runRecords.set(id, record);
    while (runRecords.size > MAX_RUN_RECORDS) runRecords.delete(runRecords.keys().next().value);
  }
  return record;
}

// A run's run time (seconds since it started, pauses excluded, at its start speed) at a
// moment (epoch seconds): from the last moment the feed told it (a frame's `at`, a wait's
// or hangup's `offset`, a step's), moving at the run's speed over its start speed, and
// standing still while it is paused. Before any, from its start.
function runTime(record, epoch) {
  const summary = record.summary || {};
  const anchor = record.anchor;
  if (!anchor) {
    if (record.startedAt === null) record.startedAt = epoch;
    return Math.max(0, epoch - record.startedAt - (summary.paused_s || 0));
  }
  if (summary.paused) return anchor.runTime;
  const rate = record.startSpeed > 0 && summary.speed > 0 ? summary.speed / record.startSpeed : 1;
  return anchor.runTime + Math.max(0, epoch - anchor.wall) * rate;
}

function anchor(record, runTime, epoch) {
  if (typeof runTime === "number" && typeof epoch === "number") record.anchor = { runTime, wall: epoch };
}

function noteSummary(summary) {
  const record = runRecord(summary.run_id, summary.scenario);
  record.summary = summary;
  if (summary.started_at) record.startedAt = summary.started_at;
  if (record.startSpeed === null && typeof summary.speed === "number") record.startSpeed = summary.speed;
  return record;
}

// Every feed event the timeline cares about. In a cluster, a run's frames are merged across
// the nodes (``copy``: see frameCopy) and the rest is as this page's node saw it.
function timelineEvent(event, copy = null) {
  const kind = event.event;
  if (copy && !copy.first) {
    const frame = copy.merged.frame;
    if (frame) Object.assign(frame, mergedFigures(frame, copy.merged));
    if (event.run_id === shownRun) scheduleTimeline();
    return;
  }
  if (!copy && !ownEvent(event)) return;
  if (typeof event.time === "number") skew = event.time - Date.now() / 1000;
  if (event.run && event.run.run_id) {
    // Pausing, resuming and a new speed change how run time moves from then on.
    const known = runRecords.get(event.run_id);
    const before = known && known.summary && known.anchor ? runTime(known, event.time) : null;
    const record = noteSummary(event.run);
    if (before !== null) anchor(record, before, event.time);
    if (event.stepped) anchor(record, event.stepped.offset, event.time);
  }
  if (kind === "run.started") {
    const record = runRecord(event.run_id, event.scenario);
    if (!shownPinned) showRun(record.id);
    loadPlan(event.scenario);
  } else if (kind === "frame.sent" && event.run_id) {
    const record = runRecord(event.run_id, event.scenario);
    const at = typeof event.at === "number" ? event.at : runTime(record, event.time);
    anchor(record, event.at, event.time);
    // A run at speed 0 has no schedule: its frames are never "late".
    const timed = record.startSpeed !== 0 && typeof event.offset === "number";
    const frame = {
      at, offset: timed ? event.offset : null,
      lateness: timed && typeof event.lateness === "number" ? event.lateness : null,
      endpoint: event.endpoint, to: event.to, step: event.step, scenario: event.scenario,
      frame: event.frame, binary: event.binary, clients: event.clients, time: event.time,
    };
    if (copy) {
      copy.merged.frame = frame;
      Object.assign(frame, mergedFigures(frame, copy.merged));
    }
    record.frames.push(frame);
    if (record.frames.length > MAX_MARKS * 2) record.frames.splice(0, MAX_MARKS);
  } else if (kind === "run.wait") {
    const record = runRecord(event.run_id, event.scenario);
    anchor(record, event.offset, event.time);
    record.waits.push({
      step: event.step, start: event.offset ?? runTime(record, event.time), end: null,
      expects: event.expects || null,
    });
  } else if (kind === "run.waited") {
    const record = runRecord(event.run_id, event.scenario);
    const open = [...record.waits].reverse().find((wait) => wait.end === null && wait.step === event.step)
      || [...record.waits].reverse().find((wait) => wait.end === null);
    const end = event.offset ?? runTime(record, event.time);
    anchor(record, event.offset, event.time);
    const ended = { end, ended_by: event.ended_by, client: event.client, frame: event.frame };
    if (open) Object.assign(open, ended);
    else record.waits.push({ step: event.step, start: end, expects: null, ...ended });
  } else if (kind === "run.waiting") {
    // Before run.wait/run.waited (branch `control`): the waiting text begins and ends a wait.
    const record = runRecord(event.run_id, event.scenario);
    if (record.waits.some((wait) => wait.precise)) return;
    const open = record.waits.find((wait) => wait.end === null);
    if (event.waiting && !open) {
      record.waits.push({ step: "", start: runTime(record, event.time), end: null, expects: null, label: event.waiting });
    } else if (!event.waiting && open) {
      Object.assign(open, { end: runTime(record, event.time), ended_by: null });
    }
  } else if (kind === "run.hangup") {
    const record = runRecord(event.run_id, event.scenario);
    anchor(record, event.offset, event.time);
    record.hangups.push({
      at: event.offset ?? runTime(record, event.time), endpoints: event.endpoints || [], to: event.to,
      code: event.code, reason: event.reason, drop: event.drop, clients: event.clients, step: event.step,
    });
  } else if (kind.startsWith("scenario.")) {
    plans.delete(event.scenario);
  } else {
    return;
  }
  if (kind === "run.wait" || kind === "run.waited") {
    const record = runRecords.get(event.run_id);
    for (const wait of record.waits) wait.precise = true;
  }
  if (!event.run_id || event.run_id === shownRun) scheduleTimeline();
}

async function loadPlan(name) {
  if (plans.has(name)) return;
  plans.set(name, null);
  try {
    const info = await api("GET", `/scenarios/${encodeURIComponent(name)}`);
    plans.set(name, (info.timeline || []).filter((cue) => cue.kind === "frame" || cue.kind === "binary"));
    scheduleTimeline();
  } catch { plans.delete(name); }
}

const HINT = "Click a frame, a wait or a disconnect (or Tab to it and press Enter) to see it whole.";

function showRun(id, pinned = false) {
  if (pinned) shownPinned = true;
  if (shownRun !== id || pinned) {
    chosenMark = null;
    $("#timeline-detail-title").textContent = HINT;
    $("#timeline-detail-text").hidden = true;
  }
  shownRun = id;
  for (const row of document.querySelectorAll("#runs [data-run]")) {
    if (row.dataset.run === id) row.setAttribute("aria-current", "true");
    else row.removeAttribute("aria-current");
  }
  const record = runRecords.get(id);
  if (record) loadPlan(record.scenario);
  scheduleTimeline();
}

// Drawn again at most five times a second (a busy run sends hundreds of frames a second,
// and each drawing is of all its marks).
const TIMELINE_EVERY = 200; // ms
let timelineQueued = false;
let timelineDrawn = 0;
function scheduleTimeline() {
  if (timelineQueued) return;
  timelineQueued = true;
  setTimeout(() => requestAnimationFrame(() => {
    timelineQueued = false;
    timelineDrawn = Date.now();
    renderTimeline();
  }), Math.max(0, timelineDrawn + TIMELINE_EVERY - Date.now()));
}

// The run's "now" in run time while it plays (null once it has ended).
function runNow(record) {
  const summary = record.summary;
  if (!summary || summary.state !== "running" || record.startedAt === null) return null;
  return runTime(record, serverNow());
}

function laneOf(endpoint, to) {
  return to ? `${endpoint} → ${to}` : endpoint;
}

// The plan's frames not sent yet, placed after the last frame sent (the plan assumes
// empty answers and no waiting; what happened so far moves what comes next).
function ghosts(record, now) {
  const plan = plans.get(record.scenario);
  const speed = record.startSpeed;
  if (!plan || !speed || now === null) return [];
  const sent = record.summary ? Math.max(record.summary.sent || 0, record.frames.length) : record.frames.length;
  if (sent >= plan.length) return [];
  let shift = 0;
  const last = record.frames[record.frames.length - 1];
  if (last && sent > 0 && plan[sent - 1]) shift = (last.offset ?? last.at) - plan[sent - 1].offset / speed;
  const next = plan.slice(sent, sent + MAX_GHOSTS).map((cue) => ({ ...cue, at: cue.offset / speed + shift }));
  const late = next.length ? Math.max(0, now - next[0].at) : 0;
  for (const cue of next) cue.at += late;
  return next;
}

function tickLabel(at, step) {
  if (step >= 1) return `${+at.toFixed(2)} s`;
  return step >= 0.001 ? `${Math.round(at * 1000)} ms` : `${+(at * 1000).toFixed(2)} ms`;
}

function niceStep(span, count) {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((factor) => factor * power).find((step) => step >= raw) || raw;
}

function renderTimeline() {
  const box = $("#timeline");
  const record = shownRun && runRecords.get(shownRun);
  $("#no-timeline").hidden = Boolean(record);
  if (!record) { box.replaceChildren(); $("#timeline-run").textContent = ""; return; }
  const now = runNow(record);
  const upcoming = ghosts(record, now);
  const frames = record.frames.slice(-MAX_MARKS);
  $("#timeline-run").textContent = headline(record, upcoming);
  $("#timeline-stats").textContent = runStats(record, frames, upcoming);
  const lanes = laneNames(record, frames, upcoming);
  const scale = timeScale(record, frames, upcoming, now, lanes, Math.max(320, box.clientWidth));
  const root = svg("svg", {
    width: scale.width, height: scale.height, viewBox: `0 0 ${scale.width} ${scale.height}`, role: "group",
    "aria-label": `Timeline of run ${record.id}: ${plural(frames.length, "frame")} sent`,
  });
  drawLanes(root, lanes, scale);
  const y = (lane) => scale.y(lanes.indexOf(lane));
  const x = scale.x;
  for (const wait of record.waits) root.append(waitMark(wait, x, y("waits"), now));
  for (const hangup of record.hangups) {
    root.append(hangupMark(hangup, x, hangup.endpoints.map((endpoint) => y(laneOf(endpoint, hangup.to)))));
  }
  for (const cue of upcoming) {
    root.append(svg("circle", { class: "planned ghost", cx: x(cue.at), cy: y(laneOf(cue.endpoint, cue.to)), r: 4 },
      svg("title", { text: `planned: step ${cue.step} at ${cue.at.toFixed(3)} s` })));
  }
  frames.forEach((frame, index) => root.append(frameMark(record, frame, index, x, y(laneOf(frame.endpoint, frame.to)))));
  if (now !== null) root.append(svg("line", { class: "now", x1: x(now), x2: x(now), y1: AXIS_HEIGHT - 4, y2: scale.height }));
  replaceKeepingFocus(box, root);
  showChosen(root, frames);
}

function headline(record, upcoming) {
  const summary = record.summary || {};
  return [
    `run ${record.id} · ${record.scenario}`, summary.state || "",
    summary.paused ? "paused" : "", typeof summary.speed === "number" ? `speed ${summary.speed}` : "",
    upcoming.length ? `${upcoming.length}${upcoming.length === MAX_GHOSTS ? "+" : ""} planned ` +
      `frame${upcoming.length === 1 ? "" : "s"} to come` : "",
  ].filter(Boolean).join(" · ");
}

// A lane per endpoint (per endpoint and client for frames to one client), then the waits'.
function laneNames(record, frames, upcoming) {
  const lanes = new Set();
  for (const frame of frames) lanes.add(laneOf(frame.endpoint, frame.to));
  for (const cue of upcoming) lanes.add(laneOf(cue.endpoint, cue.to));
  for (const hangup of record.hangups) for (const endpoint of hangup.endpoints) lanes.add(laneOf(endpoint, hangup.to));
  if (record.waits.length) lanes.add("waits");
  if (!lanes.size) lanes.add(record.summary && record.summary.state === "running" ? "(nothing sent yet)" : "(nothing sent)");
  return [...lanes];
}

// Where a run time goes across (x) and a lane down (y), and the drawing's size.
function timeScale(record, frames, upcoming, now, lanes, width) {
  // At least a second across (a run that has just begun does not zoom in and out), except
  // for a run at speed 0, which plays in milliseconds.
  const ends = [record.startSpeed === 0 ? 0.005 : 1, now || 0, ...frames.map((f) => Math.max(f.at, f.offset ?? 0)),
    ...upcoming.map((cue) => cue.at), ...record.hangups.map((h) => h.at),
    ...record.waits.map((w) => w.end ?? w.start), (record.summary && record.summary.duration_s) || 0];
  const span = Math.max(...ends) * 1.04;
  const gutter = Math.min(220, Math.max(90, 7 * Math.max(...lanes.map((name) => name.length))));
  const plot = width - gutter - 12;
  return {
    span, gutter, plot, width, height: AXIS_HEIGHT + lanes.length * LANE_HEIGHT + 4,
    x: (t) => gutter + (Math.max(0, t) / span) * plot,
    y: (index) => AXIS_HEIGHT + index * LANE_HEIGHT + LANE_HEIGHT / 2,
  };
}

// The lanes with their names, then the time axis' ticks over them.
function drawLanes(root, lanes, scale) {
  lanes.forEach((name, index) => {
    root.append(svg("rect", {
      class: "lane-bg", x: scale.gutter, y: scale.y(index) - LANE_HEIGHT / 2 + 2, width: scale.plot, height: LANE_HEIGHT - 4, rx: 3,
    }), svg("g", {}, svg("title", { text: name }),
      svg("text", { class: "lane-name", x: 4, y: scale.y(index) + 4, text: name.length > 30 ? `${name.slice(0, 29)}…` : name })));
  });
  const step = niceStep(scale.span, Math.max(2, Math.floor(scale.plot / 90)));
  for (let index = 0; index * step <= scale.span; index += 1) {
    const at = scale.x(index * step);
    root.append(svg("line", { class: "grid", x1: at, x2: at, y1: AXIS_HEIGHT - 4, y2: scale.height }));
    // A label too near the right edge would be cut: the last tick goes without one.
    if (at + 55 < scale.width) root.append(svg("text", { x: at + 2, y: 12, text: tickLabel(index * step, step) }));
  }
}

// The drawing is made anew each time: a mark that had the keyboard's focus gets it back.
function replaceKeepingFocus(box, root) {
  const focused = document.activeElement && box.contains(document.activeElement) && document.activeElement.dataset.mark;
  box.replaceChildren(root);
  const again = focused && root.querySelector(`[data-mark="${CSS.escape(focused)}"]`);
  if (again) again.focus();
}

function showChosen(root, frames) {
  if (chosenMark) {
    const again = root.querySelector(`[data-mark="${CSS.escape(chosenMark)}"]`);
    if (again) again.classList.add("chosen");
  } else if (frames.length) {
    // Until a mark is chosen, the newest frame is shown, as it comes.
    const last = frames[frames.length - 1];
    $("#timeline-detail-title").textContent = `Latest frame (click a mark to choose another) · ${sentFrameText(last, lateOf(last))}`;
    $("#timeline-detail-text").textContent = last.binary ? last.frame : pretty(last.frame);
    $("#timeline-detail-text").hidden = false;
  }
}

// The run at a glance: how late its frames went, how long it waited, how long it was paused.
function runStats(record, frames, upcoming) {
  const summary = record.summary || {};
  const lateness = frames.map(lateOf).filter((late) => late !== null);
  const parts = [plural(frames.length, "frame") + " sent"];
  const before = (summary.sent || 0) - record.frames.length;
  if (before > 0 && record.frames.length < MAX_MARKS) parts.push(`${before} more before this page opened`);
  if (upcoming.length) parts.push(`${upcoming.length}${upcoming.length === MAX_GHOSTS ? "+" : ""} planned to come`);
  if (lateness.length) {
    const mean = lateness.reduce((sum, late) => sum + late, 0) / lateness.length;
    const late = lateness.filter((value) => value >= LATE).length;
    parts.push(`lateness: mean ${ms(mean)}, max ${ms(Math.max(...lateness))}, ${late} over ${ms(LATE)}`);
  }
  if (record.waits.length) {
    const waited = record.waits.reduce((sum, wait) => sum + ((wait.end ?? runNow(record) ?? wait.start) - wait.start), 0);
    parts.push(`${plural(record.waits.length, "wait")}, ${waited.toFixed(2)} s waiting`);
  }
  const hangups = record.hangups.length;
  if (hangups) parts.push(`${hangups} ${hangups === 1 ? "disconnect or drop" : "disconnects or drops"}`);
  if (summary.paused_s) parts.push(`paused ${summary.paused_s.toFixed(2)} s`);
  return parts.join(" · ");
}

// A merged frame's figures: clients summed over the nodes, the largest lateness (and when
// the latest copy went), and the copies for the detail.
function mergedFigures(frame, merged) {
  const figures = { clients: merged.clients, nodes: merged.nodes };
  if (frame.offset !== null && merged.lateness !== null) figures.lateness = merged.lateness;
  if (merged.at !== null) figures.at = merged.at;
  return figures;
}

function ms(value) {
  return `${Math.round(value * 1000)} ms`;
}

function lateOf(frame) {
  return frame.lateness ?? (frame.offset !== null ? Math.max(0, frame.at - frame.offset) : null);
}

function sentFrameText(frame, late) {
  return [`step ${frame.step}`, `${frame.endpoint} to ${frame.to || "all"} (${plural(frame.clients ?? 0, "client")})`,
    `sent at ${frame.at.toFixed(3)} s of run time`,
    frame.offset !== null ? `planned at ${frame.offset.toFixed(3)} s (${ms(late ?? 0)} late)` : "no planned time",
    bytes(frameSize(frame.frame, frame.binary)), frame.nodes ? perNodeText({ nodes: frame.nodes }) : null,
  ].filter(Boolean).join(" · ");
}

function frameMark(record, frame, index, x, cy) {
  const late = lateOf(frame);
  const label = [`step ${frame.step}`, `${frame.endpoint} to ${frame.to || "all"}`, `sent at ${frame.at.toFixed(3)} s`,
    frame.nodes ? `${plural(frame.clients ?? 0, "client")} on ${plural(frame.nodes.size, "node")}` : "",
    frame.offset !== null ? `planned ${frame.offset.toFixed(3)} s` : "", late !== null && late >= LATE ? `${ms(late)} late` : ""]
    .filter(Boolean).join(", ");
  const id = `frame-${record.id}-${index + Math.max(0, record.frames.length - MAX_MARKS)}`;
  const group = svg("g", {
    class: `mark frame${late !== null && late >= LATE ? " late" : ""}`, tabindex: "0", role: "button",
    "aria-label": `Frame ${label}`, "data-mark": id, "data-step": frame.step,
  }, svg("title", { text: label }));
  // A late frame: where it was planned (a dashed ring) and how late it went (a red line).
  // One on time is a dot alone: a ring around each would only blur them.
  if (frame.offset !== null && late !== null && late >= LATE) {
    group.append(svg("line", { class: "late-line", x1: x(frame.offset), x2: x(frame.at), y1: cy, y2: cy }),
      svg("circle", { class: "planned", cx: x(frame.offset), cy, r: 5 }));
  }
  group.append(svg("circle", { class: "sent", cx: x(frame.at), cy, r: 4 }));
  activate(group, id, `Frame · ${sentFrameText(frame, late)}`, frame.binary ? frame.frame : pretty(frame.frame));
  return group;
}

function waitMark(wait, x, cy, now) {
  const end = wait.end ?? now ?? wait.start;
  const expects = wait.expects || {};
  const what = expects.kind === "connect" ? `a client to connect${expects.endpoint ? ` to ${expects.endpoint}` : ""}`
    : expects.message_type ? `${expects.message_type}${expects.source ? ` from ${expects.source}` : ""}` : wait.label || "a client";
  const endedBy = wait.end === null ? "still waiting"
    : wait.ended_by === "frame" ? `answered by ${wait.client || "a client"}`
      : wait.ended_by ? `ended by ${wait.ended_by}` : "ended";
  const label = `Wait${wait.step ? ` step ${wait.step}` : ""} for ${what}, from ${wait.start.toFixed(3)} s: ${endedBy}` +
    (wait.end !== null ? ` at ${wait.end.toFixed(3)} s` : "");
  const id = `wait-${wait.step}-${wait.start}`;
  const left = x(wait.start);
  const group = svg("g", { class: "mark wait-mark", tabindex: "0", role: "button", "aria-label": label, "data-mark": id },
    svg("title", { text: label }),
    svg("rect", { class: "wait", x: left, y: cy - 9, width: Math.max(3, x(end) - left), height: 18, rx: 3 }));
  const shortEnd = wait.end === null ? "waiting…"
    : { frame: `answered by ${wait.client || "a client"}`, connect: `${wait.client || "a client"} connected`,
      timeout: "timed out", cancelled: "cancelled" }[wait.ended_by] || "ended";
  if (x(end) - left > 60) group.append(svg("text", { x: left + 4, y: cy + 4, text: shortEnd }));
  const body = { expects: wait.expects, ended_by: wait.ended_by ?? null, client: wait.client ?? null };
  const answer = wait.frame ? `\n\nThe answer:\n${pretty(wait.frame)}` : "";
  activate(group, id, label, JSON.stringify(body, null, 2) + answer);
  return group;
}

// One mark per disconnect or drop: a bar on each lane it cut.
function hangupMark(hangup, x, lanes) {
  const what = hangup.drop ? "drop (no close frame)" : `disconnect ${hangup.code ?? ""}${hangup.reason ? ` (${hangup.reason})` : ""}`;
  const label = `${what} of ${hangup.endpoints.join(", ")} at ${hangup.at.toFixed(3)} s, ${plural(hangup.clients ?? 0, "client")}`;
  const id = `hangup-${hangup.step}-${hangup.at}`;
  const group = svg("g", { class: "mark hangup-mark", tabindex: "0", role: "button", "aria-label": label, "data-mark": id },
    svg("title", { text: label }));
  for (const cy of lanes) {
    group.append(svg("line", { class: "hangup", x1: x(hangup.at), x2: x(hangup.at), y1: cy - 11, y2: cy + 11 }),
      svg("rect", { x: x(hangup.at) - 5, y: cy - 11, width: 10, height: 22, fill: "transparent" }));
  }
  activate(group, id, label, JSON.stringify(hangup, null, 2));
  return group;
}

// A mark shows what it stands for below the timeline on a click, or Enter or Space.
function activate(group, id, title, text) {
  const show = () => {
    chosenMark = id;
    for (const other of document.querySelectorAll("#timeline .mark.chosen")) other.classList.remove("chosen");
    group.classList.add("chosen");
    $("#timeline-detail-title").textContent = title;
    $("#timeline-detail-text").textContent = text;
    $("#timeline-detail-text").hidden = false;
  };
  group.addEventListener("click", show);
  group.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); show(); }
  });
}

// While the shown run plays, its "now" line moves.
setInterval(() => {
  const record = shownRun && runRecords.get(shownRun);
  if (record && runNow(record) !== null && !(record.summary && record.summary.paused)) scheduleTimeline();
}, 250);
new ResizeObserver(scheduleTimeline).observe($("#timeline"));
