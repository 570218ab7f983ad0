// Planner: capacity, rent-or-buy, allocation and what-if calculators. Every figure comes
// from /ui/api/planner/... (the planning modules `tokenomy plan` runs); this page only
// collects the inputs and draws the answers.
import { api, LoginRequired } from "../api.js";
import { destroyIn, doughnut, lines, stackedBars, whenAttached } from "../charts.js";
import { swatch } from "../colors.js";
import { card, empty, h, table } from "../dom.js";
import { count, percent, short, unit, usd } from "../format.js";

const TABS = { capacity: "Capacity", tco: "Rent or buy", allocate: "Allocation", whatif: "What-if" };
const HINTS = {
  switch: "team=support:gpt-4o-mini",
  price: "gpt-4o:2.5:10 (model:in:out per Mtok)",
  cache: "0.3 (share served by cache)",
  route: "0.4:gpt-4o-mini (share:cheaper model)",
  growth: "2 (volume factor)",
};
const ms = (value) => `${Number(value).toFixed(1)} ms`;
const fixed = (digits) => (value) => Number(value).toFixed(digits);
const volume = (mtok) => (mtok >= 1 ? `${short(mtok)} Mtok` : `${count(mtok * 1e6)} tokens`);

// -- form helpers --------------------------------------------------------------------------

function field(label, input, hint) {
  return h("label", { class: "field" }, h("span", { class: "field-label" }, label), input,
    hint ? h("span", { class: "field-hint" }, hint) : null);
}

function input(name, value = "", attrs = {}) {
  return h("input", { name, value: value ?? "", inputmode: "decimal", autocomplete: "off", ...attrs });
}

function choice(name, options, value) {
  return h("select", { name },
    options.map(([key, label]) => h("option", { value: key, selected: key === value }, label)));
}

// The form's fields as strings; empty ones are left out (the server's defaults apply).
function values(form) {
  const out = {};
  for (const [key, value] of new FormData(form).entries()) {
    const text = String(value).trim();
    if (text !== "") out[key] = text;
  }
  return out;
}

function kpi(id, label, shown, raw, sub) {
  return h("div", { class: "kpi small-kpi", id, dataset: { value: raw === null || raw === undefined ? "" : String(raw) } },
    h("div", { class: "kpi-label" }, label),
    h("div", { class: "kpi-value" }, shown),
    sub ? h("div", { class: "kpi-sub" }, sub) : null);
}

// A calculator: a form card on the left, its answer on the right (and below).
function calculator({ id, title, form, submitLabel, url, body, view, autorun, wide }) {
  const out = h("div", { class: "planner-out", id: `${id}-out` });
  const run = async (event) => {
    if (event) event.preventDefault();
    destroyIn(out);
    out.replaceChildren(h("div", { class: "loading" }, "Calculating…"));
    try {
      const data = await api(url, { method: "POST", body: body(form) });
      destroyIn(out);
      out.replaceChildren(view(data));
    } catch (error) {
      if (error instanceof LoginRequired) throw error;
      out.replaceChildren(card(null, h("p", { class: "error", role: "alert", id: `${id}-error` }, error.message)));
    }
  };
  form.classList.add("planner-form");
  form.id = `${id}-form`;
  form.addEventListener("submit", run);
  form.append(h("div", { class: "form-actions" }, h("button", { type: "submit", class: "primary" }, submitLabel)));
  if (autorun) {
    let tries = 0;
    const start = () => {
      if (form.isConnected) run().catch(() => {});
      else if ((tries += 1) < 120) requestAnimationFrame(start);
    };
    requestAnimationFrame(start);
  }
  // A wide form (a table of lines) sits above its answer; the others beside it.
  return h("div", { class: wide ? "planner planner-wide" : "grid-1-2 planner" }, card(title, form), out);
}

// -- capacity ------------------------------------------------------------------------------

