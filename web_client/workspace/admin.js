// Administration: hospitals and departments, users (create with a one-time set-password
// link, disable/enable, reset, change role), API tokens (issue/revoke).

import { t } from "/i18n.js";
import { del, get, patch, post } from "/workspace/api.js";
import { busy, empty, errorBox, field, flash, h, options, page, table, time } from "/workspace/dom.js";

const ROLES = ["requesting_doctor", "expert", "coordinator", "admin"];
// Every level the service knows (consult_api.models.HOSPITAL_LEVELS).
const LEVELS = ["county", "prefecture", "province"];

async function hospitalsList() {
  return (await get("/api/v1/hospitals")).hospitals;
}

export async function hospitals() {
  const all = await hospitalsList();
  const box = errorBox("hospital-error");
  const add = h("button", { type: "submit", class: "primary", "data-testid": "hospital-add" }, t("ws.admin.add"));
  const form = h("form", { class: "inline-form", "data-testid": "hospital-form" },
    field("ws.admin.hospital-name", h("input", { name: "name", required: true, maxlength: 200, "data-testid": "hospital-name" })),
    field("ws.admin.level", h("select", { name: "level", "data-testid": "hospital-level" }, options(LEVELS, "ws.level", "county"))),
    add, box);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(add, async () => {
      await post("/api/v1/hospitals", { name: form.name.value.trim(), level: form.level.value });
      flash(t("ws.admin.saved"));
      hospitals();
    }, box);
  });
  const departments = h("div", { "data-testid": "departments" });
  const choose = async (hospital) => {
    const found = await get("/api/v1/departments", { hospital_id: hospital.id }).catch(() => ({ departments: [] }));
    const dbox = errorBox("department-error");
    const dadd = h("button", { type: "submit", "data-testid": "department-add" }, t("ws.admin.add"));
    const dform = h("form", { class: "inline-form", "data-testid": "department-form" },
      field("ws.admin.department-name", h("input", { name: "name", required: true, maxlength: 200, "data-testid": "department-name" })), dadd, dbox);
    dform.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(dadd, async () => {
        await post("/api/v1/departments", { hospital_id: hospital.id, name: dform.name.value.trim() });
        await choose(hospital);
      }, dbox);
    });
    departments.replaceChildren(h("h2", {}, t("ws.admin.departments-of", { hospital: hospital.name })),
      found.departments.length ? h("ul", { class: "plain", "data-testid": "department-list" },
        found.departments.map((d) => h("li", { "data-testid": "department-item" }, d.name))) : empty("ws.list.empty"),
      dform);
  };
  const rows = all.map((x) => h("tr", { "data-testid": "hospital-row", "data-id": x.id },
    h("td", {}, String(x.id)), h("td", {}, x.name), h("td", {}, t(`ws.level.${x.level}`)),
    h("td", {}, h("button", { type: "button", class: "subtle", "data-testid": "hospital-departments",
      onclick: () => choose(x) }, t("ws.admin.departments")))));
  page("ws.admin.hospitals-title", h("section", { class: "card" }, form),
    table(["ws.col.id", "ws.admin.hospital-name", "ws.admin.level", ""], rows, "hospital-table"),
    h("section", { class: "card" }, departments));
}

function linkBox(result) {
  const url = new URL(result.set_password_url, location.origin).href;
  const input = h("input", { readonly: true, value: url, class: "wide", "data-testid": "set-password-link" });
  const copy = h("button", { type: "button", "data-testid": "copy-link", onclick: async () => {
    input.select();
    try { await navigator.clipboard.writeText(url); } catch { document.execCommand?.("copy"); }
    flash(t("ws.admin.copied"));
  } }, t("ws.admin.copy"));
  return h("div", { class: "card notice", "data-testid": "link-box" },
    h("p", {}, t("ws.admin.link-once", { at: time(result.link_expires_at) })), h("div", { class: "row" }, input, copy));
}

