// Helpers every part of the dashboard uses: building elements, and formatting times and sizes.
"use strict";

const $ = (selector) => document.querySelector(selector);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function code(value) {
  return element("code", { text: typeof value === "string" ? value : JSON.stringify(value) });
}

// Items with a separator between them, as children of an element.
function joined(items, separator) {
  return items.flatMap((item, index) => (index ? [separator, item] : [item]));
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

function seconds(value) {
  if (value === null || value === undefined) return "until cancelled";
  return value < 1 && value > 0 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(2)} s`;
}

// A moment (epoch seconds) as the wall clock showed it, to the millisecond: 14:03:07.412.
function clockTime(epoch) {
  const date = new Date(epoch * 1000);
  const two = (number) => String(number).padStart(2, "0");
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.` +
    String(date.getMilliseconds()).padStart(3, "0");
}

function bytes(size) {
  if (size < 1024) return `${size} B`;
  return size < 1024 * 1024 ? `${(size / 1024).toFixed(1)} KiB` : `${(size / 1024 / 1024).toFixed(1)} MiB`;
}

// A text frame's size on the wire: its UTF-8 bytes (a binary frame comes as hex: half).
const encoder = new TextEncoder();
function frameSize(text, binary) {
  if (typeof text !== "string") return 0;
  return binary ? Math.floor(text.length / 2) : encoder.encode(text).length;
}

// A frame's text pretty-printed when it is JSON, else as it is; a field holding JSON in a
// string (Schwarm's EVENT spans are sent so) is shown parsed as well, under the frame.
function pretty(text) {
  let parsed;
  try { parsed = JSON.parse(text); } catch { return text; }
  const shown = [JSON.stringify(parsed, null, 2)];
  if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
    for (const [name, value] of Object.entries(parsed)) {
      if (typeof value !== "string" || !/^\s*[[{]/.test(value)) continue;
      try {
        shown.push(`${name} (JSON in a string), parsed:\n${JSON.stringify(JSON.parse(value), null, 2)}`);
      } catch { /* text that only looks like JSON */ }
    }
  }
  return shown.join("\n\n");
}

// Coalesce bursts of events into one refresh, once they stop.
function debounced(action, wait = 150) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(action, wait);
  };
}

// At most one call every `every` ms however busy the feed is (a steady stream of frames
// would starve a debounced refresh forever), and always one more after the last request.
function throttled(action, every = 250) {
  let last = 0;
  let timer = null;
  return () => {
    if (timer !== null) return;
    const wait = Math.max(0, last + every - Date.now());
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      action();
    }, wait);
  };
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
