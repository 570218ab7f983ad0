// One colour per team, model, user ... on every page. A name's colour is picked by a stable
// hash; when that colour already belongs to another name this session, the next free one is
// taken, so names shown side by side never share a colour (until the palette runs out).
const PALETTE = [
  "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#2f4b7c", "#d45087", "#00a6a6", "#8cd17d", "#b6992d", "#6a51a3", "#86bcb6",
];
const FIXED = { other: "#a1a1aa", "other teams": "#a1a1aa", all: "#4e79a7", "(none)": "#71717a" };
const assigned = new Map();
const taken = new Set();

function hash(name) {
  let value = 2166136261;
  for (let i = 0; i < name.length; i += 1) {
    value ^= name.charCodeAt(i);
    value = Math.imul(value, 16777619);
  }
  return value >>> 0;
}

export function colorOf(name) {
  if (name in FIXED) return FIXED[name];
  let color = assigned.get(name);
  if (color) return color;
  const start = hash(name) % PALETTE.length;
  color = PALETTE[start];
  for (let step = 0; step < PALETTE.length; step += 1) {
    const candidate = PALETTE[(start + step) % PALETTE.length];
    if (!taken.has(candidate)) { color = candidate; break; }
  }
  if (taken.size >= PALETTE.length) taken.clear();  // a new round once every colour is used
  taken.add(color);
  assigned.set(name, color);
  return color;
}

export function swatch(name) {
  const dot = document.createElement("span");
  dot.className = "swatch";
  dot.style.background = colorOf(name);
  return dot;
}
