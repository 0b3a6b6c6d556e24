// Keeps a product page's market live: the market stream (Server-Sent Events from the
// market service) sends the whole market whenever it changes; each size's row is updated
// in place, and when it reports a sale newer than the chart's newest, the chart is fetched
// again from the storefront and put in its place. Without JavaScript the page shows the
// market as of loading it.
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
    latest = market;
    redraw();
  }

  // The chart: its size ("" for every size) and its newest sale (ms), from its attributes.
  let chart = document.getElementById("sales-chart");
  let latest = null;
  let drawing = false;
  function newestSale(market) {
    let newest = null;
    for (const m of market.sizes) {
      if (!m.lastSale || (chart.dataset.size && sizeText(m.size) !== chart.dataset.size)) continue;
      const at = Date.parse(m.lastSale.soldAt);
      if (newest === null || at > newest) newest = at;
    }
    return newest;
  }
  async function redraw() {
    if (!chart || drawing || !latest) return;
    const newest = newestSale(latest);
    if (newest === null || (chart.dataset.latest !== "" && newest <= Number(chart.dataset.latest))) return;
    drawing = true;
    const before = chart.dataset.latest;
    try {
      const query = chart.dataset.size ? "?size=" + encodeURIComponent(chart.dataset.size) : "";
      const response = await fetch("/products/" + table.dataset.product + "/chart" + query);
      if (!response.ok) return;
      const html = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = html.getElementById("sales-chart");
      if (!fresh) return;
      chart.replaceWith(fresh);
      chart = fresh;
    } catch (_) {
      // The next change of the market tries again.
    } finally {
      drawing = false;
    }
    // A sale reported while fetching (if the chart moved at all: else the next change).
    if (chart.dataset.latest !== before && newestSale(latest) > Number(chart.dataset.latest || 0)) redraw();
  }

  const stream = new EventSource("/api/products/" + table.dataset.product + "/market/stream");
  stream.addEventListener("market", (event) => apply(JSON.parse(event.data)));
  stream.addEventListener("open", () => { live.textContent = "Live: prices update as they change."; });
  stream.addEventListener("error", () => { live.textContent = "Live prices paused; reconnecting\u2026"; });
})();