function capacityTab(setup) {
  const gpuPrice = Object.fromEntries(setup.gpus.map((g) => [g.name, g.hour_usd]));
  const precisions = setup.precisions.map((p) => [p, p]);
  const gpu = choice("gpu", setup.gpus.map((g) => [g.name, `${g.name} · ${g.memory_gb} GB`]), "h100-sxm");
  const hour = input("gpu_hour_usd", gpuPrice["h100-sxm"]);
  gpu.addEventListener("change", () => { hour.value = gpuPrice[gpu.value] || ""; });
  const form = h("form", {},
    h("div", { class: "fields" },
      field("Model", choice("model", setup.models.map((m) => [m.name, m.name]), "llama-3.1-70b")),
      field("GPU", gpu),
      field("GPUs", input("gpus", "8", { inputmode: "numeric" })),
      field("Weights", choice("weights", precisions, "fp8")),
      field("KV cache", choice("kv_cache", [["", "auto"], ...precisions], "")),
      field("Tensor parallel", input("tp", "", { placeholder: "fastest", inputmode: "numeric" })),
      field("Input tokens", input("isl", "1024", { inputmode: "numeric" })),
      field("Output tokens", input("osl", "256", { inputmode: "numeric" })),
      field("Concurrency", input("concurrency", "", { placeholder: "max throughput", inputmode: "numeric" }), "requests in flight"),
      field("Max TPOT", input("max_tpot_ms", "", { placeholder: "ms" })),
      field("Max TTFT", input("max_ttft_ms", "", { placeholder: "ms" })),
      field("GPU-hour $", hour),
      field("Utilization", input("utilization", "1"), "share of capacity used"),
      field("Traffic", input("traffic", "", { placeholder: "output tokens/s" }), "→ GPUs needed")));
  return calculator({
    id: "capacity", title: "Model on GPUs", form, submitLabel: "Calculate", url: "/ui/api/planner/capacity",
    body: values, view: capacityView, autorun: true,
  });
}

function capacityView(data) {
  const r = data.report;
  const canvas = h("canvas", { id: "chart-capacity", "aria-label": "Throughput and TPOT over concurrency" });
  const points = (key) => data.sweep.map((p) => ({ x: p.concurrency, y: p[key] }));
  whenAttached(canvas, () => lines(canvas, [
    { label: "Output tokens/s", points: points("output_tokens_per_s"), color: "#4f46e5" },
    { label: "TPOT (ms)", points: points("tpot_ms"), axis: "y2", color: "#f28e2b" },
    { label: "This operating point", points: [{ x: data.operating_concurrency, y: r.output_tokens_per_s }], marker: true, color: "#16a34a" },
  ], {
    x: { title: "Concurrent requests", log: true, format: count },
    y: { title: "Output tokens/s", format: short },
    y2: { title: "TPOT ms", format: fixed(0) },
  }));
  const detail = [
    ["Layout", `${r.tp}-way tensor parallel × ${r.replicas} replica${r.replicas === 1 ? "" : "s"}`],
    ["Batch per replica", `${count(r.batch_per_replica)} of ${count(r.max_batch_per_replica)} that fit`],
    ["All tokens/s (with prompts)", count(r.total_tokens_per_s)],
    ["Requests/s", fixed(2)(r.requests_per_s)],
    ["Weights per GPU", `${fixed(1)(r.weights_gb_per_gpu)} GB (${r.weights}, KV cache ${r.kv_cache})`],
    ["KV cache per token", `${count(r.kv_bytes_per_token)} bytes`],
  ];
  if (r.usd_per_mtok_all_tokens !== undefined) detail.push(["$ per Mtok, all tokens", unit(r.usd_per_mtok_all_tokens)]);
  return h("div", {},
    h("div", { class: "kpis compact" },
      kpi("cap-output_tokens_per_s", "Output tokens/s", count(r.output_tokens_per_s), r.output_tokens_per_s, `${r.gpus} × ${r.gpu}`),
      kpi("cap-ttft_ms", "TTFT", ms(r.ttft_ms), r.ttft_ms, "time to first token"),
      kpi("cap-tpot_ms", "TPOT", ms(r.tpot_ms), r.tpot_ms, "time per output token"),
      kpi("cap-max_batch", "Max batch", count(r.max_batch), r.max_batch, "requests the KV cache holds"),
      r.usd_per_mtok !== undefined ? kpi("cap-usd_per_mtok", "$ / Mtok out", unit(r.usd_per_mtok), r.usd_per_mtok, `at ${unit(r.gpu_hour_usd)}/GPU-h`) : null,
      kpi("cap-energy_kwh_per_mtok", "Energy / Mtok", `${fixed(2)(r.energy_kwh_per_mtok)} kWh`, r.energy_kwh_per_mtok, "output tokens"),
      r.gpus_needed !== undefined ? kpi("cap-gpus_needed", "GPUs needed", count(r.gpus_needed), r.gpus_needed, `for ${short(r.traffic_output_tokens_per_s)} tokens/s`) : null),
    card("Throughput and time per token over concurrency", h("div", { class: "chart-box" }, canvas),
      { actions: h("span", { class: "muted small" }, "roofline model, calibrated on MLPerf v4.1") }),
    card("Operating point", table([
      { label: "Figure", render: (row) => row[0] },
      { label: "Value", num: true, render: (row) => row[1] },
    ], detail)));
}

