// Chart.js (vendored, window.Chart) with the dashboard's look. Every chart made through
// here is destroyed when the page changes.
import { colorOf } from "./colors.js";
import { short, usd } from "./format.js";

const live = new Set();

function defaults() {
  const C = window.Chart;
  C.defaults.font.family = "Inter, system-ui, sans-serif";
  C.defaults.font.size = 12;
  C.defaults.color = "#52525b";
  C.defaults.borderColor = "#e4e4e7";
  C.defaults.animation = false;
  C.defaults.maintainAspectRatio = false;
  C.defaults.plugins.legend.labels.boxWidth = 10;
  C.defaults.plugins.legend.labels.boxHeight = 10;
}

export function destroyCharts() {
  for (const chart of live) chart.destroy();
  live.clear();
}

// Draw once the canvas is in the document (a detached canvas has no size).
export function whenAttached(canvas, draw) {
  const attempt = () => (canvas.isConnected ? draw() : requestAnimationFrame(attempt));
  requestAnimationFrame(attempt);
}

export function destroyIn(root) {
  for (const chart of [...live]) {
    if (root.contains(chart.canvas)) {
      chart.destroy();
      live.delete(chart);
    }
  }
}

function make(canvas, config) {
  if (!window.Chart) throw new Error("Chart.js did not load");
  if (!make.ready) { defaults(); make.ready = true; }
  const chart = new window.Chart(canvas, config);
  live.add(chart);
  return chart;
}

export const formatters = { cost: usd, tokens: short, requests: short };

// Stacked bars over time: series [{name, values}], one colour per name.
export function stackedBars(canvas, labels, series, metric = "cost", stacked = true) {
  const format = formatters[metric];
  return make(canvas, {
    type: "bar",
    data: {
      labels,
      datasets: series.map((s) => ({
        label: s.name, data: s.values, backgroundColor: colorOf(s.name), borderRadius: 2, maxBarThickness: 28,
      })),
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { stacked, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
        y: { stacked, beginAtZero: true, ticks: { callback: (v) => format(v) } },
      },
      plugins: {
        legend: { position: "bottom" },
        tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${format(ctx.parsed.y)}` } },
      },
    },
  });
}

export function doughnut(canvas, items) {
  return make(canvas, {
    type: "doughnut",
    data: {
      labels: items.map((i) => i.name),
      datasets: [{ data: items.map((i) => i.value), backgroundColor: items.map((i) => colorOf(i.name)), borderWidth: 1 }],
    },
    options: {
      cutout: "62%",
      plugins: {
        legend: { position: "right" },
        tooltip: { callbacks: { label: (ctx) => `${ctx.label}: ${usd(ctx.parsed)}` } },
      },
    },
  });
}

// Lines over a numeric x axis: datasets [{label, points: [{x, y}], axis: "y"|"y2", color,
// dashed, marker}]. A dataset with marker: true is drawn as dots only (an operating or
// break-even point). y and y2 are {title, format, tip}; x is {title, log, format, min, max}.
export function lines(canvas, datasets, { x = {}, y = {}, y2 = null } = {}) {
  const yFormat = y.format || short;
  const scales = {
    x: {
      type: x.log ? "logarithmic" : "linear",
      title: { display: Boolean(x.title), text: x.title },
      grid: { display: false },
      min: x.min,
      max: x.max,
      ticks: { maxRotation: 0, autoSkipPadding: 14, callback: (v) => (x.format || short)(v) },
    },
    y: {
      beginAtZero: true,
      title: { display: Boolean(y.title), text: y.title },
      ticks: { callback: (v) => yFormat(v) },
    },
  };
  if (y2) {
    scales.y2 = {
      position: "right",
      beginAtZero: true,
      title: { display: Boolean(y2.title), text: y2.title },
      grid: { drawOnChartArea: false },
      ticks: { callback: (v) => (y2.format || short)(v) },
    };
  }
  // Tooltips may be more exact than the axis ticks (y.tip / y2.tip).
  const formatOf = (axis) => (axis === "y2" && y2 ? y2.tip || y2.format || short : y.tip || yFormat);
  return make(canvas, {
    type: "line",
    data: {
      datasets: datasets.map((d) => ({
        label: d.label,
        data: d.points,
        yAxisID: d.axis || "y",
        borderColor: d.color || colorOf(d.label),
        backgroundColor: d.color || colorOf(d.label),
        borderWidth: 2,
        borderDash: d.dashed ? [6, 4] : undefined,
        showLine: !d.marker,
        pointRadius: d.marker ? 6 : (d.points.length > 16 ? 0 : 2.5),
        pointStyle: d.marker ? "rectRot" : "circle",
        tension: 0,
      })),
    },
    options: {
      parsing: true,
      interaction: { mode: "nearest", intersect: false },
      scales,
      plugins: {
        legend: { position: "bottom" },
        tooltip: {
          callbacks: {
            title: (items) => (items.length ? `${x.title || "x"}: ${(x.format || short)(items[0].parsed.x)}` : ""),
            label: (ctx) => `${ctx.dataset.label}: ${formatOf(ctx.dataset.yAxisID)(ctx.parsed.y)}`,
          },
        },
      },
    },
  });
}
