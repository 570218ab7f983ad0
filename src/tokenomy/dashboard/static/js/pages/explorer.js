// Explorer: spend, tokens or requests over time, grouped and filtered by any dimension,
// with unit economics per group and a CSV download. The state lives in the URL hash.
import { api, query } from "../api.js";
import { formatters, stackedBars, whenAttached } from "../charts.js";
import { swatch } from "../colors.js";
import { card, empty, h, table } from "../dom.js";
import { count, percent, short, unit, usd } from "../format.js";

const RANGES = { "1h": "Last hour", "24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days", month: "This month", "last-month": "Last month", "12m": "Last 12 months" };
const BUCKETS = { "1h": ["minute"], "24h": ["hour", "minute"], "7d": ["day", "hour"], "30d": ["day"], "90d": ["day", "month"], month: ["day"], "last-month": ["day"], "12m": ["month", "day"] };
const METRICS = { cost: "Spend", tokens: "Tokens", requests: "Requests" };
const LABELS = { key_id: "key", tenant: "tenant", user: "user", team: "team", department: "department", project: "project", environment: "environment", workflow: "workflow", model: "model", tier: "tier", upstream: "upstream" };
const FIRST_ROWS = 25;
const OWN = new Set(["range", "bucket", "group_by", "metric"]);

function select(name, options, value, onchange) {
  return h("select", { name, onchange: (e) => onchange(e.target.value), "aria-label": name },
    Object.entries(options).map(([k, label]) => h("option", { value: k, selected: k === value }, label)));
}

function filterForm(state, go) {
  const dimension = select("filter-dimension", LABELS, "team", () => loadValues());
  const list = h("datalist", { id: "filter-values" });
  const value = h("input", { name: "filter-value", list: "filter-values", placeholder: "value", "aria-label": "filter value" });
  async function loadValues() {
    const data = await api(`/ui/api/values${query({ dimension: dimension.value })}`).catch(() => ({ values: [] }));
    list.replaceChildren(...data.values.map((v) => h("option", { value: v })));
  }
  loadValues();
  return h("form", { class: "filter-form", onsubmit: (e) => { e.preventDefault(); if (value.value) go({ ...state, [dimension.value]: value.value }); } },
    dimension, value, list, h("button", { type: "submit", class: "small-button" }, "Add filter"));
}

function unitEconomics(totals) {
  const item = (label, value) => h("div", { class: "kpi small-kpi" }, h("div", { class: "kpi-label" }, label), h("div", { class: "kpi-value" }, value));
  return h("div", { class: "kpis compact" },
    item("Spend", usd(totals.cost_usd)), item("Requests", count(totals.requests)), item("Tokens", short(totals.tokens)),
    item("Cost per request", unit(totals.cost_per_request_usd)), item("Cost per 1k tokens", unit(totals.cost_per_1k_tokens_usd)),
    item("Error rate", totals.requests ? percent(totals.errors / totals.requests) : "—"));
}

// "2026-11-21T08:00" per hour reads "11-21 08:00"; per minute "08:05"; per day "11-21".
function shortLabel(label, bucket) {
  if (bucket === "minute") return label.slice(11);
  if (bucket === "hour") return `${label.slice(5, 10)} ${label.slice(11)}`;
  if (bucket === "day") return label.slice(5);
  return label;
}

// The biggest groups first; the rest on demand (and every group in the CSV).
function groupTable(columns, data) {
  const box = h("div", {});
  const show = (n) => {
    const more = data.rows.length - n;
    box.replaceChildren(h("div", {}, table(columns, data.rows.slice(0, n)),
      more > 0 ? h("button", { type: "button", class: "small-button show-all", onclick: () => show(data.rows.length) }, `Show ${count(more)} more`) : null,
      data.groups > data.rows.length ? h("p", { class: "muted small" }, `${count(data.groups - data.rows.length)} smaller groups are in the CSV.`) : null));
  };
  show(FIRST_ROWS);
  return box;
}

