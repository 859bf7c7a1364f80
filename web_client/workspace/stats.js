// The statistics dashboard: charts drawn by chart.js from GET /api/v1/statistics.
// Tolerant of both shapes the API has had: {key: count} maps and lists of objects.

import { language, t } from "/i18n.js";
import { get } from "/workspace/api.js";
import { empty, field, h, page } from "/workspace/dom.js";
import { barChart, columnChart } from "/workspace/chart.js";
import { expertNames } from "/workspace/consultations.js";

function pick(doc, ...names) {
  for (const name of names) {
    const value = name.split(".").reduce((o, k) => (o == null ? undefined : o[k]), doc);
    if (value !== undefined && value !== null) return value;
  }
  return null;
}

function nameOf(item) {
  if (language() === "en" && item.name_en) return item.code ? `${item.code} ${item.name_en}` : item.name_en;
  const name = item.name_zh ?? item.name ?? item.display_name ?? item.hospital_name ?? item.label;
  if (item.code) return name ? `${item.code} ${name}` : item.code;
  return name ?? String(item.id ?? item.key ?? "?");
}

/** [{label, value}] from a {key: n} map (labels via `names`) or a list of objects. */
export function items(value, names = new Map()) {
  if (!value) return [];
  if (Array.isArray(value)) {
    return value.map((x) => ({ label: nameOf(x), value: Number(x.count ?? x.total ?? x.requested ?? 0) }));
  }
  return Object.entries(value).map(([key, n]) => ({ label: names.get(Number(key)) ?? names.get(key) ?? key,
    value: Number(typeof n === "object" ? n.count ?? n.requested ?? 0 : n) }));
}

function months(doc) {
  const raw = pick(doc, "by_month", "per_month");
  if (!raw) return { categories: [], requested: [], reported: [] };
  const list = Array.isArray(raw) ? raw : Object.entries(raw).map(([month, v]) => (typeof v === "object" ? { month, ...v } : { month, requested: v }));
  list.sort((a, b) => String(a.month).localeCompare(String(b.month)));
  return { categories: list.map((x) => x.month), requested: list.map((x) => Number(x.requested ?? x.count ?? 0)),
    reported: list.map((x) => (x.reported === undefined ? null : Number(x.reported))) };
}

function turnaround(doc) {
  const raw = pick(doc, "turnaround_by_month", "turnaround.by_month", "turnaround.per_month");
  if (!raw) return null;
  const list = Array.isArray(raw) ? raw : Object.entries(raw).map(([month, v]) => ({ month, ...v }));
  list.sort((a, b) => String(a.month).localeCompare(String(b.month)));
  const value = (x, key) => x[key] ?? x.request_to_reported?.[key] ?? null;
  return { categories: list.map((x) => x.month), median: list.map((x) => value(x, "median_hours")),
    p90: list.map((x) => value(x, "p90_hours")) };
}

export async function page_() {
  const from = h("input", { type: "date", "data-testid": "stats-from" });
  const to = h("input", { type: "date", "data-testid": "stats-to" });
  const holder = h("div", { class: "dashboard", "data-testid": "dashboard" });
  const load = async () => {
    const [doc, experts] = await Promise.all([get("/api/v1/statistics", { from: from.value, to: to.value }), expertNames()]);
    const totals = h("div", { class: "totals", "data-testid": "stats-totals" },
      h("div", { class: "total" }, h("span", { class: "big", "data-testid": "stats-total" }, String(doc.total ?? 0)), t("ws.stats.total")),
      doc.reports_published !== undefined ? h("div", { class: "total" }, h("span", { class: "big" }, String(doc.reports_published)), t("ws.stats.published")) : null,
      Object.entries(pick(doc, "by_state", "per_state") ?? {}).map(([state, n]) => h("div", { class: "total" },
        h("span", { class: "big" }, String(n)), t(`ws.state.${state}`))));
    const m = months(doc);
    const ta = turnaround(doc);
    const overall = doc.turnaround?.request_to_reported;
    const card = (key, content, testid) => h("section", { class: "card", "data-testid": testid }, h("h2", {}, t(key)), content);
    const chartOrEmpty = (list, testid) => (list.length ? barChart(list, { testid }) : empty("ws.stats.none"));
    holder.replaceChildren(totals,
      card("ws.stats.by-month", m.categories.length ? columnChart(m.categories, [
        { name: t("ws.stats.requested"), values: m.requested, kind: "bar" },
        ...(m.reported.some((v) => v !== null) ? [{ name: t("ws.stats.reported"), values: m.reported, kind: "bar" }] : []),
      ], { testid: "chart-month" }) : empty("ws.stats.none"), "stats-month"),
      card("ws.stats.turnaround", ta && ta.categories.length ? columnChart(ta.categories, [
        { name: t("ws.stats.median"), values: ta.median, kind: "bar" },
        { name: t("ws.stats.p90"), values: ta.p90, kind: "line" },
      ], { testid: "chart-turnaround", unit: " h" }) : overall ? h("p", { "data-testid": "turnaround-overall" },
        t("ws.stats.turnaround-overall", { median: overall.median_hours ?? "—", p90: overall.p90_hours ?? "—" })) : empty("ws.stats.none"), "stats-turnaround"),
      card("ws.stats.by-hospital", chartOrEmpty(items(pick(doc, "by_hospital", "by_requesting_hospital", "per_requesting_hospital")), "chart-hospital"), "stats-hospital"),
      card("ws.stats.by-doctor", chartOrEmpty(items(pick(doc, "by_requesting_doctor", "per_requesting_doctor")), "chart-doctor"), "stats-doctor"),
      card("ws.stats.by-expert", chartOrEmpty(items(pick(doc, "by_expert", "per_expert"), experts), "chart-expert"), "stats-expert"),
      card("ws.stats.by-diagnosis", chartOrEmpty(items(pick(doc, "by_diagnosis", "per_diagnosis")), "chart-diagnosis"), "stats-diagnosis"));
  };
  from.addEventListener("change", load);
  to.addEventListener("change", load);
  page("ws.stats.title", h("div", { class: "toolbar" }, field("ws.stats.from", from), field("ws.stats.to", to)), holder);
  await load();
}

export { page_ as page };
