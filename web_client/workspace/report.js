// Reports: the published version (and its print view), the versions, and for the assigned
// expert the editor: template sections, ICD-10 search, free-text diagnosis, save, publish,
// amend with a reason.

import { language, t } from "/i18n.js";
import { get, patch, post } from "/workspace/api.js";
import { badge, busy, errorBox, field, flash, h, page, time } from "/workspace/dom.js";
import { me } from "/workspace/state.js";

async function templates() {
  try {
    return (await get("/api/v1/report-templates")).templates;
  } catch {
    return [];
  }
}

function sectionTitle(template, key) {
  const found = template?.sections?.find((s) => s.key === key);
  if (!found) return key;
  return language() === "en" ? found.title_en ?? found.title : found.title;
}

function templateName(template) {
  if (!template) return "";
  return language() === "en" ? template.name_en ?? template.name : template.name;
}

export function diagnosisText(report) {
  const name = language() === "en" ? report.diagnosis_name_en ?? report.diagnosis_name_zh
    : report.diagnosis_name_zh ?? report.diagnosis_name_en;
  return [report.diagnosis_code ? `${report.diagnosis_code}${name ? ` ${name}` : ""}` : null,
    report.diagnosis].filter(Boolean).join(" · ");
}

function reportBody(report, template) {
  return [
    Object.entries(report.sections ?? {}).map(([key, text]) => h("section", { class: "report-section", "data-key": key },
      h("h4", {}, sectionTitle(template, key)), h("p", { class: "prewrap" }, text || "—"))),
    h("section", { class: "report-section diagnosis", "data-testid": "report-diagnosis" },
      h("h4", {}, t("ws.report.diagnosis")), h("p", {}, diagnosisText(report) || "—")),
  ];
}

export async function reportsSection(c, reload) {
  let reports = [];
  try {
    reports = (await get(`/api/v1/consultations/${c.id}/reports`)).reports;
  } catch { /* none visible */ }
  const all = await templates();
  const byId = new Map(all.map((tp) => [tp.id, tp]));
  const user = me();
  const author = user.role === "expert" && c.expert_id === user.id;
  const section = h("section", { class: "card", "data-testid": "reports" }, h("h2", {}, t("ws.report.title")));
  const published = reports.filter((r) => r.status === "published");
  const latest = published.at(-1);
  const draft = reports.find((r) => r.status === "draft");
  if (latest) {
    section.append(h("article", { class: "report", "data-testid": "report-published", "data-id": latest.id },
      h("div", { class: "row-between" },
        h("p", { class: "muted" }, t("ws.report.version", { version: latest.version }), " · ",
          t("ws.report.published-at", { at: time(latest.published_at) })),
        h("a", { class: "button", href: `#/consultations/${c.id}/print/${latest.id}`, "data-testid": "report-print" },
          t("ws.report.print"))),
      latest.amendment_reason ? h("p", { class: "note" }, t("ws.report.amended", { reason: latest.amendment_reason })) : null,
      reportBody(latest, byId.get(latest.template_id))));
  }
  if (reports.length > 1) {
    section.append(h("details", { "data-testid": "report-versions" }, h("summary", {}, t("ws.report.versions")),
      h("ul", {}, reports.map((r) => h("li", {}, t("ws.report.version", { version: r.version }), " ",
        badge("report-status", r.status), " ", time(r.published_at ?? r.updated_at),
        r.amendment_reason ? ` — ${r.amendment_reason}` : "")))));
  }
  if (author && draft) {
    section.append(editor(c, draft, byId.get(draft.template_id), reload));
  } else if (author && !reports.length && ["accepted", "scheduled", "in_session"].includes(c.state)) {
    section.append(startDraft(c, all, reload));
  } else if (author && latest && !draft) {
    section.append(amendForm(latest, reload));
  }
  if (!latest && !(author && (draft || !reports.length))) section.append(h("p", { class: "muted", "data-testid": "report-none" }, t("ws.report.none")));
  return section;
}

