// Lists of consultations (my requests, the expert's worklist) and the new request form.

import { t } from "/i18n.js";
import { get, post } from "/workspace/api.js";
import { badge, busy, empty, errorBox, field, h, options, page, table, time } from "/workspace/dom.js";
import { me } from "/workspace/state.js";

export const STATES = ["requested", "accepted", "scheduled", "in_session", "reported", "closed",
  "rejected", "cancelled"];
export const URGENCIES = ["emergency", "urgent", "routine"];
export const TYPES = ["interactive", "offline"];
export const SEXES = ["female", "male", "other", "unknown"];
const URGENCY_RANK = { emergency: 0, urgent: 1, routine: 2 };
// Consultations per page of a list, and the most the API sends at once (worklists).
const PAGE = 50;
export const MAX_PAGE = 200;

export function byUrgencyThenAge(a, b) {
  return (URGENCY_RANK[a.urgency] - URGENCY_RANK[b.urgency])
    || String(a.created_at).localeCompare(String(b.created_at));
}

export function consultationRows(list, { showExpert = false, experts = new Map() } = {}) {
  return list.map((c) => h("tr", { "data-testid": "consultation-row", "data-id": c.id,
    "data-state": c.state },
    h("td", {}, h("a", { href: `#/consultations/${c.id}`, "data-testid": "consultation-link" },
      `#${c.id}`)),
    h("td", {}, badge("state", c.state)),
    h("td", {}, badge("urgency", c.urgency)),
    h("td", {}, t(`ws.type.${c.type}`)),
    h("td", { class: "clip" }, c.question),
    showExpert ? h("td", {}, c.expert_id ? experts.get(c.expert_id) ?? `#${c.expert_id}` : "—") : null,
    h("td", {}, c.slot ? time(c.slot.start) : "—"),
    h("td", {}, time(c.created_at))));
}

export function consultationTable(list, options_ = {}) {
  const head = ["ws.col.id", "ws.col.state", "ws.col.urgency", "ws.col.type", "ws.col.question",
    options_.showExpert ? "ws.col.expert" : null, "ws.col.slot", "ws.col.created"].filter(Boolean);
  return table(head, consultationRows(list, options_), options_.testid ?? "consultation-table");
}

export async function expertNames() {
  try {
    const found = await get("/api/v1/experts");
    return new Map(found.experts.map((e) => [e.id ?? e.user_id, e.display_name ?? e.name]));
  } catch {
    return new Map();
  }
}

export async function myRequests() {
  // Newest first, a page at a time (the API never sends a province's whole history at
  // once): the state filter asks the server; urgency and text filter what is loaded.
  const experts = await expertNames();
  let all = [];
  let next = null;
  const state = h("select", { "data-testid": "filter-state", name: "state" },
    options(STATES, "ws.state", null, { blank: "ws.filter.all-states" }));
  const urgency = h("select", { "data-testid": "filter-urgency", name: "urgency" },
    options(URGENCIES, "ws.urgency", null, { blank: "ws.filter.all-urgencies" }));
  const text = h("input", { type: "search", "data-testid": "filter-text",
    placeholder: t("ws.filter.text") });
  const holder = h("div", {});
  const more = h("button", { type: "button", "data-testid": "load-more", hidden: true },
    t("ws.list.more"));
  const load = async (before) => {
    const query = { limit: PAGE };
    if (state.value) query.state = state.value;
    if (before) query.before_id = before;
    const found = await get("/api/v1/consultations", query);
    all = before ? all.concat(found.consultations) : found.consultations;
    next = found.next_before_id;
    more.hidden = !next;
  };
  const draw = () => {
    const words = text.value.trim().toLowerCase();
    const shown = all.filter((c) => (!urgency.value || c.urgency === urgency.value)
      && (!words || `#${c.id} ${c.question}`.toLowerCase().includes(words)));
    holder.replaceChildren(shown.length
      ? consultationTable(shown, { showExpert: true, experts })
      : empty("ws.list.empty"));
  };
  state.addEventListener("change", async () => { await load(null); draw(); });
  urgency.addEventListener("change", draw);
  text.addEventListener("input", draw);
  more.addEventListener("click", () => busy(more, async () => { await load(next); draw(); }));
  await load(null);
  const actions = me().role === "requesting_doctor"
    ? h("a", { class: "button primary", href: "#/requests/new", "data-testid": "new-request" },
      t("ws.nav.new-request"))
    : null;
  page(me().role === "requesting_doctor" ? "ws.requests.title" : "ws.all.title",
    h("div", { class: "toolbar" }, state, urgency, text, actions), holder, more);
  draw();
}