// -- rent or buy ---------------------------------------------------------------------------

function tcoTab(setup) {
  const ledger = setup.ledger;
  const form = h("form", {},
    h("div", { class: "fields" },
      field("Model", choice("model", setup.models.map((m) => [m.name, m.name]), "llama-3.1-70b")),
      field("GPU", choice("gpu", setup.gpus.map((g) => [g.name, g.name]), "h100-sxm")),
      field("GPUs", input("gpus", "8", { inputmode: "numeric" })),
      field("Weights", choice("weights", setup.precisions.map((p) => [p, p]), "fp8")),
      field("Input tokens", input("isl", "1024", { inputmode: "numeric" })),
      field("Output tokens", input("osl", "256", { inputmode: "numeric" })),
      field("Tokens/s", input("tokens_per_s", "", { placeholder: "predicted" }), "whole deployment"),
      field("Utilization", input("utilization", "0.6")),
      field("GPU-hour $ (rent)", input("gpu_hour_usd", "", { placeholder: "catalog" })),
      field("GPU price $ (buy)", input("gpu_price_usd", "", { placeholder: "catalog" })),
      field("Depreciation", input("depreciation_months", "36", { inputmode: "numeric" }), "months"),
      field("Electricity $/kWh", input("kwh_usd", "0.10")),
      field("PUE", input("pue", "1.3")),
      field("Operations $/month", input("ops_usd_per_month", "0")),
      field("API $/Mtok", input("api_usd_per_mtok", "", { placeholder: ledger ? ledger.usd_per_mtok : "required" }), ledger ? "blank: the ledger's blended price" : "the ledger is empty"),
      field("API volume Mtok/month", input("monthly_mtok", "", { placeholder: ledger ? fixed(3)(ledger.monthly_mtok) : "required" }), ledger ? "blank: the ledger's last 30 days" : null)));
  return calculator({
    id: "tco", title: "Self-hosting against the API", form, submitLabel: "Compare", url: "/ui/api/planner/tco",
    body: values, view: tcoView, autorun: Boolean(ledger),
  });
}

function tcoView(data) {
  const { rent, buy, api: apiSide, timeline } = data;
  const canvas = h("canvas", { id: "chart-tco", "aria-label": "Cumulative cost by month" });
  const series = (key) => timeline.months.map((m, i) => ({ x: m, y: Number(timeline.cumulative_usd[key][i]) }));
  const datasets = [{ label: "API", points: series("api"), color: "#71717a", dashed: true }];
  if (rent) datasets.push({ label: "Rent", points: series("rent"), color: "#f28e2b" });
  if (buy) datasets.push({ label: "Buy", points: series("buy"), color: "#4f46e5" });
  if (data.payback) datasets.push({ label: "Buying pays back", points: [{ x: data.payback.months, y: Number(data.payback.usd) }], marker: true, color: "#16a34a" });
  whenAttached(canvas, () => lines(canvas, datasets, {
    x: { title: "Months", format: count, min: 0, max: timeline.months[timeline.months.length - 1] },
    y: { title: "Cumulative cost", format: (v) => `$${short(v)}`, tip: usd },
  }));
  const source = apiSide.from_ledger ? `ledger, last ${apiSide.ledger.days} days` : "as given";
  const figures = [
    ["Capital", "capex_usd", usd], ["Power per month", "power_usd_per_month", usd],
    ["Cash per month", "cash_usd_per_month", usd], ["Cost per month (with depreciation)", "cost_usd_per_month", usd],
    ["Cost per Mtok served", "self_hosted_usd_per_mtok", unit], ["Capacity Mtok per month", "capacity_mtok_per_month", short],
    ["Deployments for the API volume", "deployments_needed", count], ["Break-even Mtok per month", "break_even_mtok_per_month", short],
    ["Saving per month against the API", "monthly_saving_usd", usd],
    ["Payback", "payback_months", (v) => (v === null ? "—" : `${fixed(1)(v)} months`)],
  ];
  return h("div", {},
    h("div", { class: "kpis compact" },
      kpi("tco-api", "API spend / month", usd(apiSide.usd_per_month), apiSide.usd_per_month, `${unit(apiSide.usd_per_mtok)}/Mtok × ${volume(apiSide.monthly_mtok)} a month (${source})`),
      rent ? kpi("tco-rent", "Rent / month", usd(rent.cost_usd_per_month), rent.cost_usd_per_month, `${unit(rent.self_hosted_usd_per_mtok)}/Mtok served`) : null,
      buy ? kpi("tco-buy", "Buy / month", usd(buy.cost_usd_per_month), buy.cost_usd_per_month, `${unit(buy.self_hosted_usd_per_mtok)}/Mtok · capex ${usd(buy.capex_usd)}`) : null,
      buy ? kpi("tco-payback", "Buying pays back", buy.payback_months === null ? "never" : `${fixed(1)(buy.payback_months)} mo`, buy.payback_months, buy.payback_note) : null,
      buy ? kpi("tco-break-even", "Break-even (buy)", `${short(buy.break_even_mtok_per_month)} Mtok`, buy.break_even_mtok_per_month, "per month, at the API price") : null),
    card("Cumulative cost: API, renting and buying", h("div", { class: "chart-box" }, canvas),
      { actions: h("span", { class: "muted small" }, `${count(data.tokens_per_s)} tokens/s (${data.throughput_from})`) }),
    card("Rent or buy", h("div", {}, table([
      { label: "Figure", render: (row) => row[0] },
      { label: "Rent", num: true, render: (row) => (rent ? row[2](rent[row[1]]) : "no price") },
      { label: "Buy", num: true, render: (row) => (buy ? row[2](buy[row[1]]) : "no price") },
    ], figures, { class: "figures" }),
    h("p", { class: "muted small", id: "tco-notes" }, [buy ? `Buying: ${buy.payback_note}.` : "", rent ? ` Renting: ${rent.payback_note}.` : ""].join("")))));
}

