// Budgets: the hierarchy with spend against limit, thresholds, the action in force and
// the forecast; limits and thresholds edit inline and apply from the next request.
import { api } from "../api.js";
import { card, empty, h } from "../dom.js";
import { dateTime, day, limit, percent, usd } from "../format.js";

const ACTION_CLASS = { alert: "warn", downgrade: "warn", defer: "warn", block: "danger" };

export function budgetBar(budget) {
  const fraction = Math.min(Number(budget.fraction_used), 1);
  const level = budget.active_action ? ACTION_CLASS[budget.active_action] || "warn" : "ok";
  return h("div", { class: `meter meter-${level}`, title: percent(budget.fraction_used) },
    h("span", { class: "meter-fill", style: { width: `${fraction * 100}%` } }),
    budget.thresholds.map((t) => h("span", { class: "meter-mark", style: { left: `${t.at * 100}%` }, title: `${percent(t.at, 0)} ${t.action}` })));
}

function thresholdText(t) {
  let text = `${percent(t.at, 0)} ${t.action}`;
  if (t.action === "downgrade") text += ` ${t.from_tier || "any"}→${t.to_model || t.to_tier || "cheaper"}`;
  return text;
}

function scopeChips(scope) {
  const entries = Object.entries(scope);
  if (!entries.length) return h("span", { class: "chip" }, "everything");
  return entries.map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`));
}

function actionBadge(action) {
  return action ? h("span", { class: `badge badge-${ACTION_CLASS[action] || "warn"}` }, action) : h("span", { class: "badge badge-ok" }, "ok");
}

function forecastCell(budget) {
  if (!budget.forecast) return h("span", { class: "muted small", title: "The forecast needs more history for this budget." }, "not enough history");
  if (budget.forecast.exhausted) return h("span", { class: "small error" }, "exhausted");
  if (!budget.forecast.exhausts_at) {
    return h("span", { class: "small", title: budget.forecast.basis || "" }, `not this period (${usd(budget.forecast.period_end_usd)} expected)`);
  }
  return h("span", { class: "small" }, day(budget.forecast.exhausts_at));
}

function editor(budget, onSaved) {
  const limit = h("input", { class: "edit-limit", name: "limit_usd", value: budget.limit_usd, inputmode: "decimal", "aria-label": `Limit of ${budget.name} in USD` });
  const marks = budget.thresholds.map((t) => h("input", {
    class: "edit-threshold", value: String(Math.round(t.at * 1000) / 10), inputmode: "decimal", "aria-label": `${t.action} threshold percent`,
  }));
  const message = h("span", { class: "error small" });
  const save = async (event) => {
    event.preventDefault();
    message.textContent = "";
    const thresholds = budget.thresholds.map((t, i) => {
      const { reached, alerted, ...definition } = t;
      return { ...definition, at: Math.round(Number(marks[i].value) * 10) / 1000 };
    });
    try {
      const updated = await api(`/ui/api/budgets/${encodeURIComponent(budget.name)}`, {
        method: "PUT", body: { limit_usd: limit.value.trim(), thresholds },
      });
      onSaved({ ...budget, ...updated });
    } catch (error) {
      message.textContent = error.message;
    }
  };
  return h("form", { class: "budget-edit", onsubmit: save },
    h("label", {}, "Limit $", limit),
    marks.length ? h("span", { class: "muted small" }, "thresholds %") : null,
    budget.thresholds.map((t, i) => h("label", { class: "small" }, t.action, marks[i])),
    h("button", { type: "submit", class: "primary small-button" }, "Save"),
    h("button", { type: "button", class: "small-button", onclick: () => onSaved(budget) }, "Cancel"),
    message);
}

function row(budget) {
  const tr = h("tr", { dataset: { budget: budget.name } });
  const fill = (b, editing) => {
    tr.replaceChildren(
      h("td", {}, h("div", { class: "tree-name", style: { paddingLeft: `${b.depth * 20}px` } },
        b.depth ? h("span", { class: "tree-elbow" }, "└") : null, h("strong", {}, b.name)),
        h("div", { class: "chips", style: { paddingLeft: `${b.depth * 20}px` } }, scopeChips(b.scope))),
      h("td", {}, b.period, h("div", { class: "muted small" }, `resets ${dateTime(b.resets_at)}`)),
      h("td", { class: "num" }, h("span", { class: "spent" }, usd(b.spent_usd)), h("span", { class: "muted" }, " of "),
        h("span", { class: "limit", dataset: { usd: b.limit_usd } }, limit(b.limit_usd)),
        Number(b.reserved_usd) > 0 ? h("div", { class: "muted small" }, `${usd(b.reserved_usd)} held`) : null),
      h("td", { class: "meter-cell" }, budgetBar(b), h("div", { class: "small" }, percent(b.fraction_used))),
      h("td", {}, actionBadge(b.active_action)),
      h("td", {}, editing ? editor(b, (next) => fill(next, false))
        : h("div", { class: "chips" }, b.thresholds.length ? b.thresholds.map((t) => h("span", { class: `chip ${t.reached ? "chip-on" : ""}` }, thresholdText(t)))
          : h("span", { class: "muted small" }, "limit only"))),
      h("td", {}, forecastCell(b)),
      h("td", {}, editing ? null : h("button", { type: "button", class: "small-button edit", onclick: () => fill(b, true) }, "Edit")));
  };
  fill(budget, false);
  return tr;
}

export async function render() {
  const data = await api("/ui/api/budgets");
  const head = h("header", { class: "page-head" }, h("h1", {}, "Budgets"),
    h("span", { class: "muted small" }, `Periods in ${data.timezone} · changes apply from the next request`));
  if (!data.budgets.length) {
    return h("div", {}, head, card(null, empty("No budgets yet",
      "Budgets cap spend per team, user, project or model and act at thresholds (alert, downgrade, defer, block). Create one from the CLI or the admin API; it appears here and can be edited inline.",
      'tokenomy budgets set support-month --scope team=support --limit 100.00 --threshold 0.8:downgrade:premium:mid --threshold 1.0:block\ncurl -X PUT -H "Authorization: Bearer $ADMIN" http://<gateway>/admin/budgets/support-month -d \'{"scope": {"team": "support"}, "limit_usd": "100.00"}\'')));
  }
  const columns = ["Budget", "Period", "Spent", "Used", "Action", "Thresholds", "Runs out", ""];
  const tableNode = h("div", { class: "table-wrap" }, h("table", { class: "budgets" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c === "Spent" ? "num" : "" }, c)))),
    h("tbody", {}, data.budgets.map(row))));
  return h("div", {}, head, card(null, tableNode));
}
