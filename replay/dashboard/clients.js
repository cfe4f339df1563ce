// The Clients panel: who is connected to which endpoint, and their frame counts. In a
// cluster, a Node column: /clients gives each client's node when it lists the whole
// cluster; the clients of other nodes it does not list are known from the feed (their
// client.connected events, and frame counts from then on).
"use strict";

// How many clients are connected (the top bar says it).
let clientTotal = 0;
// Clients of other nodes heard of on the feed: "endpoint client" -> row.
const feedClients = new Map();
const MAX_FEED_CLIENTS = 5000;

function clientKey(endpoint, client) {
  return `${endpoint} ${client}`;
}

// The feed's events about other nodes' clients (this node's are in /clients).
function clientEvent(event) {
  if (!thisNode || !event.node || event.node === thisNode) return;
  const kind = event.event;
  if (kind === "client.connected") {
    feedClients.set(clientKey(event.endpoint, event.client), {
      client_id: event.client, endpoint: event.endpoint, connected_at: event.time, sent: 0, received: 0, node: event.node,
    });
    while (feedClients.size > MAX_FEED_CLIENTS) feedClients.delete(feedClients.keys().next().value);
  } else if (kind === "client.disconnected") {
    feedClients.delete(clientKey(event.endpoint, event.client));
  } else if (kind === "frame.received") {
    const known = feedClients.get(clientKey(event.endpoint, event.client));
    if (known) known.received += 1;
  } else if (kind === "frame.sent" && event.clients) {
    for (const known of feedClients.values()) {
      if (known.node === event.node && known.endpoint === event.endpoint && (!event.to || event.to === known.client_id)) known.sent += 1;
    }
  }
}

async function loadClients() {
  const { clients } = await api("GET", "/clients");
  const listed = new Set(clients.map((client) => clientKey(client.endpoint, client.client_id)));
  const all = [...clients.map((client) => ({ ...client, node: client.node || thisNode })),
    ...[...feedClients].filter(([key]) => !listed.has(key)).map(([, client]) => client)];
  const counts = {};
  for (const cell of document.querySelectorAll("[data-count]")) counts[cell.dataset.count] = 0;
  const rows = all.map((client) => {
    counts[client.endpoint] = (counts[client.endpoint] || 0) + 1;
    const where = thisNode ? ` on node ${client.node}` : "";
    return element("tr", {
      "data-client": client.client_id, "data-endpoint": client.endpoint, "data-node": client.node || undefined,
      title: `${client.client_id} on ${client.endpoint}${where} since ${clockTime(client.connected_at)}`,
    },
      element("td", {}, code(client.client_id)),
      element("td", {}, code(client.endpoint)),
      element("td", { text: clockTime(client.connected_at).slice(0, 8) }),
      element("td", { class: "number sent", text: String(client.sent) }),
      element("td", { class: "number received", text: String(client.received) }),
      thisNode ? element("td", { class: "node" }, code(client.node || "")) : null);
  });
  $("#clients").replaceChildren(...rows);
  $("#no-clients").hidden = all.length > 0;
  for (const cell of document.querySelectorAll("[data-count]")) {
    cell.textContent = String(counts[cell.dataset.count] || 0);
  }
  for (const cell of document.querySelectorAll("[data-clients]")) {
    cell.textContent = String(counts[cell.dataset.clients] || 0);
  }
  clientTotal = all.length;
  renderSummary();
}