// -- allocation ----------------------------------------------------------------------------

const LINE_FIELDS = [
  ["name", "Department", "text"], ["environment", "Env", "env"], ["usd_per_mtok", "$ / Mtok"],
  ["value_per_mtok", "Weight"], ["min_usd", "Min $"], ["max_usd", "Max $"], ["demand_mtok", "Demand Mtok"],
];

const PLACEHOLDERS = { value_per_mtok: "1", min_usd: "0", max_usd: "none", demand_mtok: "no cap" };

function startingLines(setup) {
  if (setup.departments.length) {
    return setup.departments.map((d) => ({
      name: d.department, usd_per_mtok: d.usd_per_mtok, value_per_mtok: "1", demand_mtok: fixed(3)(d.monthly_mtok),
    }));
  }
  return [
    { name: "support", usd_per_mtok: "2.50", value_per_mtok: "3", min_usd: "200" },
    { name: "research", usd_per_mtok: "10", value_per_mtok: "8", max_usd: "600" },
    { name: "marketing", usd_per_mtok: "1.20", value_per_mtok: "1" },
  ];
}

function lineRow(line, index, onRemove) {
  return h("tr", { dataset: { row: String(index) } },
    LINE_FIELDS.map(([key, label, kind]) => h("td", {}, kind === "env"
      ? choice(key, [["prod", "prod"], ["dev", "dev"]], line[key] || "prod")
      : input(key, line[key] || "", { "aria-label": label, inputmode: kind === "text" ? "text" : "decimal", class: `cell-${key}`, placeholder: PLACEHOLDERS[key] || "" }))),
    h("td", {}, h("button", { type: "button", class: "small-button", "aria-label": "remove", onclick: onRemove }, "×")));
}

