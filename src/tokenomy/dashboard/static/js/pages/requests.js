// Requests: the latest requests with cost and route reason, filterable, arriving live.
import { api, query } from "../api.js";
import { swatch } from "../colors.js";
import { card, empty, h, table } from "../dom.js";
import { count, time, usd } from "../format.js";

const FILTERS = ["team", "user", "department", "project", "environment", "workflow", "model", "requested_model", "tier", "route_reason", "status", "key_id"];
let active = null;

const columns = (storeContent) => [
  { label: "Time", render: (r) => h("span", { title: new Date(r.ts_ms).toISOString() }, time(r.ts_ms)) },
  { label: "Request", render: (r) => h("code", { class: "small" }, r.id) },
  { label: "Who", render: (r) => h("span", {}, swatch(r.team || r.user || "-"), r.user || "—", h("div", { class: "muted small" }, [r.team, r.department].filter(Boolean).join(" · "))) },
  { label: "Workflow", render: (r) => r.workflow || h("span", { class: "muted" }, "—") },
  { label: "Model", render: (r) => h("span", {}, r.model, r.requested_model && r.requested_model !== r.model ? h("div", { class: "muted small" }, `asked ${r.requested_model}`) : null) },
  { label: "Route", render: (r) => h("span", { class: r.route_reason === "requested" ? "muted small" : "badge" }, r.route_reason) },
  { label: "Tokens in / out", num: true, render: (r) => `${count(r.input_tokens)} / ${count(r.output_tokens)}` },
  { label: "Cost", num: true, render: (r) => h("span", { title: `$${r.cost_usd}` }, usd(r.cost_usd)) },
  { label: "Latency", num: true, render: (r) => `${Math.round(r.latency_ms)} ms` },
  { label: "Status", num: true, render: (r) => h("span", { class: r.status >= 400 ? "badge badge-danger" : "muted" }, r.status) },
  ...(storeContent ? [{ label: "Prompt", render: (r) => (r.prompt ? h("details", {}, h("summary", {}, "show"), h("pre", {}, r.prompt), r.completion ? h("pre", {}, r.completion) : null) : "—") }] : []),
];

function matches(event, filters) {
  return Object.entries(filters).every(([k, v]) => k === "limit" || String(event[k]) === v);
}

export async function render(params, { navigate }) {
  const filters = { ...params };
  const data = await api(`/ui/api/requests${query({ limit: 100, ...filters })}`);
  const dimension = h("select", { name: "filter-dimension", "aria-label": "filter dimension" }, FILTERS.map((f) => h("option", { value: f }, f)));
  const value = h("input", { name: "filter-value", placeholder: "value", "aria-label": "filter value" });
  const form = h("form", { class: "filter-form", onsubmit: (e) => { e.preventDefault(); if (value.value) navigate("requests", { ...filters, [dimension.value]: value.value }); } },
    dimension, value, h("button", { type: "submit", class: "small-button" }, "Add filter"));
  const chips = h("div", { class: "chips filters" }, Object.entries(filters).map(([k, v]) => h("span", { class: "chip chip-filter" }, `${k} = ${v}`,
    h("button", { type: "button", class: "chip-x", onclick: () => { const next = { ...filters }; delete next[k]; navigate("requests", next); } }, "×"))), form);
  const cols = columns(data.store_content);
  const body = h("div", { id: "requests-table" }, data.rows.length ? table(cols, data.rows, { rowAttrs: (r) => ({ dataset: { id: r.id } }) })
    : empty("No requests yet", Object.keys(filters).length ? "No recorded request matches these filters." : "Requests appear here as they pass through the gateway."));
  active = { filters, cols, rows: data.rows, body };
  const note = data.store_content ? "Prompts and completions are stored by this deployment." : "Prompt and completion text are not stored (ledger.store_content is off).";
  return h("div", {},
    h("header", { class: "page-head" }, h("h1", {}, "Requests"), h("span", { class: "muted small" }, `Latest ${data.limit} · live · ${note}`)),
    chips, card(null, body));
}

export function live(events) {
  if (!active || !active.body.isConnected) return;
  const fresh = events.filter((e) => matches(e, active.filters)).reverse();
  if (!fresh.length) return;
  active.rows = [...fresh, ...active.rows].slice(0, 100);
  active.body.replaceChildren(table(active.cols, active.rows, { rowAttrs: (r) => ({ dataset: { id: r.id } }) }));
}
