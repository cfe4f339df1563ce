// The Clients panel: who is connected to which endpoint, and their frame counts.
"use strict";

// How many clients are connected (the top bar says it).
let clientTotal = 0;

async function loadClients() {
  const { clients } = await api("GET", "/clients");
  const counts = {};
  for (const cell of document.querySelectorAll("[data-count]")) counts[cell.dataset.count] = 0;
  const rows = clients.map((client) => {
    counts[client.endpoint] = (counts[client.endpoint] || 0) + 1;
    return element("tr", {
      "data-client": client.client_id, "data-endpoint": client.endpoint,
      title: `${client.client_id} on ${client.endpoint} since ${clockTime(client.connected_at)}`,
    },
      element("td", {}, code(client.client_id)),
      element("td", {}, code(client.endpoint)),
      element("td", { text: clockTime(client.connected_at).slice(0, 8) }),
      element("td", { class: "number sent", text: String(client.sent) }),
      element("td", { class: "number received", text: String(client.received) }));
  });
  $("#clients").replaceChildren(...rows);
  $("#no-clients").hidden = clients.length > 0;
  for (const cell of document.querySelectorAll("[data-count]")) {
    cell.textContent = String(counts[cell.dataset.count] || 0);
  }
  for (const cell of document.querySelectorAll("[data-clients]")) {
    cell.textContent = String(counts[cell.dataset.clients] || 0);
  }
  clientTotal = clients.length;
  renderSummary();
}
