// Overview: spend today / this month / in all, budgets, the month by day and team, top
// spenders, savings, the forecast slot, and requests arriving live.
import { api } from "../api.js";
import { destroyIn, stackedBars, whenAttached } from "../charts.js";
import { colorOf, swatch } from "../colors.js";
import { card, empty, h } from "../dom.js";
import { count, day, limit, time, usd } from "../format.js";
import { budgetBar } from "./budgets.js";

const FEED_SIZE = 12;
const REFRESH_MS = 2000;
let recent = [];
let root = null;
let refreshTimer = null;

function kpi(id, label, value, sub, exact) {
  return h("div", { class: "kpi", id },
    h("div", { class: "kpi-label" }, label),
    h("div", { class: "kpi-value", title: exact ? `$${exact}` : null, dataset: exact !== undefined ? { usd: exact } : {} }, value),
    h("div", { class: "kpi-sub" }, sub));
}

function forecastKpi(forecast) {
  if (!forecast) {
    return kpi("kpi-forecast", "Forecast to month end", "—", "Not enough history yet to project this month.");
  }
  const range = forecast.low_usd && forecast.high_usd ? `${usd(forecast.low_usd)} – ${usd(forecast.high_usd)}` : forecast.basis || "";
  return kpi("kpi-forecast", "Forecast to month end", usd(forecast.period_end_usd), range, forecast.period_end_usd);
}

function topList(title, rows) {
  const most = Math.max(...rows.map((r) => Number(r.cost_usd)), 0) || 1;
  const body = rows.length
    ? h("ol", { class: "toplist" }, rows.map((r) => h("li", {},
        h("span", { class: "toplist-name" }, swatch(r.name), r.name),
        h("span", { class: "toplist-bar" }, h("span", { style: { width: `${Math.max((Number(r.cost_usd) / most) * 100, 1)}%`, background: colorOf(r.name) } })),
        h("span", { class: "num", title: `${(r.share * 100).toFixed(1)}% of the month` }, usd(r.cost_usd)))))
    : h("p", { class: "muted small" }, "No spend this month.");
  return h("div", { class: "top-block" }, h("h3", {}, title), body);
}

function feedItem(event) {
  const who = event.user || event.team || "unattributed";
  return h("li", { class: event.status >= 400 ? "feed-error" : "", dataset: { id: event.id } },
    h("span", { class: "feed-who" }, swatch(event.team || who), h("strong", {}, who),
      event.team && event.user ? h("span", { class: "muted" }, `· ${event.team}`) : null),
    h("span", { class: "num" }, usd(event.cost_usd)),
    h("span", { class: "feed-line" }, h("span", { class: "feed-time" }, time(event.ts_ms)), event.model,
      event.workflow ? `· ${event.workflow}` : null,
      event.route_reason !== "requested" ? h("span", { class: "badge" }, event.route_reason) : null,
      event.status >= 400 ? h("span", { class: "badge badge-danger" }, event.status) : null),
    h("span", { class: "feed-id" }, event.id));
}

function feedCard() {
  const body = recent.length
    ? h("ol", { class: "feed", id: "live-feed" }, recent.map(feedItem))
    : h("div", { id: "live-feed" }, empty("Waiting for requests", "Each request through the gateway appears here the moment it is recorded, with its cost."));
  return card("Live requests", body, { id: "feed-card" });
}

function view(data) {
  const chartData = data.month_chart;
  const hasSpend = data.all_time.requests > 0;
  const kpis = h("div", { class: "kpis" },
    kpi("kpi-today", "Spend today", usd(data.today.cost_usd), `${count(data.today.requests)} requests · UTC day`, data.today.cost_usd),
    kpi("kpi-month", "This month", usd(data.month.cost_usd), `${count(data.month.requests)} requests · ${day(data.month.window.from)} – now`, data.month.cost_usd),
    kpi("total-spend", "Total spend", usd(data.all_time.cost_usd), `${count(data.all_time.requests)} requests recorded`, data.all_time.cost_usd),
    forecastKpi(data.forecast));
  const canvas = h("canvas", { id: "chart-month", "aria-label": "Spend this month by day and team" });
  const chart = card("Spend this month by day and team",
    hasSpend ? h("div", { class: "chart-box" }, canvas)
      : empty("No spend recorded yet", "Point an OpenAI SDK at this gateway's /v1 with a tokenomy key; spend appears here as requests are metered.",
        'client = OpenAI(base_url="http://<gateway>/v1", api_key="tk-...")'));
  const budgetsCard = card("Budgets", data.budgets.length
    ? h("div", { class: "budget-mini" }, data.budgets.slice(0, 6).map((b) => h("div", { class: "budget-mini-row" },
        h("div", { class: "budget-mini-head" }, h("a", { href: "#/budgets" }, b.name),
          h("span", { class: "muted small" }, `${usd(b.spent_usd)} of ${limit(b.limit_usd)} · ${b.period}`)),
        budgetBar(b),
        h("div", { class: "muted small" }, b.forecast && b.forecast.exhausts_at ? `Runs out ${day(b.forecast.exhausts_at)} at this rate` : `Resets ${day(b.resets_at)}`))))
    : empty("No budgets yet", "A budget caps spend for a team, user or project, and acts at thresholds: alert, downgrade, defer, block.",
      "tokenomy budgets set support-month --scope team=support --limit 100.00 --threshold 0.8:alert:https://hooks.example/b --threshold 1.0:block"),
  { actions: h("a", { href: "#/budgets", class: "small" }, "All budgets →") });
  const top = card("Top spenders this month", h("div", { class: "top-grid" },
    topList("Teams", data.top.team), topList("Users", data.top.user),
    topList("Models", data.top.model), topList("Workflows", data.top.workflow)));
  const savings = card(`Savings: ${usd(data.savings.total_usd)}`, h("div", { class: "savings" },
    data.savings.slots.map((s) => h("div", { class: "saving" },
      h("div", { class: "saving-head" }, h("span", {}, s.label), h("strong", { class: "num" }, usd(s.usd))),
      h("p", { class: "muted small" }, s.explanation)))));
  const node = h("div", { class: "overview" },
    h("header", { class: "page-head" }, h("h1", {}, "Overview"),
      h("span", { class: "muted small" }, `Updated ${time(data.generated_at_ms)} · all figures in USD`)),
    kpis,
    h("div", { class: "grid-2-1" }, chart, budgetsCard),
    h("div", { class: "grid-2-1" }, top, feedCard()),
    savings);
  if (hasSpend) whenAttached(canvas, () => stackedBars(canvas, chartData.labels.map((l) => l.slice(5)), chartData.datasets));
  return node;
}

export async function render() {
  recent = recent.slice(0, FEED_SIZE);
  const data = await api("/ui/api/overview");
  root = h("div", {}, view(data));
  return root;
}

async function refresh() {
  refreshTimer = null;
  if (!root || !root.isConnected) return;
  const data = await api("/ui/api/overview");
  if (!root.isConnected) return;
  destroyIn(root);
  root.replaceChildren(view(data));
}

export function live(events) {
  recent = [...events.slice().reverse(), ...recent].slice(0, FEED_SIZE);
  const list = document.getElementById("feed-card");
  if (list) list.replaceWith(feedCard());
  if (!refreshTimer) refreshTimer = setTimeout(() => refresh().catch(() => {}), REFRESH_MS);
}
