// The coordinator's pages: the incoming queue, experts' week calendars (free/booked slots,
// book a consultation into a free slot, add slots), and the schedule of appointments.

import { formatTime, t } from "/i18n.js";
import { del, get, post } from "/workspace/api.js";
import { badge, busy, describe, empty, errorBox, field, flash, h, page, table, time } from "/workspace/dom.js";
import { me } from "/workspace/state.js";
import { MAX_PAGE, byUrgencyThenAge, consultationTable, expertNames } from "/workspace/consultations.js";

const DAY = 24 * 3600 * 1000;
const SHANGHAI = 8 * 3600 * 1000; // UTC+8 all year (no daylight saving)

/** Monday 00:00 Asia/Shanghai of the week holding `at`, as a Date. */
export function weekStart(at) {
  const local = new Date(at.getTime() + SHANGHAI);
  const midnight = Date.UTC(local.getUTCFullYear(), local.getUTCMonth(), local.getUTCDate());
  const monday = midnight - ((local.getUTCDay() + 6) % 7) * DAY;
  return new Date(monday - SHANGHAI);
}

/** "YYYY-MM-DD" of `at` in Asia/Shanghai. */
export function shanghaiDay(at) {
  return new Date(at.getTime() + SHANGHAI).toISOString().slice(0, 10);
}

/** "HH:MM" of `at` in Asia/Shanghai, without the zone name the calendar does not need. */
export function clock(at) {
  return formatTime(at, { date: false, zone: false });
}

export function shanghaiIso(day, hhmm) {
  return `${day}T${hhmm}:00+08:00`;
}

export async function queue() {
  const found = await get("/api/v1/consultations", { state: "requested", limit: MAX_PAGE });
  const waiting = found.consultations.filter((c) => c.state === "requested").sort(byUrgencyThenAge);
  page("ws.queue.title",
    h("p", { class: "muted" }, t("ws.queue.help")),
    waiting.length ? consultationTable(waiting, { testid: "queue-table" }) : empty("ws.queue.empty", "queue-empty"));
}

async function experts() {
  try {
    return (await get("/api/v1/experts")).experts;
  } catch {
    return [];
  }
}

function expertLabel(e) {
  return [e.display_name, e.specialty, e.department ?? e.hospital].filter(Boolean).join(" · ");
}

/**
 * A week calendar of one expert's slots. `onFree(slot)` makes free slots clickable
 * (booking); `deletable` lets coordinators remove free slots.
 */
function weekCalendar({ expertId, onFree = null, deletable = false }) {
  let start = weekStart(new Date());
  const title = h("strong", { "data-testid": "week-label" });
  const grid = h("div", { class: "week", "data-testid": "week-grid" });
  const box = errorBox("calendar-error");
  const load = async () => {
    const end = new Date(start.getTime() + 7 * DAY);
    title.textContent = `${formatTime(start, { date: true }).split(" ")[0]} – ${formatTime(new Date(end.getTime() - DAY), { date: true }).split(" ")[0]}`;
    grid.replaceChildren();
    if (!expertId()) { grid.append(empty("ws.calendar.choose-expert")); return; }
    let slots = [];
    try {
      slots = (await get(`/api/v1/experts/${expertId()}/slots`, { from: start.toISOString(), to: end.toISOString() })).slots;
    } catch (error) { box.show(error); return; }
    for (let day = 0; day < 7; day += 1) {
      const dayStart = new Date(start.getTime() + day * DAY);
      const key = shanghaiDay(dayStart);
      const mine = slots.filter((s) => shanghaiDay(new Date(s.start)) === key)
        .sort((a, b) => a.start.localeCompare(b.start));
      grid.append(h("div", { class: "day", "data-testid": "week-day", "data-day": key },
        h("h4", {}, t(`ws.weekday.${day}`), h("span", { class: "muted small" }, ` ${key.slice(5)}`)),
        mine.length ? mine.map((slot) => slotButton(slot)) : h("p", { class: "muted small" }, "—")));
    }
  };
  const slotButton = (slot) => {
    // The calendar is in Beijing time already: no "GMT+8" (Chinese puts it before the time).
    const label = `${clock(slot.start)}–${clock(slot.end)}`;
    const free = slot.status === "free";
    const button = h("button", { type: "button", class: `slot ${slot.status}`, "data-testid": "slot",
      "data-slot-id": slot.id, "data-status": slot.status, "data-start": slot.start,
      disabled: !free || !onFree, title: free ? t("ws.calendar.free") : t("ws.calendar.booked") },
      h("span", {}, label), h("span", { class: "small" }, free ? t("ws.calendar.free")
        : slot.consultation_id ? `#${slot.consultation_id}` : t("ws.calendar.booked")));
    if (free && onFree) button.addEventListener("click", () => busy(button, () => onFree(slot), box));
    const wrap = h("div", { class: "slot-wrap" }, button);
    if (deletable && free) {
      const remove = h("button", { type: "button", class: "subtle small", "data-testid": "slot-delete",
        title: t("ws.calendar.delete") }, "×");
      remove.addEventListener("click", () => busy(remove, async () => { await del(`/api/v1/slots/${slot.id}`); await load(); }, box));
      wrap.append(remove);
    }
    return wrap;
  };
  const prev = h("button", { type: "button", "data-testid": "week-prev", onclick: () => { start = new Date(start.getTime() - 7 * DAY); load(); } }, t("ws.calendar.prev"));
  const next = h("button", { type: "button", "data-testid": "week-next", onclick: () => { start = new Date(start.getTime() + 7 * DAY); load(); } }, t("ws.calendar.next"));
  const today = h("button", { type: "button", class: "subtle", "data-testid": "week-today", onclick: () => { start = weekStart(new Date()); load(); } }, t("ws.calendar.today"));
  const element = h("div", { class: "calendar", "data-testid": "calendar" },
    h("div", { class: "toolbar" }, prev, today, next, title), box, grid);
  element.reload = load;
  element.box = box;
  return element;
}

