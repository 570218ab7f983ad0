// Models: price per million tokens by token class, tier, and share of this month's spend.
import { api } from "../api.js";
import { doughnut, whenAttached } from "../charts.js";
import { colorOf, swatch } from "../colors.js";
import { card, empty, h, table } from "../dom.js";
import { count, percent, unit, usd } from "../format.js";

const price = (value) => (value === null || value === undefined ? h("span", { class: "muted" }, "—") : `$${value}`);

const TIERS = ["premium", "mid", "commodity"];

// Spend by tier: how much of the month goes to premium models.
function tierSummary(data) {
  const rows = TIERS.map((tier) => {
    const models = data.models.filter((m) => m.tier === tier);
    const cost = models.reduce((sum, m) => sum + Number(m.month.cost_usd), 0);
    const share = models.reduce((sum, m) => sum + m.month.share, 0);
    return { tier, cost, share, count: models.length };
  });
  return h("div", { class: "tiers" }, rows.map((r) => h("div", { class: "tier-row" },
    h("span", {}, h("span", { class: `badge tier-${r.tier}` }, r.tier), h("span", { class: "muted small" }, ` ${r.count}`)),
    h("span", { class: "share-bar" }, h("span", { style: { width: `${r.share * 100}%` } })),
    h("span", { class: "num" }, usd(r.cost)),
    h("span", { class: "num muted" }, percent(r.share)))));
}

export async function render() {
  const data = await api("/ui/api/models");
  const spent = data.models.filter((m) => Number(m.month.cost_usd) > 0);
  const canvas = h("canvas", { id: "chart-models", "aria-label": "Share of spend by model" });
  if (spent.length) whenAttached(canvas, () => doughnut(canvas, spent.map((m) => ({ name: m.name, value: Number(m.month.cost_usd) }))));
  const columns = [
    { label: "Model", render: (m) => h("span", { class: "model-name" }, swatch(m.name), h("strong", {}, m.name), h("div", { class: "muted small" }, `${m.upstream} · ${m.upstream_model} · ${m.price_source} price${m.tiered ? " (tiered)" : ""}`)) },
    { label: "Tier", render: (m) => h("span", { class: `badge tier-${m.tier}` }, m.tier) },
    { label: "Input", num: true, render: (m) => price(m.input_per_mtok) },
    { label: "Cached input", num: true, render: (m) => price(m.cached_input_per_mtok) },
    { label: "Cache write", num: true, render: (m) => price(m.cache_write_per_mtok) },
    { label: "Output", num: true, render: (m) => price(m.output_per_mtok) },
    { label: "Spend this month", num: true, render: (m) => usd(m.month.cost_usd) },
    { label: "Share", num: true, render: (m) => h("div", { class: "share" }, h("span", { class: "share-bar" }, h("span", { style: { width: `${m.month.share * 100}%`, background: colorOf(m.name) } })), percent(m.month.share)) },
    { label: "Per 1k tokens", num: true, render: (m) => (m.month.requests ? unit(m.month.cost_per_1k_tokens_usd) : "—") },
    { label: "Requests", num: true, render: (m) => count(m.month.requests) },
  ];
  return h("div", {},
    h("header", { class: "page-head" }, h("h1", {}, "Models"), h("span", { class: "muted small" }, "Prices in USD per million tokens · spend this UTC month")),
    h("div", { class: "grid-1-2" },
      card("Share of spend", spent.length ? h("div", { class: "chart-box" }, canvas)
        : empty("No spend this month", "Once requests are metered, each model's share of the month's spend shows here.")),
      card("This month", h("div", { class: "kpis single" },
        h("div", { class: "kpi" }, h("div", { class: "kpi-label" }, "Spend on models"), h("div", { class: "kpi-value" }, usd(data.month_cost_usd)),
          h("div", { class: "kpi-sub" }, `${data.models.length} models in the catalog${data.retired.length ? `, ${data.retired.length} retired with spend` : ""}`)),
        tierSummary(data)))),
    card("Catalog", data.models.length ? table(columns, data.models)
      : empty("No models configured", "Add models under models: in the gateway config.")));
}