export async function render(params, { navigate }) {
  const state = { range: "30d", metric: "cost", group_by: "team", ...params };
  if (!BUCKETS[state.range]) state.range = "30d";
  if (!BUCKETS[state.range].includes(state.bucket)) state.bucket = BUCKETS[state.range][0];
  const filters = Object.fromEntries(Object.entries(state).filter(([k]) => !OWN.has(k)));
  const go = (next) => navigate("explorer", next);
  const data = await api(`/ui/api/explorer${query({ range: state.range, bucket: state.bucket, group_by: state.group_by === "none" ? "" : state.group_by, ...filters })}`);
  const groupBy = data.group_by;
  const controls = h("div", { class: "controls" },
    select("range", RANGES, state.range, (v) => go({ ...state, range: v, bucket: "" })),
    select("bucket", Object.fromEntries(BUCKETS[state.range].map((b) => [b, `per ${b}`])), state.bucket, (v) => go({ ...state, bucket: v })),
    select("group_by", { none: "no grouping", ...Object.fromEntries(Object.entries(LABELS).map(([k, v]) => [k, `by ${v}`])) }, state.group_by, (v) => go({ ...state, group_by: v })),
    h("div", { class: "segmented", role: "group" }, Object.entries(METRICS).map(([k, label]) =>
      h("button", { type: "button", class: k === state.metric ? "on" : "", onclick: () => go({ ...state, metric: k }) }, label))),
    h("a", { class: "button small-button", id: "csv-link", download: "", href: `/ui/api/explorer.csv${query({ range: state.range, bucket: state.bucket, group_by: groupBy || "", ...filters })}` }, "Download CSV"));
  const chips = h("div", { class: "chips filters" }, Object.entries(filters).map(([k, v]) => h("span", { class: "chip chip-filter" }, `${LABELS[k] || k} = ${v}`,
    h("button", { type: "button", class: "chip-x", "aria-label": `remove ${k} filter`, onclick: () => { const next = { ...state }; delete next[k]; go(next); } }, "×"))), filterForm(state, go));
  const hasData = data.totals.requests > 0;
  const canvas = h("canvas", { id: "chart-explorer", "aria-label": `${METRICS[state.metric]} over time` });
  const series = data.series.map((s) => ({ name: s.name, values: s[state.metric] }));
  const axis = data.labels.map((label) => shortLabel(label, data.window.bucket));
  if (hasData) whenAttached(canvas, () => stackedBars(canvas, axis, series, state.metric));
  const format = formatters[state.metric];
  const columns = [
    ...(groupBy ? [{ label: LABELS[groupBy] || groupBy, render: (r) => h("span", {}, swatch(r[groupBy] || "(none)"), r[groupBy] || "(none)") }] : []),
    { label: "Requests", num: true, render: (r) => count(r.requests) },
    { label: "Tokens", num: true, render: (r) => short(r.tokens) },
    { label: "Spend", num: true, render: (r) => usd(r.cost_usd) },
    { label: "Share", num: true, render: (r) => percent(r.share) },
    { label: "Per request", num: true, render: (r) => unit(r.cost_per_request_usd) },
    { label: "Per 1k tokens", num: true, render: (r) => unit(r.cost_per_1k_tokens_usd) },
    { label: "Avg latency", num: true, render: (r) => `${Math.round(r.avg_latency_ms)} ms` },
    { label: "Errors", num: true, render: (r) => count(r.errors) },
  ];
  const emptyState = empty("Nothing in this window", Object.keys(filters).length
    ? "No requests match these filters in this window. Remove a filter or widen the range."
    : "No requests were recorded in this window. Pick a longer range, or send traffic through the gateway.");
  return h("div", {},
    h("header", { class: "page-head" }, h("h1", {}, "Explorer"), h("span", { class: "muted small" }, `${RANGES[state.range]} · UTC · per ${state.bucket}`)),
    controls, chips,
    hasData ? unitEconomics(data.totals) : null,
    card(`${METRICS[state.metric]} ${groupBy ? `by ${LABELS[groupBy]}` : ""} over time`, hasData ? h("div", { class: "chart-box tall" }, canvas) : emptyState,
      { actions: hasData ? h("span", { class: "muted small" }, `total ${format(series.reduce((a, s) => a + s.values.reduce((x, y) => x + y, 0), 0))}`) : null }),
    hasData ? card(groupBy ? `Unit economics by ${LABELS[groupBy]}` : "Unit economics", groupTable(columns, data),
      { actions: h("span", { class: "muted small" }, `${count(data.groups)} ${data.groups === 1 ? "group" : "groups"}`) }) : null);
}