/** The consultation page's panel: choose an expert, click a free slot to book it. */
export async function assignPanel(c, reload) {
  const list = await experts();
  const select = h("select", { "data-testid": "assign-expert" },
    h("option", { value: "" }, t("ws.choose")),
    list.map((e) => h("option", { value: e.id, selected: e.id === c.expert_id }, expertLabel(e))));
  const calendar = weekCalendar({
    expertId: () => select.value,
    onFree: async (slot) => {
      try {
        await post(`/api/v1/consultations/${c.id}/appointment`, { slot_id: slot.id });
      } catch (error) {
        calendar.box.show(error);
        await calendar.reload();
        return;
      }
      flash(t("ws.assign.booked", { at: time(slot.start) }));
      reload();
    },
  });
  select.addEventListener("change", () => calendar.reload());
  calendar.reload();
  return h("section", { class: "card", "data-testid": "assign-panel" },
    h("h2", {}, t("ws.assign.title")), h("p", { class: "muted" }, t("ws.assign.help")),
    field("ws.col.expert", select), calendar);
}

function addSlotsForm(expertId, onAdded) {
  const box = errorBox("slots-error");
  const today = shanghaiDay(new Date());
  const form = h("form", { class: "inline-form", "data-testid": "add-slots-form" },
    field("ws.slots.date", h("input", { type: "date", name: "day", value: today, required: true, "data-testid": "slots-date" })),
    field("ws.slots.from", h("input", { type: "time", name: "from", value: "09:00", required: true, "data-testid": "slots-from" })),
    field("ws.slots.to", h("input", { type: "time", name: "to", value: "12:00", required: true, "data-testid": "slots-to" })),
    field("ws.slots.length", h("select", { name: "length", "data-testid": "slots-length" },
      [15, 20, 30, 45, 60, 90, 120].map((n) => h("option", { value: n, selected: n === 30 }, t("ws.slots.minutes", { n })))))
  );
  const button = h("button", { type: "submit", class: "primary", "data-testid": "slots-add" }, t("ws.slots.add"));
  form.append(button, box);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!expertId()) { box.show({ code: "ws" }); box.textContent = t("ws.calendar.choose-expert"); return; }
    busy(button, async () => {
      const from = new Date(shanghaiIso(form.day.value, form.from.value));
      const to = new Date(shanghaiIso(form.day.value, form.to.value));
      const step = Number(form.length.value) * 60_000;
      let added = 0;
      const failures = [];
      for (let at = from.getTime(); at + step <= to.getTime(); at += step) {
        try {
          await post(`/api/v1/experts/${expertId()}/slots`, { start: new Date(at).toISOString(), end: new Date(at + step).toISOString() });
          added += 1;
        } catch (error) {
          failures.push(`${clock(new Date(at))}: ${describe(error)}`);
          box.show(error);
        }
      }
      if (failures.length) box.textContent = failures.join("\n");
      if (added) flash(t("ws.slots.added", { n: added }));
      await onAdded();
    }, box);
  });
  return form;
}

export async function calendar() {
  const user = me();
  const list = await experts();
  const own = user.role === "expert";
  const select = h("select", { "data-testid": "calendar-expert", disabled: own },
    h("option", { value: "" }, t("ws.choose")),
    list.map((e) => h("option", { value: e.id, selected: own && e.id === user.id }, expertLabel(e))));
  if (own) select.value = String(user.id);
  const cal = weekCalendar({ expertId: () => select.value, deletable: true });
  select.addEventListener("change", () => cal.reload());
  page("ws.calendar.title", field("ws.col.expert", select),
    h("section", { class: "card" }, h("h2", {}, t("ws.slots.title")), addSlotsForm(() => select.value, () => cal.reload())),
    cal);
  cal.reload();
}

export async function schedule() {
  const names = await expertNames();
  const from = new Date(weekStart(new Date()).getTime());
  const to = new Date(from.getTime() + 28 * DAY);
  let entries = [];
  let failure = null;
  try {
    const query = { from: from.toISOString(), to: to.toISOString() };
    if (me().role === "expert") query.expert_id = me().id;
    const found = await get("/api/v1/appointments", query);
    entries = found.appointments ?? found.entries ?? found.slots ?? [];
  } catch (error) {
    failure = error;
  }
  entries.sort((a, b) => String(a.start).localeCompare(String(b.start)));
  const rows = entries.map((e) => h("tr", { "data-testid": "appointment-row", "data-consultation": e.consultation_id },
    h("td", {}, time(e.start)), h("td", {}, time(e.end, { date: false })),
    h("td", {}, names.get(e.expert_id) ?? `#${e.expert_id}`),
    h("td", {}, e.consultation_id ? h("a", { href: `#/consultations/${e.consultation_id}` }, `#${e.consultation_id}`) : "—"),
    h("td", {}, e.state ? badge("state", e.state) : "—"),
    h("td", {}, e.urgency ? badge("urgency", e.urgency) : "—"),
    h("td", {}, e.requesting_hospital_name ?? e.hospital_name ?? "—")));
  page("ws.schedule.title",
    h("p", { class: "muted" }, t("ws.schedule.range", { from: time(from), to: time(to) })),
    failure ? h("p", { class: "error", "data-testid": "schedule-error" }, describe(failure)) : null,
    rows.length ? table(["ws.col.start", "ws.col.end", "ws.col.expert", "ws.col.id", "ws.col.state",
      "ws.col.urgency", "ws.col.hospital"], rows, "schedule-table") : empty("ws.schedule.empty"));
}
