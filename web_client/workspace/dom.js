// Small DOM helpers for the workspace pages (no framework): element building, badges,
// messages, forms. Never innerHTML with data: every text goes through textContent.

import { errorText, formatTime, t } from "/i18n.js";

/** h("button", {class: "x", "data-testid": "y", onclick: fn}, "text", child, ...) */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.className = value;
    } else if (name === "value" && "value" in node) {
      node.value = value;
    } else if (name === "checked" || name === "selected" || name === "disabled") {
      node[name] = Boolean(value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

/** An SVG element (charts); attributes only, never style="" (CSP). */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

/** The view's content: a heading and the page body. */
export function page(titleKey, ...body) {
  const view = document.getElementById("view");
  clear(view);
  document.title = `${t(titleKey)} · ${t("ws.title")}`;
  append(view, [h("h1", { "data-testid": "page-title" }, t(titleKey)), ...body]);
  return view;
}

export function badge(kind, value) {
  return h("span", { class: `badge ${kind}-${value}`, "data-testid": `${kind}-badge`,
    "data-value": value }, t(`ws.${kind}.${value}`));
}

export function time(value, options) {
  return value ? formatTime(value, options) : "—";
}

/** An error box under a form: the localised text for the server's code. */
export function errorBox(testid = "form-error") {
  const box = h("p", { class: "error", role: "alert", "data-testid": testid, hidden: true });
  box.show = (error) => {
    box.textContent = describe(error);
    box.dataset.code = error?.code ?? "";
    box.hidden = false;
  };
  box.hide = () => { box.hidden = true; box.textContent = ""; delete box.dataset.code; };
  return box;
}

export function describe(error) {
  if (error && error.code) return errorText(error.code, error.message);
  return t("error.unknown");
}

/** A short success/failure note at the top of the page. */
export function flash(message, kind = "ok") {
  const banner = document.getElementById("banner");
  banner.textContent = message;
  banner.className = `banner ${kind}`;
  banner.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { banner.hidden = true; }, kind === "ok" ? 4000 : 8000);
}

/** A labelled field: field("ws.patient.name", h("input", {...})). */
export function field(labelKey, control, hintKey = null) {
  return h("label", { class: "field" }, h("span", { class: "label" }, t(labelKey)), control,
    hintKey ? h("span", { class: "hint" }, t(hintKey)) : null);
}

export function options(values, keyPrefix, selected = null, { blank = null } = {}) {
  const list = blank ? [h("option", { value: "" }, t(blank))] : [];
  for (const value of values) {
    list.push(h("option", { value, selected: value === selected }, t(`${keyPrefix}.${value}`)));
  }
  return list;
}

export function table(headKeys, rows, testid) {
  return h("table", { class: "grid", "data-testid": testid },
    h("thead", {}, h("tr", {}, headKeys.map((key) => h("th", { scope: "col" }, key ? t(key) : "")))),
    h("tbody", {}, rows));
}

export function empty(key, testid = "empty") {
  return h("p", { class: "empty", "data-testid": testid }, t(key));
}

/** Disable a button while `work` runs; errors go to `box`. */
export async function busy(button, work, box = null) {
  button.disabled = true;
  box?.hide();
  try {
    return await work();
  } catch (error) {
    if (box) box.show(error); else flash(describe(error), "error");
    return undefined;
  } finally {
    button.disabled = false;
  }
}

export function formValues(form) {
  const values = {};
  for (const element of form.elements) {
    if (!element.name) continue;
    values[element.name] = element.type === "checkbox" ? element.checked : element.value.trim();
  }
  return values;
}