function startDraft(c, all, reload) {
  const box = errorBox("draft-error");
  const choice = h("select", { "data-testid": "template-select" },
    h("option", { value: "" }, t("ws.report.no-template")),
    all.map((tp) => h("option", { value: tp.id }, templateName(tp))));
  const button = h("button", { type: "button", class: "primary", "data-testid": "report-start" }, t("ws.report.start"));
  button.addEventListener("click", () => busy(button, async () => {
    await post(`/api/v1/consultations/${c.id}/reports`, { template_id: choice.value ? Number(choice.value) : null });
    reload();
  }, box));
  return h("div", { class: "editor", "data-testid": "report-starter" }, field("ws.report.template", choice), button, box);
}

function amendForm(latest, reload) {
  const box = errorBox("amend-error");
  const reason = h("input", { maxlength: 2000, "data-testid": "amend-reason" });
  const button = h("button", { type: "button", "data-testid": "report-amend" }, t("ws.report.amend"));
  button.addEventListener("click", () => busy(button, async () => {
    await post(`/api/v1/reports/${latest.id}/amend`, { reason: reason.value.trim() });
    reload();
  }, box));
  return h("div", { class: "editor", "data-testid": "report-amender" }, field("ws.report.amend-reason", reason), button, box);
}

/** The ICD-10 search box: suggestions (code + Chinese name) from /api/v1/icd10?q=. */
export function icdSearch(initial, onChoose) {
  const input = h("input", { type: "search", autocomplete: "off", "data-testid": "icd-search",
    placeholder: t("ws.icd.placeholder"), role: "combobox", "aria-expanded": "false" });
  const chosen = h("span", { class: "chosen", "data-testid": "icd-chosen" });
  const list = h("ul", { class: "suggestions", role: "listbox", "data-testid": "icd-suggestions", hidden: true });
  let timer = null;
  let token = 0;
  const show = (code) => {
    chosen.replaceChildren(code ? h("strong", {}, code.code) : t("ws.icd.none"),
      code?.name_zh ? ` ${language() === "en" ? code.name_en ?? code.name_zh : code.name_zh}` : "",
      code ? h("button", { type: "button", class: "subtle small", "data-testid": "icd-clear",
        onclick: () => { onChoose(null); show(null); } }, t("ws.icd.clear")) : "");
    chosen.dataset.code = code?.code ?? "";
  };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const query = input.value.trim();
    if (!query) { list.hidden = true; return; }
    timer = setTimeout(async () => {
      const mine = ++token;
      let codes = [];
      try { codes = (await get("/api/v1/icd10", { q: query, limit: 12 })).codes; } catch { codes = []; }
      if (mine !== token) return;
      list.replaceChildren(...codes.map((code) => h("li", { role: "option", tabindex: 0,
        "data-testid": "icd-option", "data-code": code.code,
        onclick: () => { onChoose(code); show(code); list.hidden = true; input.value = ""; },
        onkeydown: (event) => { if (event.key === "Enter") event.target.click(); } },
        h("strong", {}, code.code), " ", code.name_zh, h("span", { class: "muted small" }, ` ${code.name_en ?? ""}`))));
      if (!codes.length) list.append(h("li", { class: "muted" }, t("ws.icd.nothing")));
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
    }, 200);
  });
  show(initial);
  return h("div", { class: "icd" }, input, list, chosen);
}