export async function users() {
  const allHospitals = await hospitalsList().catch(() => []);
  const names = new Map(allHospitals.map((x) => [x.id, x.name]));
  const hospitalFilter = h("select", { "data-testid": "users-hospital" },
    h("option", { value: "" }, t("ws.filter.all-hospitals")), allHospitals.map((x) => h("option", { value: x.id }, x.name)));
  const roleFilter = h("select", { "data-testid": "users-role" }, options(ROLES, "ws.role", null, { blank: "ws.filter.all-roles" }));
  const text = h("input", { type: "search", "data-testid": "users-text", placeholder: t("ws.admin.search-users") });
  const holder = h("div", {});
  const notice = h("div", {});
  const load = async () => {
    const found = await get("/api/v1/users", { hospital_id: hospitalFilter.value, role: roleFilter.value, q: text.value.trim() });
    const rows = found.users.map((u) => userRow(u, names, notice, load));
    holder.replaceChildren(rows.length ? table(["ws.col.id", "ws.account.username", "ws.account.name", "ws.account.role",
      "ws.account.hospital", "ws.admin.status", "ws.admin.last-sign-in", ""], rows, "users-table") : empty("ws.list.empty"));
  };
  for (const control of [hospitalFilter, roleFilter]) control.addEventListener("change", load);
  let timer = null;
  text.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(load, 250); });
  page("ws.admin.users-title", createUserForm(allHospitals, notice, load), notice,
    h("div", { class: "toolbar" }, hospitalFilter, roleFilter, text), holder);
  await load();
}

function userRow(u, names, notice, load) {
  const box = errorBox("user-error");
  const role = h("select", { "data-testid": "user-role-select", "aria-label": t("ws.account.role") }, options(ROLES, "ws.role", u.role));
  role.addEventListener("change", () => busy(role, async () => {
    try {
      await patch(`/api/v1/users/${u.id}`, { role: role.value });
    } catch (error) {
      role.value = u.role; // the refused change must not stay on screen
      throw error;
    }
    u.role = role.value;
    flash(t("ws.admin.saved"));
  }, box));
  const toggle = h("button", { type: "button", class: u.disabled ? "" : "danger", "data-testid": u.disabled ? "user-enable" : "user-disable" },
    t(u.disabled ? "ws.admin.enable" : "ws.admin.disable"));
  toggle.addEventListener("click", () => busy(toggle, async () => {
    await patch(`/api/v1/users/${u.id}`, { disabled: !u.disabled });
    await load();
  }, box));
  // A person without a username (made before sign-in existed) has no password to reset.
  const reset = u.username ? h("button", { type: "button", "data-testid": "user-reset" }, t("ws.admin.reset")) : null;
  reset?.addEventListener("click", () => busy(reset, async () => {
    const result = await post(`/api/v1/users/${u.id}/reset`);
    notice.replaceChildren(linkBox(result));
  }, box));
  return h("tr", { "data-testid": "user-row", "data-id": u.id, "data-username": u.username ?? "", class: u.disabled ? "disabled" : "" },
    h("td", {}, String(u.id)), h("td", {}, u.username ?? "—"), h("td", {}, u.display_name),
    h("td", {}, role), h("td", {}, names.get(u.hospital_id) ?? `#${u.hospital_id}`),
    h("td", { "data-testid": "user-status" }, t(u.disabled ? "ws.admin.disabled" : "ws.admin.active")),
    h("td", {}, time(u.last_sign_in)),
    h("td", { class: "buttons" }, toggle, reset, box));
}

