// Small inline-SVG charts (no library): horizontal bars and vertical bars/lines by month.
// Only attributes and classes (CSP: no style attributes); colours come from workspace.css.

import { h, svg } from "/workspace/dom.js";

/** Horizontal bars: [{label, value}] → a figure. */
export function barChart(items, { testid, unit = "" } = {}) {
  const rowHeight = 26;
  const labelWidth = 190;
  const width = 640;
  const max = Math.max(1, ...items.map((i) => i.value));
  const height = Math.max(rowHeight, items.length * rowHeight) + 8;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart bars", role: "img", "data-testid": testid },
    items.map((item, index) => {
      const y = 4 + index * rowHeight;
      const barWidth = Math.max(2, ((width - labelWidth - 60) * item.value) / max);
      return svg("g", { class: "bar", "data-label": item.label, "data-value": item.value },
        svg("title", {}, `${item.label}: ${item.value}${unit}`),
        svg("text", { x: labelWidth - 8, y: y + 17, "text-anchor": "end", class: "label" }, truncate(item.label, 16)),
        svg("rect", { x: labelWidth, y: y + 3, width: barWidth, height: rowHeight - 8, rx: 3 }),
        svg("text", { x: labelWidth + barWidth + 6, y: y + 17, class: "value" }, `${item.value}${unit}`));
    }));
  return h("figure", { class: "chart-figure" }, chart);
}

/**
 * Columns by category (months) with one or more series: series = [{name, values: [..], kind: "bar"|"line"}].
 */
export function columnChart(categories, series, { testid, unit = "" } = {}) {
  const width = 640;
  const height = 240;
  const left = 44;
  const bottom = 28;
  const top = 12;
  const all = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  const max = Math.max(1, ...all);
  const plotWidth = width - left - 10;
  const plotHeight = height - top - bottom;
  const step = plotWidth / Math.max(1, categories.length);
  const bars = series.filter((s) => s.kind !== "line");
  const barWidth = Math.max(4, (step * 0.7) / Math.max(1, bars.length));
  const y = (v) => top + plotHeight - (plotHeight * v) / max;
  const ticks = [0, 0.5, 1].map((f) => Math.round(max * f * 10) / 10);
  const nodes = [
    ticks.map((v) => svg("g", { class: "tick" }, svg("line", { x1: left, x2: width - 10, y1: y(v), y2: y(v) }),
      svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, `${v}`))),
    categories.map((c, i) => svg("text", { x: left + step * i + step / 2, y: height - 8, "text-anchor": "middle", class: "label" }, c)),
  ];
  bars.forEach((s, si) => {
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      const x = left + step * i + (step - barWidth * bars.length) / 2 + si * barWidth;
      nodes.push(svg("rect", { x, y: y(v), width: barWidth - 1, height: Math.max(0, top + plotHeight - y(v)),
        class: `series-${series.indexOf(s)}`, "data-category": categories[i], "data-value": v },
      svg("title", {}, `${s.name} ${categories[i]}: ${v}${unit}`)));
    });
  });
  for (const s of series.filter((x) => x.kind === "line")) {
    const points = s.values.map((v, i) => (v === null || v === undefined ? null : [left + step * i + step / 2, y(v)])).filter(Boolean);
    if (points.length) {
      nodes.push(svg("polyline", { points: points.map((p) => p.join(",")).join(" "), class: `line series-${series.indexOf(s)}` }));
      for (const [px, py] of points) nodes.push(svg("circle", { cx: px, cy: py, r: 3, class: `series-${series.indexOf(s)}` }));
    }
  }
  const legend = h("ul", { class: "legend" }, series.map((s, i) => h("li", { class: `series-${i}` }, s.name)));
  return h("figure", { class: "chart-figure" },
    svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart columns", role: "img", "data-testid": testid }, nodes), legend);
}

function truncate(text, n) {
  const s = String(text);
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}
