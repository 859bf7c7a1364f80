// Two-way referrals: the list (up/down, state), a new referral, the detail with its state
// history, notes and state actions.

import { t } from "/i18n.js";
import { get, post } from "/workspace/api.js";
import { badge, busy, empty, errorBox, field, flash, h, options, page, table, time } from "/workspace/dom.js";
import { me } from "/workspace/state.js";
import { SEXES } from "/workspace/consultations.js";

const STATES = ["requested", "accepted", "rejected", "admitted", "completed", "cancelled"];
const DIRECTIONS = ["up", "down"];
// Highest first, as the service ranks them: "up" goes towards the start of this list.
const LEVELS = ["province", "prefecture", "county"];

async function hospitalNames() {
  try {
    return new Map((await get("/api/v1/hospitals")).hospitals.map((x) => [x.id, x.name]));
  } catch {
    return new Map();
  }
}

/** The list carries no patient data (by design); the reason, cut short, tells rows apart. */
function short(text, length = 40) {
  if (!text) return "—";
  return text.length > length ? `${text.slice(0, length)}…` : text;
}

export async function list() {
  const direction = h("select", { "data-testid": "referral-direction-filter" },
    options(DIRECTIONS, "ws.direction", null, { blank: "ws.filter.all-directions" }));
  const state = h("select", { "data-testid": "referral-state-filter" },
    options(STATES, "ws.referral-state", null, { blank: "ws.filter.all-states" }));
  const holder = h("div", {});
  const names = await hospitalNames();
  const load = async () => {
    const found = await get("/api/v1/referrals", { direction: direction.value, state: state.value });
    const rows = found.referrals.map((r) => h("tr", { "data-testid": "referral-row", "data-id": r.id },
      h("td", {}, h("a", { href: `#/referrals/${r.id}`, "data-testid": "referral-link" }, `#${r.id}`)),
      h("td", {}, badge("direction", r.direction)),
      h("td", {}, badge("referral-state", r.state)),
      h("td", { class: "clip", title: r.reason ?? "" }, short(r.reason)),
      h("td", {}, names.get(r.from_hospital_id) ?? r.from_hospital_name ?? `#${r.from_hospital_id}`),
      h("td", {}, names.get(r.to_hospital_id) ?? r.to_hospital_name ?? `#${r.to_hospital_id}`),
      h("td", {}, time(r.created_at))));
    holder.replaceChildren(rows.length ? table(["ws.col.id", "ws.referral.direction", "ws.col.state",
      "ws.referral.reason", "ws.referral.from", "ws.referral.to", "ws.col.created"], rows, "referral-table")
      : empty("ws.list.empty"));
  };
  direction.addEventListener("change", load);
  state.addEventListener("change", load);
  page("ws.referral.list-title",
    h("div", { class: "toolbar" }, direction, state,
      h("a", { class: "button primary", href: "#/referrals/new", "data-testid": "new-referral" }, t("ws.referral.new"))),
    holder);
  await load();
}

export async function newReferral() {
  const hospitals = await get("/api/v1/hospitals").then((x) => x.hospitals).catch(() => []);
  const others = hospitals.filter((x) => x.id !== me().hospital_id);
  const department = h("select", { name: "to_department_id", "data-testid": "referral-department" },
    h("option", { value: "" }, t("ws.referral.any-department")));
  const toHospital = h("select", { name: "to_hospital_id", required: true, "data-testid": "referral-to-hospital" },
    h("option", { value: "" }, t("ws.choose")), others.map((x) => h("option", { value: x.id }, x.name)));
  const direction = h("select", { name: "direction", required: true, "data-testid": "referral-direction" },
    options(DIRECTIONS, "ws.direction", "up"));
  const own = hospitals.find((x) => x.id === me().hospital_id);
  toHospital.addEventListener("change", async () => {
    department.replaceChildren(h("option", { value: "" }, t("ws.referral.any-department")));
    if (!toHospital.value) return;
    // The direction follows the hospitals' levels (towards the province is "up").
    const target = hospitals.find((x) => x.id === Number(toHospital.value));
    const from = LEVELS.indexOf(own?.level), to = LEVELS.indexOf(target?.level);
    if (from >= 0 && to >= 0 && from !== to) direction.value = to < from ? "up" : "down";
    const found = await get("/api/v1/departments", { hospital_id: toHospital.value }).catch(() => ({ departments: [] }));
    department.append(...found.departments.map((d) => h("option", { value: d.id }, d.name)));
  });
  const box = errorBox("referral-error");
  const button = h("button", { type: "submit", class: "primary", "data-testid": "referral-submit" }, t("ws.referral.submit"));
  const form = h("form", { class: "card form-grid", "data-testid": "referral-form" },
    field("ws.patient.name", h("input", { name: "name", required: true, maxlength: 200, "data-testid": "referral-patient-name" })),
    field("ws.patient.sex", h("select", { name: "sex", required: true, "data-testid": "referral-patient-sex" },
      options(SEXES, "ws.sex", null, { blank: "ws.choose" }))),
    field("ws.patient.age", h("input", { name: "age", type: "number", min: 0, max: 150, required: true, "data-testid": "referral-patient-age" })),
    field("ws.patient.record", h("input", { name: "record_number", maxlength: 100, "data-testid": "referral-patient-record" })),
    field("ws.referral.to", toHospital),
    field("ws.referral.direction", direction),
    field("ws.referral.department", department),
    field("ws.referral.consultation", h("input", { name: "consultation_id", type: "number", min: 1, "data-testid": "referral-consultation" })),
    h("label", { class: "field span" }, h("span", { class: "label" }, t("ws.referral.reason")),
      h("textarea", { name: "reason", rows: 4, required: true, maxlength: 5000, "data-testid": "referral-reason" })),
    h("div", { class: "span" }, box, button));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, async () => {
      const v = Object.fromEntries(new FormData(form));
      const created = await post("/api/v1/referrals", {
        patient: { name: String(v.name).trim(), sex: v.sex, age: Number(v.age),
          record_number: String(v.record_number ?? "").trim() || null },
        direction: v.direction, to_hospital_id: Number(v.to_hospital_id),
        to_department_id: v.to_department_id ? Number(v.to_department_id) : null,
        consultation_id: v.consultation_id ? Number(v.consultation_id) : null,
        reason: String(v.reason).trim(),
      });
      location.hash = `#/referrals/${created.id}`;
    }, box);
  });
  page("ws.referral.new", form);
}