function createUserForm(allHospitals, notice, load) {
  const box = errorBox("create-user-error");
  const role = h("select", { name: "role", "data-testid": "new-user-role" }, options(ROLES, "ws.role", "requesting_doctor"));
  const hospital = h("select", { name: "hospital_id", required: true, "data-testid": "new-user-hospital" },
    h("option", { value: "" }, t("ws.choose")), allHospitals.map((x) => h("option", { value: x.id }, x.name)));
  const department = h("select", { name: "department_id", "data-testid": "new-user-department" }, h("option", { value: "" }, "—"));
  hospital.addEventListener("change", async () => {
    department.replaceChildren(h("option", { value: "" }, "—"));
    if (!hospital.value) return;
    const found = await get("/api/v1/departments", { hospital_id: hospital.value }).catch(() => ({ departments: [] }));
    department.append(...found.departments.map((d) => h("option", { value: d.id }, d.name)));
  });
  const specialty = h("input", { name: "specialty", maxlength: 200, "data-testid": "new-user-specialty" });
  const specialtyField = field("ws.admin.specialty", specialty);
  // Experts need a specialty (the service refuses one without); nobody else has one.
  const sync = () => {
    specialtyField.hidden = role.value !== "expert";
    specialty.required = role.value === "expert";
  };
  role.addEventListener("change", sync);
  sync();
  const button = h("button", { type: "submit", class: "primary", "data-testid": "new-user-submit" }, t("ws.admin.create-user"));
  const form = h("form", { class: "card form-grid", "data-testid": "new-user-form" },
    h("h2", { class: "span" }, t("ws.admin.create-user")),
    field("ws.account.username", h("input", { name: "username", required: true, maxlength: 100, autocomplete: "off", "data-testid": "new-user-username" })),
    field("ws.account.name", h("input", { name: "display_name", required: true, maxlength: 200, "data-testid": "new-user-name" })),
    field("ws.account.role", role), field("ws.account.hospital", hospital),
    field("ws.admin.department", department), specialtyField,
    h("div", { class: "span" }, box, button));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, async () => {
      const body = { username: form.username.value.trim(), display_name: form.display_name.value.trim(),
        role: role.value, hospital_id: Number(hospital.value) };
      if (department.value) body.department_id = Number(department.value);
      if (role.value === "expert") body.specialty = specialty.value.trim();
      const result = await post("/api/v1/users", body);
      form.reset();
      department.replaceChildren(h("option", { value: "" }, "—"));
      sync();
      notice.replaceChildren(linkBox(result));
      await load();
    }, box);
  });
  return form;
}

export async function tokens() {
  const [found, people] = await Promise.all([get("/api/v1/api-tokens"), get("/api/v1/users").catch(() => ({ users: [] }))]);
  const names = new Map(people.users.map((u) => [u.id, u.display_name]));
  const notice = h("div", {});
  const box = errorBox("token-error");
  const user = h("select", { name: "user_id", required: true, "data-testid": "token-user" },
    h("option", { value: "" }, t("ws.choose")), people.users.map((u) => h("option", { value: u.id }, `${u.display_name} (${u.username ?? u.id})`)));
  const button = h("button", { type: "submit", class: "primary", "data-testid": "token-issue" }, t("ws.tokens.issue"));
  const form = h("form", { class: "inline-form", "data-testid": "token-form" },
    field("ws.tokens.user", user),
    field("ws.tokens.label", h("input", { name: "label", required: true, maxlength: 100, "data-testid": "token-label" })),
    field("ws.tokens.days", h("input", { name: "days", type: "number", min: 1, max: 365, value: 30, required: true, "data-testid": "token-days" })),
    button, box);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, async () => {
      const result = await post("/api/v1/api-tokens", { user_id: Number(user.value), label: form.label.value.trim(),
        ttl: Number(form.days.value) * 86400 });
      await tokens();
      document.querySelector("[data-testid=token-notice]")?.replaceChildren(
        h("div", { class: "card notice" }, h("p", {}, t("ws.tokens.once", { at: time(result.expires_at) })),
          h("input", { readonly: true, class: "wide", value: result.token, "data-testid": "token-value" })));
    }, box);
  });
  const rows = found.tokens.map((x) => {
    const revoke = h("button", { type: "button", class: "danger", "data-testid": "token-revoke", disabled: x.revoked },
      t("ws.tokens.revoke"));
    revoke.addEventListener("click", () => busy(revoke, async () => { await del(`/api/v1/api-tokens/${x.id}`); await tokens(); }));
    return h("tr", { "data-testid": "token-row", "data-id": x.id, class: x.revoked ? "disabled" : "" },
      h("td", {}, String(x.id)), h("td", {}, names.get(x.user_id) ?? `#${x.user_id}`), h("td", {}, x.label),
      h("td", {}, time(x.created_at)), h("td", {}, time(x.expires_at)), h("td", {}, time(x.last_used_at)),
      h("td", {}, x.revoked ? t("ws.tokens.revoked") : revoke));
  });
  page("ws.tokens.title", h("section", { class: "card" }, form), h("div", { "data-testid": "token-notice" }, notice),
    rows.length ? table(["ws.col.id", "ws.tokens.user", "ws.tokens.label", "ws.col.created", "ws.tokens.expires",
      "ws.tokens.last-used", ""], rows, "token-table") : empty("ws.list.empty"));
}
