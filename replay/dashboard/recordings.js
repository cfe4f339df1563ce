// The Recordings tab: the recordings folder, a recording's frames a page at a time,
// and Convert.
"use strict";

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
