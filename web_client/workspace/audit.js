// The audit viewer (admins): filters, newest first, keyset pagination, CSV export.

import { t } from "/i18n.js";
import { get } from "/workspace/api.js";
import { busy, empty, errorBox, field, h, options, page, table, time } from "/workspace/dom.js";

const OUTCOMES = ["ok", "refused", "failed"];

/** The query for the filters: dates are whole days in Asia/Shanghai. */
export function auditQuery(form) {
  const query = {};
  for (const name of ["user_id", "consultation_id", "patient", "action", "outcome"]) {
    const value = form[name].value.trim();
    if (value) query[name] = value;
  }
  if (form.from.value) query.from = `${form.from.value}T00:00:00+08:00`;
  if (form.to.value) query.to = `${form.to.value}T23:59:59+08:00`;
  return query;
}

export async function page_() {
  const box = errorBox("audit-error");
  const form = h("form", { class: "inline-form", "data-testid": "audit-form" },
    field("ws.audit.user", h("input", { name: "user_id", type: "number", min: 1, "data-testid": "audit-user" })),
    field("ws.audit.patient", h("input", { name: "patient", maxlength: 200, "data-testid": "audit-patient" })),
    field("ws.audit.consultation", h("input", { name: "consultation_id", type: "number", min: 1, "data-testid": "audit-consultation" })),
    field("ws.audit.action", h("input", { name: "action", maxlength: 100, "data-testid": "audit-action" })),
    field("ws.audit.outcome", h("select", { name: "outcome", "data-testid": "audit-outcome" },
      options(OUTCOMES, "ws.outcome", null, { blank: "ws.filter.all" }))),
    field("ws.stats.from", h("input", { name: "from", type: "date", "data-testid": "audit-from" })),
    field("ws.stats.to", h("input", { name: "to", type: "date", "data-testid": "audit-to" })));
  const search = h("button", { type: "submit", class: "primary", "data-testid": "audit-search" }, t("ws.audit.search"));
  const exportLink = h("a", { class: "button", "data-testid": "audit-export", href: "/api/v1/audit/export", download: "" }, t("ws.audit.export"));
  form.append(search, exportLink, box);
  const holder = h("div", {});
  const more = h("button", { type: "button", "data-testid": "audit-more", hidden: true }, t("ws.audit.more"));
  let next = null;
  let rows = [];
  const draw = () => {
    holder.replaceChildren(rows.length ? table(["ws.audit.at", "ws.audit.user", "ws.account.role", "ws.account.hospital",
      "ws.audit.address", "ws.audit.action", "ws.audit.object", "ws.audit.outcome"], rows, "audit-table") : empty("ws.list.empty"));
    more.hidden = next === null;
  };
  const fetchPage = async (reset) => {
    const query = { ...auditQuery(form), limit: 50 };
    if (!reset && next !== null) query.before_id = next;
    const found = await get("/api/v1/audit", query);
    const made = found.entries.map((e) => h("tr", { "data-testid": "audit-row", "data-id": e.id, "data-outcome": e.outcome, class: `outcome-${e.outcome}` },
      h("td", {}, time(e.at, { seconds: true })), h("td", {}, e.actor_name ? `${e.actor_name} (#${e.actor_id})` : `#${e.actor_id ?? "—"}`),
      h("td", {}, e.role ? t(`ws.role.${e.role}`) : "—"), h("td", {}, e.hospital_name ?? (e.hospital_id ? `#${e.hospital_id}` : "—")),
      h("td", {}, e.address ?? "—"), h("td", {}, e.action),
      h("td", {}, e.object_type ? `${e.object_type} #${e.object_id ?? ""}` : "—", e.ids?.length ? h("span", { class: "muted small" }, ` [${e.ids.join(", ")}]`) : ""),
      h("td", {}, t(`ws.outcome.${e.outcome}`))));
    rows = reset ? made : rows.concat(made);
    next = found.next_before_id ?? null;
    const params = new URLSearchParams(auditQuery(form));
    exportLink.href = `/api/v1/audit/export${params.size ? `?${params}` : ""}`;
    draw();
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); busy(search, () => fetchPage(true), box); });
  more.addEventListener("click", () => busy(more, () => fetchPage(false), box));
  page("ws.audit.title", h("section", { class: "card" }, form), holder, more);
  await fetchPage(true);
}

export { page_ as page };