function allocateTab(setup) {
  const body = h("tbody", {});
  const addRow = (line) => {
    const row = lineRow(line, body.children.length, () => row.remove());
    body.append(row);
  };
  startingLines(setup).forEach(addRow);
  const spent = setup.departments.reduce((sum, d) => sum + Number(d.cost_usd), 0);
  const total = spent > 0 ? String(Math.ceil(spent * 1.2 * 100) / 100) : "1000";
  const form = h("form", {},
    h("div", { class: "fields" },
      field("Monthly total $", input("total_usd", total, { id: "alloc-total" })),
      field("Max dev share", input("dev_max_share", "", { placeholder: "e.g. 0.3" })),
      field("Min prod share", input("prod_min_share", "", { placeholder: "e.g. 0.6" }))),
    h("div", { class: "table-wrap lines-editor" }, h("table", {},
      h("thead", {}, h("tr", {}, LINE_FIELDS.map(([, label]) => h("th", {}, label)), h("th", {}, ""))), body)),
    h("p", { class: "muted small" }, "Weight: value per million tokens. Demand caps a line at its forecast (type ",
      h("code", {}, "forecast"), " for the ledger's run rate, ", h("code", {}, "ledger"), " in $ / Mtok for its blended price)."),
    h("button", { type: "button", class: "small-button", id: "alloc-add", onclick: () => addRow({ value_per_mtok: "1" }) }, "Add department"));
  const collect = (f) => {
    const top = values(f);
    const plan = { total_usd: top.total_usd };
    for (const key of ["dev_max_share", "prod_min_share"]) if (top[key] !== undefined) plan[key] = top[key];
    plan.lines = [...body.querySelectorAll("tr")].map((tr) => {
      const line = {};
      for (const [key] of LINE_FIELDS) {
        const text = tr.querySelector(`[name="${key}"]`).value.trim();
        if (text !== "") line[key] = text;
      }
      if (line.name) line.department = line.name;
      return line;
    });
    return plan;
  };
  return calculator({
    id: "alloc", title: "Split the monthly budget", form, submitLabel: "Allocate", url: "/ui/api/planner/allocate",
    body: collect, view: allocationView, autorun: true, wide: true,
  });
}

function allocationView(data) {
  if (data.status === "infeasible") {
    return card("No allocation meets every constraint", h("div", { id: "alloc-conflict", class: "conflict" },
      h("p", { class: "error" }, data.explanation),
      h("div", { class: "chips" }, h("span", { class: "muted small" }, "Conflicting:"),
        data.conflicting_constraints.map((name) => h("span", { class: "chip chip-conflict", dataset: { constraint: name } }, name))),
      h("p", { class: "muted small" }, "Relax one of them (lower a minimum, raise the total or a maximum) and allocate again.")));
  }
  const canvas = h("canvas", { id: "chart-allocation", "aria-label": "Allocation by department" });
  const spent = data.allocation.filter((a) => Number(a.usd) > 0);
  if (spent.length) whenAttached(canvas, () => doughnut(canvas, spent.map((a) => ({ name: a.line, value: Number(a.usd) }))));
  return h("div", {},
    h("div", { class: "kpis compact" },
      kpi("alloc-usd", "Allocated", usd(data.total_usd), data.total_usd, `of ${usd(data.limit_usd)}`),
      kpi("alloc-value", "Total value", short(data.total_value), data.total_value, "Σ weight × Mtok"),
      kpi("alloc-binding", "Binding constraints", count(data.binding.length), data.binding.length, "limits the answer runs into")),
    h("div", { class: "grid-2-1" },
      card("Allocation", table([
        { label: "Department", render: (a) => h("span", {}, swatch(a.line), a.line) },
        { label: "Env", render: (a) => a.environment },
        { label: "Mtok", num: true, render: (a) => fixed(3)(a.mtok) },
        { label: "USD", num: true, render: (a) => usd(a.usd) },
        { label: "Share", num: true, render: (a) => percent(Number(data.total_usd) > 0 ? Number(a.usd) / Number(data.total_usd) : 0) },
        { label: "Value", num: true, render: (a) => short(a.value) },
      ], data.allocation, { rowAttrs: (a) => ({ dataset: { line: a.line, usd: a.usd } }) })),
      card("Split", spent.length ? h("div", { class: "chart-box" }, canvas) : empty("Nothing allocated", "Every line is at zero."))),
    card("Binding constraints and shadow prices", data.binding.length ? table([
      { label: "Constraint", render: (b) => h("code", {}, b.constraint) },
      { label: "Meaning", render: (b) => b.meaning },
      { label: "Value per extra $", num: true, render: (b) => fixed(4)(b.shadow_price) },
    ], data.binding, { rowAttrs: (b) => ({ dataset: { constraint: b.constraint } }) }) : empty("Nothing binds", "The answer is inside every limit.")));
}

// -- what-if -------------------------------------------------------------------------------

function changeRow(kinds, change, onRemove) {
  const text = input("text", change.text || "", { placeholder: HINTS[change.kind] || "", inputmode: "text", class: "change-text" });
  const kind = choice("kind", kinds.map((k) => [k, k]), change.kind);
  kind.addEventListener("change", () => { text.placeholder = HINTS[kind.value] || ""; });
  return h("div", { class: "change-row" }, kind, text,
    h("button", { type: "button", class: "small-button", "aria-label": "remove", onclick: onRemove }, "×"));
}

