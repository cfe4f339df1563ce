// The Node reference: a broadcast server on npm's `ws` (what Node mock tools such as
// Mockoon and MSW stand on), speaking exactly bench/bare_server.py's protocol.
//
//     node bench/node_ws/server.js PORT
//
// * /ws: clients connect and are kept in a set until they go;
// * /echo: every message sent back at once (not kept in the set);
// * GET /trigger?frames=M&pause=S&pad=P&repeat=K: plays M frames (K times over) to every
//   client, S seconds apart on an absolute schedule (frame i is due at start + i*S; S=0:
//   all in a row, in one go), and answers {"status","frames","clients"} when done;
// * GET /count: {"clients": n}.
//
// Each frame is encoded once into a Buffer and sent to every open client with
// `send(buffer, {binary: false})`: ws frames it per client, as websockets' broadcast()
// does. No per-client queue, no backpressure (a slow client's frames pile up in its
// socket's buffer), no compression (ws's server default). Keepalive as in ws's README and
// as websockets does by default: a ping to every client every 20 s; a client that has not
// answered the previous one by then is cut.
"use strict";

const http = require("node:http");
const { WebSocketServer, WebSocket } = require("ws");

const HOST = "127.0.0.1";
const CHILD_LIFETIME_MS = 1800 * 1000; // bench/common.py CHILD_LIFETIME
const PING_INTERVAL_MS = 20 * 1000;

// bench/common.py frame(): json.dumps({"message_type": "EVENT", "message": text},
// separators=(",", ":"), ensure_ascii=False): JSON.stringify gives the same bytes.
function frameText(seq, pad) {
  return `seq ${seq}` + (pad ? " " + "x".repeat(pad) : "");
}

function frame(seq, pad) {
  return JSON.stringify({ message_type: "EVENT", message: frameText(seq, pad) });
}

const clients = new Set();
const alive = new WeakMap(); // client -> answered the last ping

function broadcast(data) {
  for (const client of clients) {
    if (client.readyState === WebSocket.OPEN) client.send(data, { binary: false });
  }
}

function play(frames, pause, pad, repeat) {
  const encoded = [];
  for (let i = 0; i < frames; i++) encoded.push(Buffer.from(frame(i, pad)));
  const total = frames * repeat;
  if (!pause) {
    for (let i = 0; i < total; i++) broadcast(encoded[i % frames]);
    return Promise.resolve();
  }
  const start = performance.now();
  return new Promise((resolve) => {
    let i = 0;
    const next = () => {
      // Everything due by now goes out; then sleep until the next deadline.
      while (i < total && start + i * pause * 1000 <= performance.now()) {
        broadcast(encoded[i % frames]);
        i++;
      }
      if (i >= total) resolve();
      else setTimeout(next, Math.max(0, start + i * pause * 1000 - performance.now()));
    };
    next();
  });
}

function answer(response, status, body) {
  const text = (typeof body === "string" ? body : JSON.stringify(body)) + "\n";
  response.writeHead(status, {
    "Content-Type": typeof body === "string" ? "text/plain" : "application/json",
    "Content-Length": Buffer.byteLength(text),
  });
  response.end(text);
}

function number(value, fallback, parse) {
  const parsed = value === null ? fallback : parse(value);
  if (!Number.isFinite(parsed) || parsed < 0) throw new Error(`bad number: ${value}`);
  return parsed;
}

const server = http.createServer((request, response) => {
  const url = new URL(request.url, `http://${HOST}`);
  if (request.method !== "GET") return answer(response, 405, "GET only");
  if (url.pathname === "/count") return answer(response, 200, { clients: clients.size });
  if (url.pathname !== "/trigger") return answer(response, 404, "not found");
  let frames, pause, pad, repeat;
  try {
    const q = url.searchParams;
    frames = number(q.get("frames"), 1, (v) => Number.parseInt(v, 10));
    pause = number(q.get("pause"), 0, Number.parseFloat);
    pad = number(q.get("pad"), 0, (v) => Number.parseInt(v, 10));
    repeat = number(q.get("repeat"), 1, (v) => Number.parseInt(v, 10));
  } catch (error) {
    return answer(response, 400, String(error.message));
  }
  play(frames, pause, pad, repeat).then(() =>
    answer(response, 200, { status: "success", frames, clients: clients.size }),
  );
});

const wss = new WebSocketServer({ noServer: true, clientTracking: false });

server.on("upgrade", (request, socket, head) => {
  const path = new URL(request.url, `http://${HOST}`).pathname;
  if (path !== "/ws" && path !== "/echo") {
    socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    return;
  }
  wss.handleUpgrade(request, socket, head, (ws) => {
    ws.on("error", () => {}); // a reset peer: its close event follows
    alive.set(ws, true);
    ws.on("pong", () => alive.set(ws, true));
    if (path === "/echo") {
      ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
      return;
    }
    clients.add(ws);
    ws.on("close", () => clients.delete(ws));
  });
});

const pings = setInterval(() => {
  for (const ws of clients) {
    if (!alive.get(ws)) {
      ws.terminate();
      continue;
    }
    alive.set(ws, false);
    ws.ping();
  }
}, PING_INTERVAL_MS);

function stop() {
  clearInterval(pings);
  for (const ws of clients) ws.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}

process.on("SIGINT", stop);
process.on("SIGTERM", stop);
setTimeout(stop, CHILD_LIFETIME_MS).unref();

const port = Number.parseInt(process.argv[2], 10);
if (!Number.isInteger(port)) {
  console.error("usage: node bench/node_ws/server.js PORT");
  process.exit(2);
}
server.listen({ host: HOST, port, backlog: 2048 });
