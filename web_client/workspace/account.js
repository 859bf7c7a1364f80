// Sign-in, set-password links, and the person's own account (password, language, TOTP).

import { errorText, language, t } from "/i18n.js";
import { api, post } from "/workspace/api.js";
import { busy, errorBox, field, flash, h, page } from "/workspace/dom.js";
import { me } from "/workspace/state.js";
import { signedIn } from "/workspace/app.js";

export function signIn() {
  if (me()) {
    location.replace("#/home");
    return;
  }
  const box = errorBox("signin-error");
  const totp = h("input", { name: "totp", id: "signin-totp", "data-testid": "signin-totp",
    inputmode: "numeric", autocomplete: "one-time-code", maxlength: 8, pattern: "[0-9]*" });
  const totpField = field("ws.signin.totp", totp);
  totpField.hidden = true;
  const button = h("button", { type: "submit", class: "primary", "data-testid": "signin-submit" },
    t("ws.signin.submit"));
  const form = h("form", { class: "card narrow", id: "signin-form", "data-testid": "signin-form" },
    field("ws.signin.username", h("input", { name: "username", id: "signin-username",
      "data-testid": "signin-username", autocomplete: "username", required: true,
      autofocus: true, maxlength: 100 })),
    field("ws.signin.password", h("input", { name: "password", id: "signin-password",
      type: "password", "data-testid": "signin-password", autocomplete: "current-password",
      required: true })),
    totpField, box, button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, async () => {
      const body = { username: form.username.value.trim(), password: form.password.value };
      if (!totpField.hidden && totp.value.trim()) body.totp = totp.value.trim();
      try {
        const session = await api("POST", "/api/v1/session", body, { quiet401: true });
        const after = sessionStorage.getItem("huizhen.after") || "#/home";
        sessionStorage.removeItem("huizhen.after");
        sessionStorage.removeItem("huizhen.ended");
        history.replaceState(null, "", after.startsWith("#/signin") ? "#/home" : after);
        if (signedIn(session)) window.dispatchEvent(new HashChangeEvent("hashchange"));
      } catch (error) {
        if (error.code === "totp-required" || error.code === "totp-invalid") {
          totpField.hidden = false;
          totp.focus();
        }
        if (error.code === "locked-out") {
          const minutes = Math.max(1, Math.ceil((error.body.retry_after ?? 60) / 60));
          box.show(error);
          box.textContent = `${errorText(error.code, error.message)} ${t("ws.signin.retry", { minutes })}`;
          return;
        }
        throw error;
      }
    }, box);
  });
  // Sent here by a 401 (the session ended, or an admin disabled the account): say so,
  // until the person signs in again.
  const ended = sessionStorage.getItem("huizhen.ended") === "1";
  page("ws.signin.title",
    ended ? h("p", { class: "notice narrow", role: "status", "data-testid": "signin-ended" },
      t("ws.signin.ended")) : null,
    form, h("p", { class: "muted narrow" }, t("ws.signin.help")));
}

export function setPassword(token) {
  const box = errorBox("set-password-error");
  const button = h("button", { type: "submit", class: "primary", "data-testid": "set-password-submit" },
    t("ws.password.set"));
  const form = h("form", { class: "card narrow", "data-testid": "set-password-form" },
    h("p", {}, t("ws.password.policy")),
    field("ws.password.new", h("input", { name: "password", type: "password", required: true,
      autocomplete: "new-password", "data-testid": "set-password-new", minlength: 10 })),
    field("ws.password.repeat", h("input", { name: "repeat", type: "password", required: true,
      autocomplete: "new-password", "data-testid": "set-password-repeat" })),
    box, button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (form.password.value !== form.repeat.value) {
      box.show({ code: "ws-password-mismatch" });
      box.textContent = t("ws.password.mismatch");
      return;
    }
    busy(button, async () => {
      await api("POST", "/api/v1/password-links/redeem", { token, password: form.password.value },
        { quiet401: true });
      flash(t("ws.password.done"));
      location.hash = "#/signin";
    }, box);
  });
  page("ws.password.title", form);
}

export async function accountPage() {
  const user = me();
  const info = h("dl", { class: "facts", "data-testid": "account-facts" },
    h("dt", {}, t("ws.account.username")), h("dd", {}, user.username ?? "—"),
    h("dt", {}, t("ws.account.name")), h("dd", {}, user.display_name ?? "—"),
    h("dt", {}, t("ws.account.role")), h("dd", {}, t(`ws.role.${user.role}`)),
    h("dt", {}, t("ws.account.hospital")), h("dd", {}, user.hospital_name ?? "—"),
    h("dt", {}, t("ws.account.language")), h("dd", {}, t(`language.${language()}`)));

  const box = errorBox("password-error");
  const button = h("button", { type: "submit", class: "primary", "data-testid": "password-submit" },
    t("ws.password.change"));
  const form = h("form", { class: "card", "data-testid": "password-form" },
    h("h2", {}, t("ws.password.change")),
    h("p", { class: "muted" }, t("ws.password.policy")),
    field("ws.password.current", h("input", { name: "current", type: "password", required: true,
      autocomplete: "current-password", "data-testid": "password-current" })),
    field("ws.password.new", h("input", { name: "next", type: "password", required: true,
      autocomplete: "new-password", "data-testid": "password-new" })),
    box, button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, async () => {
      await post("/api/v1/session/password", { current_password: form.current.value,
        new_password: form.next.value });
      form.reset();
      flash(t("ws.password.changed"));
    }, box);
  });

  page("ws.account.title", info, form, totpCard(user));
}

function totpCard(user) {
  if (user.role !== "admin") return null;
  const box = errorBox("totp-error");
  const card = h("section", { class: "card", "data-testid": "totp-card" },
    h("h2", {}, t("ws.totp.title")),
    h("p", { "data-testid": "totp-state" }, t(user.totp_enabled ? "ws.totp.on" : "ws.totp.off")));
  const code = h("input", { name: "code", inputmode: "numeric", maxlength: 8, "data-testid": "totp-code" });
  if (user.totp_enabled) {
    const off = h("button", { type: "button", "data-testid": "totp-disable" }, t("ws.totp.disable"));
    off.addEventListener("click", () => busy(off, async () => {
      await post("/api/v1/me/totp/disable", { code: code.value.trim() });
      user.totp_enabled = false;
      flash(t("ws.totp.disabled"));
      accountPage();
    }, box));
    card.append(field("ws.totp.code", code), box, off);
  } else {
    const start = h("button", { type: "button", "data-testid": "totp-enrol" }, t("ws.totp.enrol"));
    start.addEventListener("click", () => busy(start, async () => {
      const enrolment = await post("/api/v1/me/totp");
      const confirm = h("button", { type: "button", class: "primary", "data-testid": "totp-confirm" },
        t("ws.totp.confirm"));
      confirm.addEventListener("click", () => busy(confirm, async () => {
        await post("/api/v1/me/totp/confirm", { code: code.value.trim() });
        user.totp_enabled = true;
        flash(t("ws.totp.enabled"));
        accountPage();
      }, box));
      start.replaceWith(h("div", {},
        h("p", {}, t("ws.totp.scan")),
        h("code", { class: "secret", "data-testid": "totp-secret" }, enrolment.secret),
        h("p", { class: "muted small" }, enrolment.uri),
        field("ws.totp.code", code), confirm));
    }, box));
    card.append(start, box);
  }
  return card;
}
