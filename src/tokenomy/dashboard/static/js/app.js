// The single-page app: login, hash routing (#/overview, #/explorer?range=7d ...), and one
// live feed of ledger events (server-sent events) handed to the page on screen.
import { api, LoginRequired } from "./api.js";
import { destroyCharts } from "./charts.js";
import { card, h } from "./dom.js";
import * as budgets from "./pages/budgets.js";
import * as explorer from "./pages/explorer.js";
import * as models from "./pages/models.js";
import * as overview from "./pages/overview.js";
import * as planner from "./pages/planner.js";
import * as requests from "./pages/requests.js";

const PAGES = { overview, budgets, explorer, models, requests, planner };
const TITLES = { overview: "Overview", budgets: "Budgets", explorer: "Explorer", models: "Models", requests: "Requests", planner: "Planner" };
const shell = document.getElementById("shell");
const login = document.getElementById("login");
const pageRoot = document.getElementById("page");
let current = null;
let feed = null;
let renderToken = 0;

function parseHash() {
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  const name = PAGES[path] ? path : "overview";
  return { name, params: Object.fromEntries(new URLSearchParams(search || "")) };
}

export function navigate(name, params = {}) {
  const search = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null));
  const text = search.toString();
  const target = `#/${name}${text ? `?${text}` : ""}`;
  if (location.hash === target) route();
  else location.hash = target;
}

async function route() {
  const { name, params } = parseHash();
  const token = ++renderToken;
  document.title = `${TITLES[name]} · tokenomy`;
  for (const link of document.querySelectorAll(".sidebar a")) {
    link.classList.toggle("active", link.dataset.page === name);
  }
  destroyCharts();
  current = { name, module: PAGES[name] };
  pageRoot.replaceChildren(h("div", { class: "loading" }, "Loading…"));
  try {
    const view = await PAGES[name].render(params, { navigate });
    if (token === renderToken) pageRoot.replaceChildren(view);
  } catch (error) {
    if (error instanceof LoginRequired) return showLogin();
    if (token === renderToken) {
      pageRoot.replaceChildren(card("Something went wrong", h("p", { class: "error" }, error.message)));
    }
  }
}

function setLive(state, label) {
  const node = document.getElementById("live-state");
  node.dataset.state = state;
  node.querySelector(".label").textContent = label;
}

function startFeed() {
  if (feed) return;
  feed = new EventSource("/ui/api/events");
  feed.addEventListener("open", () => setLive("on", "Live"));
  feed.addEventListener("usage", (message) => {
    const data = JSON.parse(message.data);
    if (current && current.module.live) current.module.live(data.events, data.dropped);
  });
  feed.addEventListener("error", async () => {
    setLive("wait", "Reconnecting…");
    try {
      await api("/ui/api/session");
    } catch (error) {
      if (error instanceof LoginRequired) showLogin();
    }
  });
}

function stopFeed() {
  if (feed) feed.close();
  feed = null;
  setLive("off", "Offline");
}

function showLogin() {
  stopFeed();
  shell.hidden = true;
  login.hidden = false;
  document.getElementById("login-key").focus();
}

function showApp() {
  login.hidden = true;
  shell.hidden = false;
  startFeed();
  route();
}

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("login-key");
  const message = document.getElementById("login-error");
  message.textContent = "";
  try {
    await api("/ui/login", { method: "POST", body: { key: input.value } });
    input.value = "";
    showApp();
  } catch (error) {
    message.textContent = error instanceof LoginRequired ? "That is not the admin key." : error.message;
  }
});

document.getElementById("logout").addEventListener("click", async () => {
  await api("/ui/logout", { method: "POST", body: {} }).catch(() => {});
  showLogin();
});

window.addEventListener("hashchange", () => { if (!shell.hidden) route(); });

api("/ui/api/session").then(showApp).catch(showLogin);
