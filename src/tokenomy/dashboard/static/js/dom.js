// Building DOM nodes without innerHTML: every text from the ledger is set as text.
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "style" && typeof value === "object") Object.assign(node.style, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

export function card(title, body, extra = {}) {
  return h("section", { class: `card ${extra.class || ""}`, id: extra.id },
    title ? h("header", { class: "card-head" }, h("h2", {}, title), extra.actions || null) : null,
    body);
}

export function empty(title, text, code) {
  return h("div", { class: "empty" },
    h("div", { class: "empty-title" }, title),
    h("p", {}, text),
    code ? h("pre", {}, code) : null);
}

export function table(columns, rows, options = {}) {
  const head = h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : "" }, c.label)));
  const body = rows.map((row) => h("tr", options.rowAttrs ? options.rowAttrs(row) : {},
    columns.map((c) => h("td", { class: c.num ? "num" : "" }, c.render(row)))));
  return h("div", { class: "table-wrap" }, h("table", { class: options.class || "" },
    h("thead", {}, head), h("tbody", {}, body)));
}
