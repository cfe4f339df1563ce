// A minimal chat frontend for replay (or Schwarm): no build step, no dependencies.
//
// Query parameters:
//   replay=http://127.0.0.1:8123  the replay server (its ws:// URLs are derived from it)
//   client=ID                     the client id both WebSockets connect with, so that
//                                 '/trigger/NAME?client=ID' reaches this tab only
//
// /ws gets {"message_type": "...", "message": "..."}; a CHAT_REQUESTED message is shown
// as the agent's question, and the answer goes back on /ws as
// {"message_type": "CHAT_INPUT", "message": "..."}. /ws/stream gets
// {"type": "default" | "tool", "content": "..."} chunks, shown in the reply area until
// {"type": "close", "content": null}.

const params = new URLSearchParams(location.search);
const server = new URL(params.get("replay") || "http://127.0.0.1:8123");
const client = params.get("client") || `tab-${Math.random().toString(36).slice(2, 10)}`;
const wsBase = `${server.protocol === "https:" ? "wss:" : "ws:"}//${server.host}`;

const status = document.getElementById("status");
const prompt = document.getElementById("prompt");
const form = document.getElementById("answer-form");
const answer = document.getElementById("answer");
const send = document.getElementById("send");
const reply = document.getElementById("reply");
const events = document.getElementById("events");
const agent = document.getElementById("agent");

const sockets = [];

function socketFor(path, onFrame) {
  const socket = new WebSocket(`${wsBase}${path}?client_id=${encodeURIComponent(client)}`);
  socket.addEventListener("message", (event) => onFrame(JSON.parse(event.data)));
  socket.addEventListener("open", showStatus);
  socket.addEventListener("close", showStatus);
  sockets.push(socket);
  return socket;
}

function showStatus() {
  let state = "connecting";
  if (sockets.some((s) => s.readyState === WebSocket.CLOSED)) state = "disconnected";
  else if (sockets.every((s) => s.readyState === WebSocket.OPEN)) state = "connected";
  status.textContent = state;
  status.dataset.state = state;
}

function note(text) {
  const item = document.createElement("li");
  item.textContent = text;
  events.append(item);
}

function onMessage(frame) {
  const text = typeof frame.message === "string" ? frame.message : JSON.stringify(frame.message);
  if (frame.message_type === "CHAT_REQUESTED") {
    prompt.textContent = text;
    agent.textContent = "asking";
    answer.disabled = false;
    send.disabled = false;
    answer.focus();
    return;
  }
  if (frame.message_type === "IS_WAITING") agent.textContent = "waiting for your answer";
  note(`${frame.message_type}: ${text}`);
}

function onChunk(frame) {
  if (frame.type === "close") {
    reply.dataset.state = "closed";
    agent.textContent = "done";
    return;
  }
  if (reply.dataset.state !== "streaming") {
    reply.textContent = ""; // a new reply
    reply.dataset.state = "streaming";
    agent.textContent = "replying";
  }
  reply.append(frame.type === "tool" ? `[${frame.content}]` : frame.content);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  messages.send(JSON.stringify({ message_type: "CHAT_INPUT", message: answer.value }));
  note(`you: ${answer.value}`);
  answer.value = "";
  agent.textContent = "thinking";
  answer.disabled = true;
  send.disabled = true;
});

// The stream first, so that nothing sent to this client id on /ws/stream is missed once
// /ws is open (replay's advice for scenarios played as a client connects).
socketFor("/ws/stream", onChunk);
const messages = socketFor("/ws", onMessage);
