// Notifications: localised text from notify.<kind> (params filled in), mark read.

import { has, t } from "/i18n.js";
import { get, post } from "/workspace/api.js";
import { busy, empty, h, page as renderPage, time } from "/workspace/dom.js";
import { refreshBell } from "/workspace/app.js";

// The params hold ids, states and codes only; codes are shown in words. A referral's states
// are not a consultation's ("requested" reads 待接收 on a referral, 待分诊 on a consultation).
const WORDS = { direction: "ws.direction", urgency: "ws.urgency" };
const TIMES = new Set(["start", "end"]);

export function notificationText(n) {
  const key = `notify.${n.kind}`;
  const states = n.kind.startsWith("referral.") ? "ws.referral-state" : "ws.state";
  const params = { ...(n.params ?? {}) };
  for (const [name, value] of Object.entries(params)) {
    const prefix = name === "state" || name === "to" || name === "from" ? states : WORDS[name];
    if (prefix && has(`${prefix}.${value}`)) params[name] = t(`${prefix}.${value}`);
    else if (TIMES.has(name) && value) params[name] = time(value);
  }
  if (n.consultation_id && params.consultation_id === undefined) params.consultation_id = n.consultation_id;
  if (n.referral_id && params.referral_id === undefined) params.referral_id = n.referral_id;
  return has(key) ? t(key, params) : t("ws.notifications.generic", { kind: n.kind });
}

function link(n) {
  if (n.consultation_id) return `#/consultations/${n.consultation_id}`;
  if (n.referral_id) return `#/referrals/${n.referral_id}`;
  return null;
}

export async function page() {
  const found = await get("/api/v1/notifications");
  refreshBell(); // the list is fresher than the last poll: keep the bell in step with it
  const all = h("button", { type: "button", "data-testid": "notifications-read-all", disabled: !found.unread },
    t("ws.notifications.read-all"));
  all.addEventListener("click", () => busy(all, async () => { await post("/api/v1/notifications/read-all"); refreshBell(); await page(); }));
  const items = found.notifications.map((n) => {
    const read = h("button", { type: "button", class: "subtle small", "data-testid": "notification-read", hidden: n.read },
      t("ws.notifications.mark-read"));
    const item = h("li", { class: n.read ? "notification read" : "notification unread", "data-testid": "notification",
      "data-id": n.id, "data-kind": n.kind, "data-read": n.read ? "1" : "0" },
      h("span", { class: "when" }, time(n.created_at)),
      link(n) ? h("a", { href: link(n), "data-testid": "notification-link" }, notificationText(n)) : h("span", {}, notificationText(n)),
      read);
    read.addEventListener("click", () => busy(read, async () => {
      await post(`/api/v1/notifications/${n.id}/read`);
      item.className = "notification read";
      item.dataset.read = "1";
      read.hidden = true;
      refreshBell();
    }));
    return item;
  });
  renderPage("ws.notifications.title", h("div", { class: "toolbar" }, all),
    items.length ? h("ul", { class: "notifications", "data-testid": "notification-list" }, items) : empty("ws.notifications.empty"));
}
