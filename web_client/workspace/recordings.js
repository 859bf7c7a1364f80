// Recordings of a consultation (start, duration, size, verified) with the teaching video
// played from the records service (HTTP Range, the session cookie: no token in the URL),
// and the admin's page of unclaimed recordings (attach to a consultation, or discard).

import { t } from "/i18n.js";
import { get, post } from "/workspace/api.js";
import { describe, flash, h, page as renderPage, time } from "/workspace/dom.js";
import { sizeText } from "/workspace/materials.js";

const TEACHING = "vod/teaching.mp4";

function durationText(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  return t("ws.rec.duration", { m: Math.floor(s / 60), s: String(s % 60).padStart(2, "0") });
}

function facts(r) {
  const window = r.window_start && r.window_end
    ? t("ws.rec.window", { start: time(r.window_start), end: time(r.window_end) }) : null;
  return h("span", { class: "muted small", "data-testid": "recording-facts" },
    [time(r.started_at), durationText(r.duration), sizeText(r.bytes),
      r.verified ? t("ws.rec.verified") : t("ws.rec.unverified"), window,
    ].filter(Boolean).join(" · "));
}

function player(r) {
  if (!r.teaching_video) {
    return h("p", { class: "muted", "data-testid": "teaching-missing" }, t("ws.rec.no-teaching"));
  }
  const src = `/api/v1/recording-files/${r.id}?name=${encodeURIComponent(TEACHING)}`;
  return h("video", { src, controls: true, preload: "metadata", playsinline: true,
    class: "teaching-video", "data-testid": "teaching-video" });
}

export function recordingsSection(c) {
  const list = h("ul", { class: "recordings", "data-testid": "recordings-list" });
  get(`/api/v1/consultations/${c.id}/recordings`).then((found) => {
    list.replaceChildren(...found.recordings.map((r) => h("li", {
      class: "recording", "data-testid": "recording-item", "data-id": r.id },
    facts(r), player(r))));
    if (!found.recordings.length) {
      list.append(h("li", { class: "empty", "data-testid": "recordings-empty" }, t("ws.rec.empty")));
    }
  }).catch((error) => list.replaceChildren(h("li", { class: "error" }, describe(error))));
  return h("section", { class: "card", "data-testid": "recordings" },
    h("h2", {}, t("ws.rec.title")), list);
}

function unclaimedItem(r, reload) {
  const input = h("input", { type: "number", min: 1, "data-testid": "attach-consultation",
    "aria-label": t("ws.rec.attach-to") });
  const attach = h("button", { type: "button", "data-testid": "attach-recording", onclick: async () => {
    try {
      await post(`/api/v1/recording-files/${r.id}/attach`, { consultation_id: Number(input.value) });
      flash(t("ws.rec.attached"));
      reload();
    } catch (error) { flash(describe(error), "error"); }
  } }, t("ws.rec.attach"));
  const discard = h("button", { type: "button", class: "danger", "data-testid": "discard-recording", onclick: async () => {
    if (!confirm(t("ws.rec.discard-confirm"))) return;
    try {
      await post(`/api/v1/recording-files/${r.id}/discard`);
      flash(t("ws.rec.discarded"));
      reload();
    } catch (error) { flash(describe(error), "error"); }
  } }, t("ws.rec.discard"));
  return h("li", { class: "recording", "data-testid": "unclaimed-item", "data-recording": r.recording },
    h("strong", {}, t("ws.rec.room", { room: r.room })), " ", facts(r),
    h("div", { class: "row" }, input, attach, discard));
}

export async function unclaimedPage() {
  const found = await get("/api/v1/recordings", { status: "unclaimed" });
  const reload = () => unclaimedPage();
  const list = h("ul", { class: "recordings", "data-testid": "unclaimed-list" },
    ...found.recordings.map((r) => unclaimedItem(r, reload)));
  if (!found.recordings.length) list.append(h("li", { class: "empty" }, t("ws.rec.unclaimed-empty")));
  renderPage("ws.rec.unclaimed-title", h("section", { class: "card" },
    h("p", { class: "muted" }, t("ws.rec.unclaimed-help")), list));
}
