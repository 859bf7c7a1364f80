// One consultation: details, timeline, state actions, live room, materials, recordings, reports.

import { t, ZONE_NAME } from "/i18n.js";
import { get, post } from "/workspace/api.js";
import { badge, busy, errorBox, field, flash, h, page as renderPage, time } from "/workspace/dom.js";
import { me } from "/workspace/state.js";
import { expertNames } from "/workspace/consultations.js";
import { materialsSection } from "/workspace/materials.js";
import { recordingsSection } from "/workspace/recordings.js";
import { printView, reportsSection } from "/workspace/report.js";
import { assignPanel, clock } from "/workspace/coordinator.js";

const LIVE = new Set(["accepted", "scheduled", "in_session"]);

/** The state moves this person may try, per the workflow (the server decides). */
export function actionsFor(user, c) {
  const moves = [];
  const expert = user.role === "expert" && c.expert_id === user.id;
  const requester = user.role === "requesting_doctor" && c.requesting_hospital_id === user.hospital_id;
  if (expert && c.state === "requested") moves.push("accepted", "rejected");
  if (expert && (c.state === "accepted" || c.state === "scheduled") && c.type === "interactive") moves.push("in_session");
  if (requester && ["requested", "accepted", "scheduled"].includes(c.state)) moves.push("cancelled");
  if (requester && c.state === "reported") moves.push("closed");
  return moves;
}

const NEEDS_NOTE = new Set(["rejected", "cancelled"]);

function details(c, experts) {
  const p = c.patient ?? {};
  return h("section", { class: "card", "data-testid": "consultation-details" },
    h("div", { class: "row-between" },
      h("h2", {}, t("ws.consultation.heading", { id: c.id })),
      h("div", {}, badge("state", c.state), " ", badge("urgency", c.urgency))),
    h("dl", { class: "facts" },
      h("dt", {}, t("ws.patient.name")), h("dd", { "data-testid": "patient-name-value" }, p.name ?? "—"),
      h("dt", {}, t("ws.patient.sex")), h("dd", {}, p.sex ? t(`ws.sex.${p.sex}`) : "—"),
      h("dt", {}, t("ws.patient.age")), h("dd", {}, p.age ?? "—"),
      h("dt", {}, t("ws.patient.record")), h("dd", {}, p.record_number || "—"),
      h("dt", {}, t("ws.request.type")), h("dd", {}, t(`ws.type.${c.type}`)),
      h("dt", {}, t("ws.col.expert")), h("dd", { "data-testid": "expert-value" },
        c.expert_id ? experts.get(c.expert_id) ?? `#${c.expert_id}` : t("ws.consultation.no-expert")),
      h("dt", {}, t("ws.col.slot")), h("dd", { "data-testid": "slot-value" },
        c.slot ? `${time(c.slot.start, { zone: false })} – ${clock(c.slot.end)} ${ZONE_NAME}`
          : "—"),
      h("dt", {}, t("ws.col.created")), h("dd", {}, time(c.created_at))),
    h("h3", {}, t("ws.patient.summary")),
    h("p", { class: "prewrap", "data-testid": "patient-summary-value" }, p.summary ?? ""),
    h("h3", {}, t("ws.request.question")),
    h("p", { class: "prewrap", "data-testid": "question-value" }, c.question));
}

function timeline(c) {
  return h("section", { class: "card", "data-testid": "timeline" },
    h("h2", {}, t("ws.consultation.timeline")),
    h("ol", { class: "timeline" },
      (c.transitions ?? []).map((step) => h("li", { "data-testid": "timeline-step", "data-to": step.to },
        h("span", { class: "when" }, time(step.at)), " ",
        step.from ? [badge("state", step.from), " → "] : null, badge("state", step.to),
        step.note ? h("span", { class: "note" }, ` ${step.note}`) : null))));
}

function actions(c, reload) {
  const user = me();
  const box = errorBox("action-error");
  const note = h("input", { name: "note", maxlength: 5000, "data-testid": "action-note",
    placeholder: t("ws.consultation.note") });
  const buttons = actionsFor(user, c).map((to) => {
    const button = h("button", { type: "button", class: to === "cancelled" || to === "rejected" ? "danger" : "primary",
      "data-testid": `action-${to}` }, t(`ws.action.${to}`));
    button.addEventListener("click", () => {
      if (NEEDS_NOTE.has(to) && !confirm(t("ws.consultation.confirm", { action: t(`ws.action.${to}`) }))) return;
      busy(button, async () => {
        await post(`/api/v1/consultations/${c.id}/transitions`, { to, note: note.value.trim() });
        flash(t("ws.consultation.moved", { state: t(`ws.state.${to}`) }));
        reload();
      }, box);
    });
    return button;
  });
  const live = LIVE.has(c.state) && c.slot ? joinButton(c, box, reload) : null;
  if (!buttons.length && !live) return null;
  return h("section", { class: "card actions", "data-testid": "consultation-actions" },
    h("h2", {}, t("ws.consultation.actions")),
    buttons.length ? field("ws.consultation.note", note) : null,
    h("div", { class: "buttons" }, buttons, live), box);
}

/** The assigned expert joining a scheduled live consultation starts the session: without
 * the in_session move the report could never be published (reported needs in_session). */
export function startsSession(user, c) {
  return user.role === "expert" && c.expert_id === user.id && c.type === "interactive"
    && (c.state === "accepted" || c.state === "scheduled");
}

function joinButton(c, box, reload) {
  const key = me().role === "requesting_doctor" ? "ws.live.bedside" : "ws.live.join";
  const button = h("button", { type: "button", class: "live", "data-testid": "join-live" }, t(key));
  button.addEventListener("click", () => {
    // Open the tab in the click (popup blockers), then point it at the page.
    const tab = window.open("about:blank", "_blank");
    busy(button, async () => {
      let started = false;
      try {
        if (startsSession(me(), c)) {
          await post(`/api/v1/consultations/${c.id}/transitions`, { to: "in_session", note: "" });
          started = true;
        }
        const grant = await post(`/api/v1/consultations/${c.id}/room-token`);
        if (tab) { tab.opener = null; tab.location.href = grant.page_url; }
        else window.location.assign(grant.page_url);
      } catch (error) {
        tab?.close();
        throw error;
      } finally {
        if (started) reload();
      }
    }, box);
  });
  return button;
}

export async function page(id) {
  const [c, experts] = await Promise.all([get(`/api/v1/consultations/${id}`), expertNames()]);
  const reload = () => page(id);
  const user = me();
  const parts = [details(c, experts), actions(c, reload)];
  if ((user.role === "coordinator" || user.role === "admin") && ["requested", "accepted"].includes(c.state)) {
    parts.push(await assignPanel(c, reload));
  }
  parts.push(materialsSection(c), recordingsSection(c), await reportsSection(c, reload), timeline(c));
  const view = renderPage("ws.consultation.title", ...parts.filter(Boolean));
  view.dataset.consultation = String(id);
}

export async function printPage(id, reportId) {
  const [c, reports, experts] = await Promise.all([get(`/api/v1/consultations/${id}`),
    get(`/api/v1/consultations/${id}/reports`), expertNames()]);
  const report = reports.reports.find((r) => r.id === reportId);
  if (!report) throw { code: "not-found" };
  printView(c, report, experts);
}
