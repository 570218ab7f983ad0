// One colour per team, model, user ... on every page: a stable hash of the name picks it.
const PALETTE = [
  "#4f46e5", "#0891b2", "#db2777", "#ea580c", "#16a34a", "#9333ea",
  "#ca8a04", "#0d9488", "#dc2626", "#2563eb", "#65a30d", "#c026d3",
];
const FIXED = { other: "#a1a1aa", "other teams": "#a1a1aa", all: "#4f46e5", "(none)": "#71717a" };

export function colorOf(name) {
  if (name in FIXED) return FIXED[name];
  let hash = 2166136261;
  for (let i = 0; i < name.length; i += 1) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 16777619);
  }
  return PALETTE[(hash >>> 0) % PALETTE.length];
}

export function swatch(name) {
  const dot = document.createElement("span");
  dot.className = "swatch";
  dot.style.background = colorOf(name);
  return dot;
}