export async function worklist() {
  let found;
  try {
    found = await get("/api/v1/consultations", { mine: 1, limit: MAX_PAGE });
  } catch {
    found = await get("/api/v1/consultations", { limit: MAX_PAGE });
  }
  const mine = found.consultations.filter((c) => c.expert_id === me().id);
  const groups = [
    ["ws.worklist.to-accept", (c) => c.state === "requested"],
    ["ws.worklist.upcoming", (c) => c.state === "scheduled" || (c.state === "accepted" && c.type === "interactive")],
    ["ws.worklist.in-session", (c) => c.state === "in_session"],
    ["ws.worklist.needs-report", (c) => c.state === "accepted" && c.type === "offline"],
    ["ws.worklist.reported", (c) => c.state === "reported"],
  ];
  const sections = groups.map(([key, test]) => {
    const list = mine.filter(test).sort((a, b) => String(a.slot?.start ?? a.created_at)
      .localeCompare(String(b.slot?.start ?? b.created_at)));
    return h("section", { class: "group", "data-testid": `worklist-${key.split(".").pop()}` },
      h("h2", {}, t(key), " ", h("span", { class: "count" }, String(list.length))),
      list.length ? consultationTable(list) : empty("ws.list.empty"));
  });
  page("ws.worklist.title", ...sections);
}

export async function newRequest() {
  const experts = await get("/api/v1/experts").catch(() => ({ experts: [] }));
  const box = errorBox("request-error");
  const specialties = [...new Set(experts.experts.map((e) => e.specialty).filter(Boolean))];
  const button = h("button", { type: "submit", class: "primary", "data-testid": "request-submit" },
    t("ws.request.submit"));
  const form = h("form", { class: "card form-grid", "data-testid": "request-form" },
    h("h2", { class: "span" }, t("ws.request.patient")),
    field("ws.patient.name", h("input", { name: "name", required: true, maxlength: 200,
      "data-testid": "patient-name", autocomplete: "off" })),
    field("ws.patient.sex", h("select", { name: "sex", required: true, "data-testid": "patient-sex" },
      options(SEXES, "ws.sex", null, { blank: "ws.choose" }))),
    field("ws.patient.age", h("input", { name: "age", type: "number", min: 0, max: 150,
      required: true, "data-testid": "patient-age" })),
    field("ws.patient.record", h("input", { name: "record_number", maxlength: 100,
      "data-testid": "patient-record", autocomplete: "off" })),
    h("label", { class: "field span" }, h("span", { class: "label" }, t("ws.patient.summary")),
      h("textarea", { name: "summary", rows: 5, required: true, maxlength: 20000,
        "data-testid": "patient-summary" })),
    h("h2", { class: "span" }, t("ws.request.consultation")),
    field("ws.request.specialty", h("input", { name: "specialty", list: "specialties",
      maxlength: 100, "data-testid": "request-specialty" })),
    h("datalist", { id: "specialties" }, specialties.map((s) => h("option", { value: s }))),
    field("ws.request.expert", h("select", { name: "expert_id", "data-testid": "request-expert" },
      h("option", { value: "" }, t("ws.request.any-expert")),
      experts.experts.map((e) => h("option", { value: e.id ?? e.user_id },
        [e.display_name ?? e.name, e.specialty ? ` · ${e.specialty}` : ""].join(""))))),
    field("ws.request.urgency", h("select", { name: "urgency", required: true, "data-testid": "request-urgency" },
      options(URGENCIES, "ws.urgency", "routine"))),
    field("ws.request.type", h("select", { name: "type", required: true, "data-testid": "request-type" },
      options(TYPES, "ws.type", "interactive"))),
    h("label", { class: "field span" }, h("span", { class: "label" }, t("ws.request.question")),
      h("textarea", { name: "question", rows: 4, required: true, maxlength: 19000,
        "data-testid": "request-question" })),
    h("div", { class: "span" }, box, button));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, async () => {
      const v = Object.fromEntries(new FormData(form));
      const specialty = String(v.specialty ?? "").trim();
      const question = String(v.question).trim();
      const body = {
        patient: { name: String(v.name).trim(), sex: v.sex, age: Number(v.age),
          record_number: String(v.record_number ?? "").trim() || null,
          summary: String(v.summary).trim() },
        // The API has no field for the wanted specialty: it leads the clinical question.
        question: specialty ? `${t("ws.request.specialty-prefix", { specialty })}\n${question}` : question,
        urgency: v.urgency, type: v.type,
        expert_id: v.expert_id ? Number(v.expert_id) : null,
      };
      const created = await post("/api/v1/consultations", body);
      location.hash = `#/consultations/${created.id}`;
    }, box);
  });
  page("ws.request.title", form);
}
