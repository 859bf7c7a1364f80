// The workspace shell: the catalogue, the session, the hash router, the top bar.
//
// Routes: #/signin, #/set-password/<token>, #/account, #/notifications and the pages of
// each role (see ROUTES). Everything a page shows comes from the catalogue (i18n/*.json).

import { errorText, language, loadCatalogue, saveLanguage, t, translatePage } from "/i18n.js";
import { api, get, patch, setCsrf } from "/workspace/api.js";
import { clear, h } from "/workspace/dom.js";
import { me, setMe } from "/workspace/state.js";
import * as account from "/workspace/account.js";
import * as consultations from "/workspace/consultations.js";
import * as consultation from "/workspace/consultation.js";
import * as coordinator from "/workspace/coordinator.js";
import * as referrals from "/workspace/referrals.js";
import * as admin from "/workspace/admin.js";
import * as stats from "/workspace/stats.js";
import * as audit from "/workspace/audit.js";
import * as recordings from "/workspace/recordings.js";
import * as notifications from "/workspace/notifications.js";

const POLL_MS = 30_000;
const ALL = ["requesting_doctor", "expert", "coordinator", "admin"];

// [pattern, roles (null: signed out allowed), render(match)]
const ROUTES = [
  [/^#\/signin$/, null, () => account.signIn()],
  [/^#\/set-password\/([A-Za-z0-9_\-.~]+)$/, null, (m) => account.setPassword(m[1])],
  [/^#\/account$/, ALL, () => account.accountPage()],
  [/^#\/notifications$/, ALL, () => notifications.page()],
  [/^#\/requests$/, ["requesting_doctor", "coordinator", "admin"], () => consultations.myRequests()],
  [/^#\/requests\/new$/, ["requesting_doctor"], () => consultations.newRequest()],
  [/^#\/worklist$/, ["expert"], () => consultations.worklist()],
  [/^#\/consultations\/(\d+)$/, ALL, (m) => consultation.page(Number(m[1]))],
  [/^#\/consultations\/(\d+)\/print\/(\d+)$/, ALL, (m) => consultation.printPage(Number(m[1]), Number(m[2]))],
  [/^#\/queue$/, ["coordinator", "admin"], () => coordinator.queue()],
  [/^#\/calendar$/, ["coordinator", "admin", "expert"], () => coordinator.calendar()],
  [/^#\/schedule$/, ["coordinator", "admin", "expert"], () => coordinator.schedule()],
  [/^#\/referrals$/, ALL, () => referrals.list()],
  [/^#\/referrals\/new$/, ALL, () => referrals.newReferral()],
  [/^#\/referrals\/(\d+)$/, ALL, (m) => referrals.detail(Number(m[1]))],
  [/^#\/admin\/hospitals$/, ["admin"], () => admin.hospitals()],
  [/^#\/admin\/users$/, ["admin"], () => admin.users()],
  [/^#\/admin\/tokens$/, ["admin"], () => admin.tokens()],
  [/^#\/admin\/stats$/, ["admin", "coordinator"], () => stats.page()],
  [/^#\/admin\/audit$/, ["admin"], () => audit.page()],
  [/^#\/admin\/recordings$/, ["admin"], () => recordings.unclaimedPage()],
];

const NAV = {
  requesting_doctor: [["#/requests", "ws.nav.requests"], ["#/requests/new", "ws.nav.new-request"],
    ["#/referrals", "ws.nav.referrals"]],
  expert: [["#/worklist", "ws.nav.worklist"], ["#/calendar", "ws.nav.calendar"],
    ["#/referrals", "ws.nav.referrals"]],
  coordinator: [["#/queue", "ws.nav.queue"], ["#/requests", "ws.nav.all"],
    ["#/calendar", "ws.nav.calendar"], ["#/schedule", "ws.nav.schedule"],
    ["#/referrals", "ws.nav.referrals"], ["#/admin/stats", "ws.nav.stats"]],
  admin: [["#/admin/users", "ws.nav.users"], ["#/admin/hospitals", "ws.nav.hospitals"],
    ["#/admin/tokens", "ws.nav.tokens"], ["#/admin/stats", "ws.nav.stats"],
    ["#/admin/audit", "ws.nav.audit"], ["#/admin/recordings", "ws.nav.recordings"],
    ["#/queue", "ws.nav.queue"],
    ["#/requests", "ws.nav.all"], ["#/referrals", "ws.nav.referrals"]],
};

const HOME = { requesting_doctor: "#/requests", expert: "#/worklist", coordinator: "#/queue",
  admin: "#/admin/users" };

let pollTimer = null;

async function loadSession() {
  try {
    const session = await api("GET", "/api/v1/session", null, { quiet401: true });
    signedIn(session);
  } catch {
    signedOutState();
  }
}

/** After sign-in (or a page load with a live session). */
export function signedIn(session) {
  setCsrf(session.csrf_token);
  setMe(session.user);
  // The account's language wins over the browser's, unless the address names one.
  const chosen = session.user.language;
  const explicit = /(^|[#&?])lang=/.test(location.hash + location.search);
  if (chosen && chosen !== language() && !explicit && !sessionStorage.getItem("huizhen.relang")) {
    saveLanguage(chosen);
    sessionStorage.setItem("huizhen.relang", "1");
    location.reload();
    return false;
  }
  sessionStorage.removeItem("huizhen.relang");
  renderTopbar();
  startPolling();
  return true;
}

function signedOutState() {
  setCsrf(null);
  setMe(null);
  document.getElementById("topbar").hidden = true;
  clearInterval(pollTimer);
  pollTimer = null;
}

function renderTopbar() {
  const user = me();
  document.getElementById("topbar").hidden = false;
  document.getElementById("user-name").textContent = user.display_name ?? user.username ?? "";
  document.getElementById("user-role").textContent = t(`ws.role.${user.role}`);
  document.getElementById("user-hospital").textContent = user.hospital_name ?? "";
  const nav = clear(document.getElementById("nav"));
  for (const [hash, key] of NAV[user.role] ?? []) {
    nav.append(h("a", { href: hash, "data-testid": `nav-${hash.slice(2).replace(/\//g, "-")}` }, t(key)));
  }
  markNav();
}

function markNav() {
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("current", location.hash.startsWith(link.getAttribute("href")));
  }
}

async function pollUnread() {
  try {
    const found = await get("/api/v1/notifications", { unread: 1 });
    const count = document.getElementById("bell-count");
    count.textContent = String(found.unread ?? 0);
    count.hidden = !found.unread;
  } catch { /* the bell waits for the next poll */ }
}

export function refreshBell() {
  pollUnread();
}

function startPolling() {
  clearInterval(pollTimer);
  pollUnread();
  pollTimer = setInterval(pollUnread, POLL_MS);
}

async function route() {
  const hash = location.hash || "#/home";
  const user = me();
  if (hash === "#/home" || hash === "#/" || hash === "#") {
    location.replace(user ? HOME[user.role] ?? "#/account" : "#/signin");
    return;
  }
  for (const [pattern, roles, render] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    if (roles !== null && !user) {
      sessionStorage.setItem("huizhen.after", hash);
      location.replace("#/signin");
      return;
    }
    if (roles !== null && !roles.includes(user.role)) {
      showForbidden();
      return;
    }
    markNav();
    document.getElementById("banner").hidden = true;
    // A new page starts at its top (the print view opened from the bottom of a long
    // consultation otherwise opened half-way down the sheet).
    window.scrollTo(0, 0);
    try {
      await render(match);
    } catch (error) {
      showError(error);
    }
    // Pages draw after their data arrives: if the address changed meanwhile, a newer
    // page may already have drawn and this older one has just covered it. Draw the page
    // the address names now (a render that finishes last always matches the address).
    if ((location.hash || "#/home") !== hash) await route();
    return;
  }
  location.replace("#/home");
}

function showForbidden() {
  const view = clear(document.getElementById("view"));
  view.append(h("p", { class: "error", "data-testid": "forbidden" }, t("error.forbidden")));
}

function showError(error) {
  if (error?.status === 401) return;
  const view = clear(document.getElementById("view"));
  view.append(h("p", { class: "error", role: "alert", "data-testid": "page-error",
    "data-code": error?.code ?? "" }, error?.code ? errorText(error.code, error.message) : t("error.unknown")));
}

function wireTopbar() {
  const select = document.getElementById("language");
  select.value = language();
  select.addEventListener("change", async () => {
    saveLanguage(select.value);
    if (me()) {
      try { await patch("/api/v1/me", { language: select.value }); } catch { /* saved locally */ }
    }
    location.reload();
  });
  document.getElementById("sign-out").addEventListener("click", async () => {
    try { await api("DELETE", "/api/v1/session", null, { quiet401: true }); } catch { /* gone */ }
    signedOutState();
    location.hash = "#/signin";
  });
  window.addEventListener("huizhen:signed-out", () => {
    if (!me()) return;
    signedOutState();
    sessionStorage.setItem("huizhen.after", location.hash);
    sessionStorage.setItem("huizhen.ended", "1");  // the sign-in page says why
    location.hash = "#/signin";
  });
  window.addEventListener("hashchange", route);
}

async function main() {
  await loadCatalogue({ base: "/" });
  translatePage();
  wireTopbar();
  await loadSession();
  window.huizhen = { ready: true, me };
  await route();
  document.body.dataset.ready = "1";
}

main();