function whatifTab(setup) {
  const list = h("div", { class: "changes" });
  const add = (change) => { const row = changeRow(setup.change_kinds, change, () => row.remove()); list.append(row); };
  [{ kind: "growth", text: "1.5" }, { kind: "cache", text: "0.2" }].forEach(add);
  const form = h("form", {},
    h("div", { class: "fields" },
      field("Period", choice("period", [["", "last 30 days"], ["this-month", "this month"], ["last-month", "last month"]], "")),
      field("Group by", choice("group_by", setup.groups.map((g) => [g, g]), "team"))),
    h("div", { class: "field-label" }, "Alternatives"), list,
    h("button", { type: "button", class: "small-button", onclick: () => add({ kind: "switch" }) }, "Add alternative"),
    setup.priced_models.length ? h("p", { class: "muted small" }, `Priced models: ${setup.priced_models.join(", ")}`) : null);
  const collect = (f) => {
    const top = values(f);
    return {
      period: top.period || "", group_by: top.group_by,
      changes: [...list.querySelectorAll(".change-row")].map((row) => ({
        kind: row.querySelector("[name=kind]").value, text: row.querySelector("[name=text]").value,
      })),
    };
  };
  const calc = calculator({
    id: "whatif", title: "Re-price the ledger", form, submitLabel: "Compare", url: "/ui/api/planner/whatif",
    body: collect, view: whatifView, autorun: Boolean(setup.ledger),
  });
  if (!setup.ledger) {
    calc.querySelector(".planner-out").append(card(null, empty("No usage in the ledger yet",
      "What-if re-prices recorded usage. Send traffic through the gateway, then compare alternatives here.")));
  }
  return calc;
}

function whatifView(data) {
  const names = data.scenarios;
  const canvas = h("canvas", { id: "chart-whatif", "aria-label": "Spend by scenario" });
  const series = data.rows.map((row) => ({ name: row.group || "(none)", values: names.map((n) => Number(row[n])) }));
  whenAttached(canvas, () => stackedBars(canvas, names, series, "cost"));
  const change = (n) => (data.change_vs_baseline[n] === null ? "—" : `${data.change_vs_baseline[n] >= 0 ? "+" : ""}${percent(data.change_vs_baseline[n])}`);
  const columns = [
    { label: data.group_by, render: (r) => (r.total ? h("strong", {}, r.group) : h("span", {}, swatch(r.group || "(none)"), r.group || "(none)")) },
    ...names.map((n) => ({ label: n, num: true, render: (r) => (r.total ? h("strong", {}, r[n]) : usd(r[n])) })),
  ];
  const rows = [...data.rows,
    { group: "Total", total: true, ...Object.fromEntries(names.map((n) => [n, usd(data.total[n])])) },
    { group: "vs baseline", total: true, ...Object.fromEntries(names.map((n) => [n, change(n)])) }];
  return h("div", {},
    h("div", { class: "kpis compact" }, names.map((n, i) => kpi(`whatif-${i}`, n, usd(data.total[n]), data.total[n], i ? change(n) : data.period))),
    card(`Spend by scenario and ${data.group_by}`, h("div", { class: "chart-box" }, canvas)),
    card("Side by side", table(columns, rows, { class: "whatif-table" })));
}

// -- the page ------------------------------------------------------------------------------

const BUILD = { capacity: capacityTab, tco: tcoTab, allocate: allocateTab, whatif: whatifTab };

export async function render(params, { navigate }) {
  const setup = await api("/ui/api/planner");
  const tab = BUILD[params.tab] ? params.tab : "capacity";
  const ledger = setup.ledger
    ? `ledger: ${usd(setup.ledger.monthly_usd)} a month of API spend at ${unit(setup.ledger.usd_per_mtok)}/Mtok (last ${setup.ledger.days} days)`
    : "ledger: no usage in the last 30 days";
  return h("div", {},
    h("header", { class: "page-head" }, h("h1", {}, "Planner"), h("span", { class: "muted small" }, ledger)),
    h("div", { class: "controls" }, h("div", { class: "segmented", role: "tablist" }, Object.entries(TABS).map(([key, label]) =>
      h("button", { type: "button", role: "tab", class: key === tab ? "on" : "", dataset: { tab: key }, "aria-selected": key === tab ? "true" : "false", onclick: () => navigate("planner", { tab: key }) }, label)))),
    BUILD[tab](setup));
}
