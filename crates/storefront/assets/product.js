// Keeps a product page's market live: the market stream (Server-Sent Events from the
// market service) sends the whole market whenever it changes; each size's row is updated
// in place. Without JavaScript the page shows the market as of loading it.
"use strict";
(function () {
  const table = document.getElementById("market");
  if (!table || !window.EventSource) return;
  const live = document.getElementById("market-live");
  const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
  const text = (amount) => (amount === null || amount === undefined ? "\u2014" : money.format(amount));
  const sizeText = (size) => String(size);

  function apply(market) {
    for (const m of market.sizes) {
      const row = table.querySelector('tr[data-size="' + sizeText(m.size) + '"]');
      if (!row) continue;
      const set = (field, value) => {
        const cell = row.querySelector('[data-field="' + field + '"]');
        if (cell && cell.textContent !== value) cell.textContent = value;
      };
      set("ask", text(m.lowestAsk));
      set("bid", text(m.highestBid));
      set("last", text(m.lastSale ? m.lastSale.price : null));
      set("asks", String(m.asks));
      set("bids", String(m.bids));
      row.querySelector('[data-field="askId"]').value = m.lowestAskId || "";
      row.querySelector('[data-action="buy"]').disabled = !m.lowestAskId;
      row.querySelector('[data-field="bidAmount"]').value = m.highestBid === null ? "" : m.highestBid.toFixed(2);
      row.querySelector('[data-action="sell"]').disabled = m.highestBid === null;
    }
    live.textContent = "Live: updated " + new Date().toLocaleTimeString();
  }

  const stream = new EventSource("/api/products/" + table.dataset.product + "/market/stream");
  stream.addEventListener("market", (event) => apply(JSON.parse(event.data)));
  stream.addEventListener("open", () => { live.textContent = "Live: prices update as they change."; });
  stream.addEventListener("error", () => { live.textContent = "Live prices paused; reconnecting\u2026"; });
})();
