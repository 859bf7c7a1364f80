// The message catalogue for every page (no framework, no build step).
//
// Catalogue files live in i18n/<area>.json, listed in i18n/index.json; each entry holds
// both languages side by side: {"ward.title": {"zh-CN": "床旁", "en": "Bedside"}}. zh-CN
// is the default, English the second language. Placeholders are {name}.
//
// Markup: data-i18n="key" sets textContent; data-i18n-attr="placeholder:key;title:key"
// sets attributes. Server errors carry a stable `code`: errorText(code) looks up
// "error.<code>" and falls back to the server's English message only for unknown codes.

export const LANGUAGES = ["zh-CN", "en"];
export const DEFAULT_LANGUAGE = "zh-CN";
export const TIME_ZONE = "Asia/Shanghai";
// How times name their zone: Asia/Shanghai keeps no daylight saving time.
export const ZONE_NAME = "GMT+8";
const STORAGE_KEY = "huizhen.lang";

let current = DEFAULT_LANGUAGE;
let entries = {};

/** The page language: explicit (URL `lang=`) > saved choice > browser languages > zh-CN. */
export function chooseLanguage({ explicit = null, stored = null, accepted = [] } = {}) {
  for (const candidate of [explicit, stored, ...accepted]) {
    const found = normalise(candidate);
    if (found) return found;
  }
  return DEFAULT_LANGUAGE;
}

function normalise(tag) {
  if (!tag) return null;
  const lower = String(tag).toLowerCase();
  if (lower.startsWith("zh")) return "zh-CN";
  if (lower.startsWith("en")) return "en";
  return null;
}

function urlLanguage() {
  const fromFragment = new URLSearchParams(location.hash.replace(/^#/, "")).get("lang");
  return fromFragment ?? new URLSearchParams(location.search).get("lang");
}

function storedLanguage() {
  try { return localStorage.getItem(STORAGE_KEY); } catch { return null; }
}

/** Remember a person's choice (the workspace also saves it on their account). */
export function saveLanguage(language) {
  try { localStorage.setItem(STORAGE_KEY, language); } catch { /* private mode */ }
}

/** Load every catalogue area and pick the language; call once before rendering. */
export async function loadCatalogue({ base = "", language = null } = {}) {
  const index = await (await fetch(`${base}i18n/index.json`)).json();
  const files = await Promise.all(index.areas.map(
    async (area) => (await fetch(`${base}i18n/${area}.json`)).json()));
  entries = Object.assign({}, ...files);
  current = chooseLanguage({
    explicit: language ?? urlLanguage(), stored: storedLanguage(),
    accepted: navigator.languages ?? [navigator.language],
  });
  document.documentElement.lang = current;
  return current;
}

export function language() {
  return current;
}

/** The text for `key` in the page language, placeholders filled in. */
export function t(key, params = {}) {
  const entry = entries[key];
  let text = entry?.[current] ?? entry?.[DEFAULT_LANGUAGE];
  if (text === undefined) {
    console.warn(`i18n: no entry for ${key}`);
    text = key;
  }
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

export function has(key) {
  return key in entries;
}

/** The localised text of a server error code, else the server's (English) message. */
export function errorText(code, fallback = "") {
  return has(`error.${code}`) ? t(`error.${code}`) : (fallback || t("error.unknown"));
}

/** Translate the static markup under `root` (data-i18n and data-i18n-attr). */
export function translatePage(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of node.dataset.i18nAttr.split(";")) {
      const [attribute, key] = pair.split(":").map((s) => s.trim());
      if (attribute && key) node.setAttribute(attribute, t(key));
    }
  }
}

/** A time in Asia/Shanghai with its zone, the same shape in both languages (hospital
 * records are read across languages): "2026-03-03 09:00 GMT+8"; `zone: false` leaves the
 * zone out where a page already says Beijing time (a calendar). */
export function formatTime(value, { date = true, seconds = false, zone = true } = {}) {
  const when = value instanceof Date ? value : new Date(value);
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", {
    timeZone: TIME_ZONE, hourCycle: "h23", timeZoneName: "shortOffset",
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(when).map((part) => [part.type, part.value]));
  const text = [];
  if (date) text.push(`${parts.year}-${parts.month}-${parts.day}`);
  text.push(`${parts.hour}:${parts.minute}${seconds ? `:${parts.second}` : ""}`);
  if (zone) text.push(parts.timeZoneName);
  return text.join(" ");
}
