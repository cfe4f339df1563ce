// The built-in viewer: a WebSocket client of /ws and /ws/stream, as Schwarm's dashboard is.
"use strict";

const $ = (selector) => document.querySelector(selector);
const sockets = {};
let retry = 500;

function url(path) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const id = $("#client-id").value.trim();
  return `${scheme}://${location.host}${path}${id ? `?client_id=${encodeURIComponent(id)}` : ""}`;
}

function status(text, state) {
  const node = $("#status");
  node.textContent = text;
  node.dataset.state = state;
}

function showMessage(frame) {
  const item = document.createElement("li");
  let text = frame;
  try {
    const data = JSON.parse(frame);
    item.dataset.type = data.message_type || "";
    text = `${data.message_type}: ${data.message}`;
  } catch { item.dataset.type = ""; }
  item.textContent = text;
  const list = $("#messages");
  list.append(item);
  while (list.children.length > 500) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

function showChunk(frame) {
  let chunk;
  try { chunk = JSON.parse(frame); } catch { return; }
  const list = $("#streams");
  let open = list.querySelector('li[data-open="true"]');
  if (chunk.type === "close") { if (open) open.dataset.open = "false"; return; }
  if (typeof chunk.content !== "string") return;
  if (!open) {
    open = document.createElement("li");
    open.dataset.open = "true";
    list.append(open);
  }
  const piece = document.createElement("span");
  piece.className = chunk.type === "tool" ? "tool" : "text";
  piece.textContent = chunk.content;
  open.append(piece);
}

function open(path, onFrame) {
  const socket = new WebSocket(url(path));
  sockets[path] = socket;
  socket.addEventListener("open", () => {
    retry = 500;
    if (Object.values(sockets).every((s) => s.readyState === WebSocket.OPEN)) status("Connected", "live");
  });
  socket.addEventListener("message", (message) => {
    if (typeof message.data === "string") onFrame(message.data);
    else showMessage(`[binary frame, ${message.data.size} bytes]`);
  });
  socket.addEventListener("close", (closed) => {
    if (sockets[path] !== socket) return; // replaced on purpose
    status(`Disconnected from ${path} (code ${closed.code}${closed.reason ? `: ${closed.reason}` : ""}); reconnecting…`, "reconnecting");
    setTimeout(() => { if (sockets[path] === socket) open(path, onFrame); }, retry);
    retry = Math.min(retry * 2, 5000);
  });
}

function connectAll() {
  for (const socket of Object.values(sockets)) { socket.onclose = null; }
  const old = { ...sockets };
  for (const key of Object.keys(sockets)) delete sockets[key];
  for (const socket of Object.values(old)) socket.close();
  status("Connecting…", "connecting");
  // The stream first, so frames addressed to this client's id find both connections.
  open("/ws/stream", showChunk);
  open("/ws", showMessage);
}

$("#identity").addEventListener("submit", (event) => { event.preventDefault(); connectAll(); });
connectAll();