function editor(c, draft, template, reload) {
  const box = errorBox("report-error");
  const areas = Object.entries(draft.sections ?? {}).map(([key, text]) => h("label", { class: "field" },
    h("span", { class: "label" }, sectionTitle(template, key)),
    h("textarea", { rows: 4, "data-key": key, "data-testid": `section-${key}`, maxlength: 20000, value: text ?? "" })));
  if (!areas.length) {
    areas.push(h("label", { class: "field" }, h("span", { class: "label" }, t("ws.report.findings")),
      h("textarea", { rows: 6, "data-key": "findings", "data-testid": "section-findings" })));
  }
  for (const [index, area] of areas.entries()) area.querySelector("textarea").value = Object.values(draft.sections ?? {})[index] ?? "";
  let code = draft.diagnosis_code ? { code: draft.diagnosis_code, name_zh: draft.diagnosis_name_zh, name_en: draft.diagnosis_name_en } : null;
  const diagnosis = h("input", { maxlength: 200, "data-testid": "diagnosis-text", value: draft.diagnosis ?? "" });
  const body = () => {
    const sections = {};
    for (const area of areas) {
      const text = area.querySelector("textarea");
      sections[text.dataset.key] = text.value;
    }
    const out = { sections, diagnosis: diagnosis.value.trim() || null };
    if (code || draft.diagnosis_code) out.diagnosis_code = code ? code.code : null;
    return out;
  };
  const save = h("button", { type: "button", "data-testid": "report-save" }, t("ws.report.save"));
  const publish = h("button", { type: "button", class: "primary", "data-testid": "report-publish" }, t("ws.report.publish"));
  const saved = h("span", { class: "muted small", "data-testid": "report-saved" });
  save.addEventListener("click", () => busy(save, async () => {
    const result = await patch(`/api/v1/reports/${draft.id}`, body());
    saved.textContent = t("ws.report.saved-at", { at: time(result.updated_at, { date: false, seconds: true }) });
  }, box));
  publish.addEventListener("click", () => {
    if (!confirm(t("ws.report.publish-confirm"))) return;
    busy(publish, async () => {
      await patch(`/api/v1/reports/${draft.id}`, body());
      await post(`/api/v1/reports/${draft.id}/publish`);
      flash(t("ws.report.published"));
      reload();
    }, box);
  });
  return h("div", { class: "editor", "data-testid": "report-editor", "data-id": draft.id },
    h("h3", {}, t("ws.report.draft", { version: draft.version }), template ? ` · ${templateName(template)}` : ""),
    draft.amendment_reason ? h("p", { class: "note" }, t("ws.report.amended", { reason: draft.amendment_reason })) : null,
    areas,
    h("div", { class: "field" }, h("span", { class: "label" }, t("ws.report.icd")), icdSearch(code, (chosen) => { code = chosen; })),
    field("ws.report.diagnosis-text", diagnosis),
    h("div", { class: "buttons" }, save, publish, saved), box);
}

export async function printView(c, report, experts) {
  const all = await templates();
  const template = all.find((tp) => tp.id === report.template_id);
  let hospitals = new Map();
  try {
    hospitals = new Map((await get("/api/v1/hospitals")).hospitals.map((x) => [x.id, x.name]));
  } catch { /* names stay ids */ }
  const p = c.patient ?? {};
  const expertName = experts.get(report.author_id) ?? experts.get(c.expert_id) ?? `#${report.author_id}`;
  const sheet = h("article", { class: "print-sheet", "data-testid": "print-sheet" },
    h("header", { class: "print-header" },
      h("h2", {}, t("ws.print.heading")),
      h("p", { "data-testid": "print-hospital" }, hospitals.get(c.requesting_hospital_id) ?? ""),
      h("dl", { class: "facts print-facts" },
        h("dt", {}, t("ws.print.consultation")), h("dd", { "data-testid": "print-consultation" }, `#${c.id}`),
        h("dt", {}, t("ws.patient.name")), h("dd", { "data-testid": "print-patient" }, p.name ?? ""),
        h("dt", {}, t("ws.patient.sex")), h("dd", {}, p.sex ? t(`ws.sex.${p.sex}`) : ""),
        h("dt", {}, t("ws.patient.age")), h("dd", {}, p.age ?? ""),
        h("dt", {}, t("ws.patient.record")), h("dd", {}, p.record_number ?? ""),
        h("dt", {}, t("ws.col.expert")), h("dd", { "data-testid": "print-expert" }, expertName),
        h("dt", {}, t("ws.print.date")), h("dd", {}, time(report.published_at ?? report.updated_at)),
        h("dt", {}, t("ws.print.version")), h("dd", {}, String(report.version)))),
    template ? h("h3", {}, templateName(template)) : null,
    reportBody(report, template),
    h("footer", { class: "signature" },
      h("span", {}, t("ws.print.signature")), h("span", { class: "line" }),
      h("span", {}, t("ws.print.signed-date")), h("span", { class: "line short" })));
  const printButton = h("button", { type: "button", class: "primary", "data-testid": "print-now",
    onclick: () => window.print() }, t("ws.report.print"));
  const back = h("a", { class: "button subtle", href: `#/consultations/${c.id}`, "data-testid": "print-back" }, t("ws.back"));
  page("ws.print.title", h("div", { class: "toolbar no-print" }, printButton, back), sheet);
}
