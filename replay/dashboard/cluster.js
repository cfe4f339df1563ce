// The cluster (serve --backplane): the node serving this page, how many nodes there are,
// and the copies of one frame or run that every node reports (every node plays every run
// to its own clients, so each frame.sent comes once per node). Single process: thisNode
// stays null and nothing here shows.
"use strict";

// This page's node (GET /healthz's backplane.node), or null outside a cluster.
let thisNode = null;
// The nodes heard of (this one, those whose events came), and how many the presence
// events (node.joined, node.left, node.lost) say are alive.
const nodesSeen = new Set();
let nodeCount = null;
// Each run's copies: run id -> node -> "running" or how it ended.
const runNodes = new Map();
// Each frame's copies: key (run, step, planned offset, endpoint, target) -> merged frame.
const frameCopies = new Map();
// How many times each node sent a frame of that key so far: a step sent again at the same
// planned time (a repeat at speed 0) is a frame of its own, the nth of each node together.
const sentTimes = new Map();
const MAX_COPIES = 5000;
const MAX_RUN_NODES = 200;

async function loadNode() {
  const before = thisNode;
  try {
    const health = await api("GET", "/healthz");
    thisNode = (health.backplane && health.backplane.node) || null;
    // The nodes alive (presence), this one first: how many, and who.
    const alive = health.backplane && health.backplane.nodes;
    if (Array.isArray(alive)) {
      nodeCount = alive.length;
      for (const node of alive) if (node.node) nodesSeen.add(node.node);
    }
  } catch { thisNode = before; } // unreachable now: as it was
  if (before && before !== thisNode) nodesSeen.delete(before);
  if (thisNode) nodesSeen.add(thisNode);
  renderCluster();
}

function renderCluster() {
  const box = $("#cluster");
  box.hidden = !thisNode;
  document.body.dataset.cluster = String(Boolean(thisNode));
  for (const cell of document.querySelectorAll("[data-cluster-only]")) cell.hidden = !thisNode;
  if (!thisNode) return;
  // How many are alive, when the presence events (or /healthz) say; else those heard from.
  const count = nodeCount !== null ? plural(nodeCount, "node")
    : nodesSeen.size > 1 ? `${plural(nodesSeen.size, "node")} heard from` : "a cluster";
  box.textContent = `${count} · this page: node ${thisNode}`;
  box.title = `Nodes heard from: ${[...nodesSeen].join(", ")}`;
}

// Every event: who is in the cluster, and each run's copies.
function clusterEvent(event) {
  if (!thisNode || !event.node) return;
  const kind = event.event;
  if (kind.startsWith("node.")) {
    if (typeof event.nodes === "number") nodeCount = event.nodes;
    if (kind === "node.joined") nodesSeen.add(event.node);
    else nodesSeen.delete(event.node);
    renderCluster();
    return;
  }
  if (!nodesSeen.has(event.node)) { nodesSeen.add(event.node); renderCluster(); }
  if (kind === "run.started" || kind === "run.finished" || kind === "run.failed" || kind === "run.cancelled") {
    let copies = runNodes.get(event.run_id);
    if (!copies) {
      copies = new Map();
      runNodes.set(event.run_id, copies);
      while (runNodes.size > MAX_RUN_NODES) runNodes.delete(runNodes.keys().next().value);
    }
    copies.set(event.node, kind === "run.started" ? "running" : kind.slice(4));
  }
}

// Whether the page shows this event as it is: outside a cluster all are; in one, a run's
// waits, hangups and summaries are shown as this node saw them (every node's copy of the
// run has them alike), and its frames merged across nodes (see frameCopy).
function ownEvent(event) {
  return !thisNode || !event.node || event.node === thisNode;
}

// A frame.sent of a run, merged with its copies from the other nodes: { merged, first }
// (first: the first copy heard), or null outside a cluster or for a frame of no run.
function frameCopy(event) {
  if (!thisNode || !event.node || !event.run_id) return null;
  const base = [event.run_id, event.step, event.offset, event.endpoint, event.to ?? ""].join("|");
  const times = (sentTimes.get(`${event.node}|${base}`) || 0) + 1;
  sentTimes.set(`${event.node}|${base}`, times);
  while (sentTimes.size > MAX_COPIES * 4) sentTimes.delete(sentTimes.keys().next().value);
  const key = `${base}|${times}`;
  let merged = frameCopies.get(key);
  const first = !merged;
  if (first) {
    merged = { nodes: new Map(), clients: 0, lateness: null, at: null };
    frameCopies.set(key, merged);
    while (frameCopies.size > MAX_COPIES) frameCopies.delete(frameCopies.keys().next().value);
  }
  merged.nodes.set(event.node, { clients: event.clients ?? 0, lateness: event.lateness ?? null, at: event.at ?? null });
  const copies = [...merged.nodes.values()];
  merged.clients = copies.reduce((sum, copy) => sum + copy.clients, 0);
  const late = copies.map((copy) => copy.lateness).filter((value) => typeof value === "number");
  merged.lateness = late.length ? Math.max(...late) : null;
  const ats = copies.map((copy) => copy.at).filter((value) => typeof value === "number");
  merged.at = ats.length ? Math.max(...ats) : null;
  return { merged, first };
}

// "on 2 nodes: a1b2c3d4 2 clients (3 ms late); e5f6a7b8 1 client (1 ms late)".
function perNodeText(merged) {
  const parts = [...merged.nodes].map(([node, copy]) => `${node} ${plural(copy.clients, "client")}` +
    (typeof copy.lateness === "number" ? ` (${Math.round(copy.lateness * 1000)} ms late)` : ""));
  return `on ${plural(merged.nodes.size, "node")}: ${parts.join("; ")}`;
}

// A run's copies, node -> state: from /runs (its `nodes`: each copy by node id) and the
// run events heard since, the later of the two for a node the events tell of.
function runCopies(run) {
  const copies = new Map();
  if (run.nodes && typeof run.nodes === "object" && !Array.isArray(run.nodes)) {
    for (const [node, copy] of Object.entries(run.nodes)) copies.set(node, (copy && copy.state) || "running");
  }
  for (const [node, state] of runNodes.get(run.run_id) || []) {
    // An end heard is news; a start heard is not, once /runs says how the copy ended.
    if (state !== "running" || !copies.has(node)) copies.set(node, state);
  }
  return copies;
}

// A run's copies, in words: "on 2 nodes", "on 2 nodes · 1 still running"; "" outside a
// cluster.
function runNodesText(run) {
  if (!thisNode) return "";
  const copies = runCopies(run);
  if (!copies.size) return "";
  const running = [...copies.values()].filter((state) => state === "running").length;
  const still = running && running < copies.size ? ` · ${running} still running` : "";
  return `on ${plural(copies.size, "node")}${still}`;
}

// A run is finished when every node's copy that started has ended.
function runStillPlays(run) {
  return Boolean(thisNode) && [...runCopies(run).values()].includes("running");
}

// The frames a run sent, as one node's copy counts them (/runs sums `sent` over the copies).
function runSent(run) {
  if (!thisNode || !run.nodes || typeof run.nodes !== "object" || Array.isArray(run.nodes)) return run.sent;
  const counts = Object.values(run.nodes).map((copy) => Number((copy && copy.sent) || 0));
  return counts.length ? Math.max(...counts) : run.sent;
}