export async function detail(id) {
  const [r, names] = await Promise.all([get(`/api/v1/referrals/${id}`), hospitalNames()]);
  const departments = r.to_department_id
    ? await get("/api/v1/departments", { hospital_id: r.to_hospital_id }).then((x) => x.departments).catch(() => [])
    : [];
  const department = departments.find((d) => d.id === r.to_department_id);
  const reload = () => detail(id);
  const p = r.patient ?? { name: r.patient_name, sex: r.patient_sex, age: r.patient_age, record_number: r.patient_record_number };
  const box = errorBox("referral-action-error");
  const note = h("input", { maxlength: 5000, "data-testid": "referral-action-note", placeholder: t("ws.consultation.note") });
  // Only the moves the service allows this person now (the sending side cancels; the
  // receiving hospital's coordinators accept, reject, admit and complete).
  const moves = (r.allowed ?? []).map((to) => {
    const button = h("button", { type: "button", class: to === "rejected" || to === "cancelled" ? "danger" : "primary",
      "data-testid": `referral-action-${to}` }, t(`ws.referral-action.${to}`));
    button.addEventListener("click", () => busy(button, async () => {
      await post(`/api/v1/referrals/${id}/transitions`, { to, note: note.value.trim() });
      flash(t("ws.referral.moved", { state: t(`ws.referral-state.${to}`) }));
      reload();
    }, box));
    return button;
  });
  const text = h("textarea", { rows: 3, maxlength: 5000, "data-testid": "referral-note-text" });
  const add = h("button", { type: "button", "data-testid": "referral-note-add" }, t("ws.referral.add-note"));
  add.addEventListener("click", () => busy(add, async () => {
    await post(`/api/v1/referrals/${id}/notes`, { text: text.value.trim() });
    reload();
  }, box));
  const events = r.events ?? [];
  page("ws.referral.title",
    h("section", { class: "card", "data-testid": "referral-details" },
      h("div", { class: "row-between" }, h("h2", {}, `#${r.id}`),
        h("div", {}, badge("direction", r.direction), " ", badge("referral-state", r.state))),
      h("dl", { class: "facts" },
        h("dt", {}, t("ws.patient.name")), h("dd", {}, p.name ?? "—"),
        h("dt", {}, t("ws.patient.sex")), h("dd", {}, p.sex ? t(`ws.sex.${p.sex}`) : "—"),
        h("dt", {}, t("ws.patient.age")), h("dd", {}, p.age ?? "—"),
        h("dt", {}, t("ws.patient.record")), h("dd", {}, p.record_number || "—"),
        h("dt", {}, t("ws.referral.from")), h("dd", {}, names.get(r.from_hospital_id) ?? `#${r.from_hospital_id}`),
        h("dt", {}, t("ws.referral.to")), h("dd", {}, names.get(r.to_hospital_id) ?? `#${r.to_hospital_id}`),
        h("dt", {}, t("ws.referral.department")), h("dd", { "data-testid": "referral-department-value" },
          department?.name ?? (r.to_department_id ? `#${r.to_department_id}` : t("ws.referral.any-department"))),
        h("dt", {}, t("ws.referral.consultation")), h("dd", {}, r.consultation_id
          ? h("a", { href: `#/consultations/${r.consultation_id}` }, `#${r.consultation_id}`) : "—"),
        h("dt", {}, t("ws.col.created")), h("dd", {}, time(r.created_at))),
      h("h3", {}, t("ws.referral.reason")), h("p", { class: "prewrap" }, r.reason ?? "")),
    moves.length ? h("section", { class: "card actions", "data-testid": "referral-actions" },
      h("h2", {}, t("ws.consultation.actions")), field("ws.consultation.note", note), h("div", { class: "buttons" }, moves), box) : null,
    h("section", { class: "card", "data-testid": "referral-history" }, h("h2", {}, t("ws.referral.history")),
      h("ol", { class: "timeline" }, events.map((e) => h("li", { "data-testid": "referral-event" },
        h("span", { class: "when" }, time(e.at ?? e.created_at)), " ",
        e.to ? badge("referral-state", e.to) : h("span", { class: "tag" }, t("ws.referral.note")),
        e.actor_name ? ` ${e.actor_name}` : "", e.note || e.text ? h("span", { class: "note" }, ` ${e.note ?? e.text}`) : null))),
      field("ws.referral.add-note", text), add, moves.length ? null : box));
}
