// PTZ camera control (signaling/PROTOCOL.md: the `ptz` request, `ptz-ok`, the
// `ptz-state` event and `joined.ptz`).
//
// Dead-man rule: the server stops the camera when a `move` is not repeated for
// 400 ms. While a direction is held (pointer or key) the pad sends the same `move`
// at once and then every REFRESH_MS; releasing it (pointerup/leave/cancel, key up,
// focus loss, window blur, hidden page) sends `stop` at once.

import { has, t } from "./i18n.js";
import { badge, el, liveErrorText, roleLabel } from "./ui.js";

export const REFRESH_MS = 150;
const REQUEST_TIMEOUT_MS = 5000;
const ERROR_SHOWN_MS = 10000;
export const PRESETS = 6;

// What the camera is doing (`ptz-state.motion`: move, home, preset-recall) is shown as
// `live.ptz.motion.<motion>`: home and preset recall take seconds and end on their own;
// the server reports their end in `ptz-state`.

// Errors after which a `stop` would only be refused too (the server refuses every camera
// command while the camera is offline, and has already stopped a refused move).
const NO_STOP_AFTER = new Set(["ptz-denied", "ptz-unavailable", "forbidden", "disconnected",
  "camera-offline"]);

/** The room's PTZ state as the server reports it, and the requests this page sends. */
export class PtzModel {
  constructor(session) {
    this.session = session;
    this.state = null; // latest ptz-state without `type`, or null: no camera known
    this.lastError = null; // {code, message, action, at}
    this.lastOk = null; // {action, at}
    this.sent = 0; // PTZ requests sent (diagnostics)
    this._listeners = new Set();
    const c = session.client;
    c.on("joined", (reply) => {
      this.state = reply.ptz && typeof reply.ptz === "object" ? stateOf(reply.ptz) : null;
      this.lastError = null;
      this._changed();
    });
    c.on("ptz-state", (event) => {
      this.state = stateOf(event);
      this._changed();
    });
    c.on("disconnected", () => this._changed());
  }

  /** The token grants `ptz` and the page is in the room. */
  get allowed() {
    return this.session.state === "joined" && (this.session.grants ?? []).includes("ptz");
  }

  /** Show the controls: allowed, and the server has told us about a camera. */
  get available() {
    return this.allowed && this.state !== null;
  }

  /** This participant holds the control lease. */
  get mine() {
    const holder = this.state?.holder;
    return Boolean(holder) && holder === this.session.self?.id;
  }

  onChange(listener) {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  _changed() {
    for (const listener of this._listeners) {
      try {
        listener(this);
      } catch (err) {
        console.error("huizhen: PTZ render failed", err);
      }
    }
  }

  /** Send one `ptz` request; resolves to null on `ptz-ok`, else to the error (also kept in lastError). */
  async send(action, fields = {}) {
    this.sent += 1;
    try {
      await this.session.client.request({ type: "ptz", action, ...fields }, REQUEST_TIMEOUT_MS);
      this.lastOk = { action, at: Date.now() };
      return null;
    } catch (err) {
      const error = { code: err.code ?? "error", message: err.detail ?? err.message, action,
        at: Date.now() };
      this.lastError = error;
      this._changed();
      return error;
    }
  }

  /** A plain snapshot for `window.huizhen.ptz`. */
  expose() {
    const model = this;
    return {
      get state() { return model.state; },
      get lastError() { return model.lastError; },
      get lastOk() { return model.lastOk; },
      get available() { return model.available; },
      get mine() { return model.mine; },
      get sent() { return model.sent; },
    };
  }
}

function stateOf(message) {
  const { type: _type, id: _id, ...state } = message;
  return state;
}

function holderText(model) {
  const s = model.state;
  if (!s) return t("live.ptz.no-camera");
  if (!s.holder) return t("live.ptz.nobody");
  if (model.mine) return t("live.ptz.you");
  const name = s.holderName || t("live.ptz.another");
  return s.holderRole ? t("live.ptz.holder-role", { name, role: roleLabel(s.holderRole) })
    : t("live.ptz.holder", { name });
}

/** A refused or failed camera command: `live.ptz.error.<code>` (camera wording), else the
 * signalling error's text; the code itself is in the notice's data-code. */
function errorText(error) {
  const key = `live.ptz.error.${error.code}`;
  if (has(key)) return t(key);
  return has(`live.error.${error.code}`) ? liveErrorText(error.code) : t("live.ptz.error.failed");
}

/** The holder line, camera and motion badges and the take/release button, shared by both pages. */
class ControlRow {
  constructor(model, { takeLabel, releaseLabel, idPrefix }) {
    this.model = model;
    this.takeLabel = takeLabel;
    this.releaseLabel = releaseLabel;
    this.holder = el("span", { id: `${idPrefix}-holder`, class: "ptz-holder" });
    this.camera = el("span", { id: `${idPrefix}-camera`, class: "ptz-camera" });
    this.moving = el("span", { id: `${idPrefix}-moving`, class: "ptz-moving" });
    this.button = el("button", { id: `${idPrefix}-control`, type: "button", class: "primary" });
    this.button.addEventListener("click", () => this._toggle());
    this.node = el("div", { class: "ptz-control" },
      el("p", { class: "ptz-who" }, this.holder),
      el("p", { class: "ptz-badges" }, this.camera, this.moving),
      el("div", { class: "actions" }, this.button));
  }

  async _toggle() {
    const release = this.model.mine;
    this.button.disabled = true;
    await this.model.send(release ? "release" : "acquire");
    this.render();
  }

  render() {
    const { model } = this;
    const s = model.state ?? {};
    this.holder.textContent = holderText(model);
    this.holder.dataset.holder = s.holder ?? "";
    this.holder.dataset.mine = String(model.mine);
    const camera = s.camera === "online" ? "online" : "offline";
    this.camera.replaceChildren(`${t("live.ptz.camera")} `,
      badge(camera === "online" ? "connected" : "failed", t(`live.ptz.camera-${camera}`)));
    this.camera.dataset.state = camera;
    // `moving` is what the camera acknowledged; the server clears it on stop or arrival.
    const motionKey = `live.ptz.motion.${s.motion}`;
    const motion = !s.moving ? t("live.ptz.still") : has(motionKey) ? t(motionKey) : t("live.ptz.motion.move");
    this.moving.replaceChildren(badge(s.moving ? "connecting" : "closed", motion));
    this.moving.dataset.moving = String(Boolean(s.moving));
    this.moving.dataset.motion = s.moving ? (s.motion ?? "move") : "";
    this.button.textContent = model.mine ? this.releaseLabel : this.takeLabel;
    this.button.classList.toggle("primary", !model.mine);
    this.button.disabled = !model.available;
  }
}

/** A line under the controls for the latest PTZ error (and short confirmations). */
class Notice {
  constructor(model, id) {
    this.model = model;
    this.node = el("p", { id, class: "ptz-error", role: "alert", hidden: true });
    this.note = null; // {text, at}
    this._timer = null;
  }

  info(text) {
    this.note = { text, at: Date.now() };
    this.render();
  }

  render() {
    const error = this.model.lastError;
    const note = this.note;
    const now = Date.now();
    clearTimeout(this._timer);
    let shown = null;
    if (error && now - error.at < ERROR_SHOWN_MS && (!note || error.at >= note.at)) {
      shown = { text: errorText(error), kind: "error", code: error.code, at: error.at };
    } else if (note && now - note.at < ERROR_SHOWN_MS) {
      shown = { text: note.text, kind: "info", code: "", at: note.at };
    }
    this.node.hidden = !shown;
    this.node.textContent = shown?.text ?? "";
    this.node.dataset.kind = shown?.kind ?? "";
    this.node.dataset.code = shown?.code ?? "";
    if (shown) this._timer = setTimeout(() => this.render(), ERROR_SHOWN_MS - (now - shown.at) + 50);
  }
}

// Direction buttons: [name, label, pan, tilt]; tilt > 0 is up, pan > 0 is right.
const DIRECTIONS = [
  ["up-left", "↖", -1, 1], ["up", "▲", 0, 1], ["up-right", "↗", 1, 1],
  ["left", "◀", -1, 0], null, ["right", "▶", 1, 0],
  ["down-left", "↙", -1, -1], ["down", "▼", 0, -1], ["down-right", "↘", 1, -1],
];
// Their names (aria-label, title): `live.ptz.direction.<name>`.
// Keys held on the pad: [pan, tilt, zoom].
const KEY_VECTORS = {
  ArrowLeft: [-1, 0, 0], ArrowRight: [1, 0, 0], ArrowUp: [0, 1, 0], ArrowDown: [0, -1, 0],
  "+": [0, 0, 1], "=": [0, 0, 1], PageUp: [0, 0, 1], "-": [0, 0, -1], PageDown: [0, 0, -1],
};

const round2 = (x) => Math.round(x * 100) / 100 || 0; // no -0

/**
 * The expert's pad: press-and-hold arrows and zoom, speed, stop, home, presets,
 * the control lease, and the latest error. Hidden unless `model.available`.
 */
export class PtzPad {
  constructor(container, model) {
    this.container = container;
    this.model = model;
    this.hold = null; // {source: a button or "keyboard", vector, timer, started}
    this.keys = new Set();
    this.saveMode = false;
    this.control = new ControlRow(model, {
      takeLabel: t("live.ptz.take"), releaseLabel: t("live.ptz.release"), idPrefix: "ptz",
    });
    this.notice = new Notice(model, "ptz-error");
    this._build();
    model.onChange(() => this.render());
    // Anything that may swallow the pointer or key release stops the camera now.
    window.addEventListener("blur", () => this.releaseAll());
    window.addEventListener("pagehide", () => this.releaseAll());
    window.addEventListener("pointerup", () => this._endPointerHold());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") this.releaseAll();
    });
    model.session.client.on("disconnected", () => this.releaseAll(false));
    this.render();
  }

  // ------------------------------------------------------------------ DOM

  _build() {
    this.moveButtons = [];
    const grid = el("div", { class: "ptz-grid" });
    for (const d of DIRECTIONS) {
      if (!d) {
        const stop = el("button", { type: "button", class: "ptz-stop", "data-ptz": "stop",
          title: t("live.ptz.stop-title"), text: "■" });
        stop.setAttribute("aria-label", t("live.ptz.stop"));
        stop.addEventListener("click", () => this.stop());
        grid.append(stop);
        this.stopButton = stop;
        continue;
      }
      const [name, label, pan, tilt] = d;
      grid.append(this._moveButton(name, label, { pan, tilt, zoom: 0 }));
    }
    const zoom = el("div", { class: "ptz-zoom" },
      this._moveButton("zoom-in", "+", { pan: 0, tilt: 0, zoom: 1 }),
      el("span", { class: "ptz-zoom-label", text: t("live.ptz.zoom") }),
      this._moveButton("zoom-out", "−", { pan: 0, tilt: 0, zoom: -1 }));

    this.speed = el("input", { id: "ptz-speed", type: "range", min: "10", max: "100", step: "5",
      value: "50" });
    this.speedValue = el("output", { id: "ptz-speed-value", for: "ptz-speed" });
    this.speed.addEventListener("input", () => this._renderSpeed());
    const speedRow = el("label", { class: "ptz-speed" }, `${t("live.ptz.speed")} `, this.speed,
      this.speedValue);

    this.homeButton = el("button", { type: "button", "data-ptz": "home", text: t("live.ptz.home"),
      title: t("live.ptz.home-title") });
    this.homeButton.addEventListener("click", () => this.home());

    this.presetButtons = [];
    const presets = el("div", { class: "ptz-presets", role: "group" });
    presets.setAttribute("aria-label", t("live.ptz.presets"));
    for (let i = 0; i < PRESETS; i += 1) {
      const b = el("button", { type: "button", class: "ptz-preset", "data-preset": String(i),
        text: String(i + 1), title: t("live.ptz.preset-title", { number: i + 1 }) });
      b.addEventListener("click", (e) => this.preset(i, e.shiftKey || this.saveMode));
      this.presetButtons.push(b);
      presets.append(b);
    }
    this.saveButton = el("button", { type: "button", class: "ptz-save", text: t("live.ptz.save"),
      title: t("live.ptz.save-title") });
    this.saveButton.setAttribute("aria-pressed", "false");
    this.saveButton.addEventListener("click", () => {
      this.saveMode = !this.saveMode;
      this.render();
    });
    presets.append(this.saveButton);

    this.pad = el("div", { id: "ptz-pad", class: "ptz-pad", tabindex: "0", role: "group" }, grid, zoom);
    this.pad.setAttribute("aria-label", t("live.ptz.pad-label"));
    this.pad.addEventListener("keydown", (e) => this._onKeyDown(e));
    this.pad.addEventListener("keyup", (e) => this._onKeyUp(e));
    this.pad.addEventListener("focusout", (e) => {
      if (!this.pad.contains(e.relatedTarget)) this._clearKeys();
    });
    this.pad.addEventListener("contextmenu", (e) => e.preventDefault()); // long press on touch

    this.container.replaceChildren(
      el("h2", { text: t("live.ptz.title") }),
      el("div", { class: "ptz-body" },
        el("div", { class: "ptz-left" }, this.pad,
          el("p", { class: "hint", text: t("live.ptz.hold-hint") })),
        el("div", { class: "ptz-right" },
          this.control.node,
          el("div", { class: "ptz-row" }, speedRow, this.homeButton),
          el("p", { class: "hint", text: t("live.ptz.presets-hint") }),
          presets)),
      this.notice.node,
    );
    this._renderSpeed();
  }

  _moveButton(name, label, vector) {
    const b = el("button", { type: "button", class: "ptz-move", "data-ptz": name, text: label });
    const direction = t(`live.ptz.direction.${name}`);
    b.setAttribute("aria-label", direction);
    b.title = t("live.ptz.hold-title", { direction });
    b.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 || b.disabled) return;
      e.preventDefault(); // no text selection, no synthetic mouse events
      b.focus({ preventScroll: true });
      this._startHold(b, this._scaled(vector));
    });
    for (const type of ["pointerup", "pointerleave", "pointercancel", "lostpointercapture"]) {
      b.addEventListener(type, () => this._endHold(b));
    }
    b.ptzVector = vector;
    this.moveButtons.push(b);
    return b;
  }

  _renderSpeed() {
    this.speedValue.textContent = `${this.speed.value} %`;
  }

  get speedFactor() {
    return Number(this.speed.value) / 100;
  }

  _scaled({ pan, tilt, zoom }) {
    const s = this.speedFactor;
    return { pan: round2(pan * s), tilt: round2(tilt * s), zoom: round2(zoom * s) };
  }

  render() {
    const { model } = this;
    this.container.hidden = !model.available;
    this.control.render();
    this.notice.render();
    const enabled = model.available;
    for (const b of [...this.moveButtons, ...this.presetButtons, this.stopButton, this.homeButton,
      this.saveButton]) b.disabled = !enabled;
    this.speed.disabled = !enabled;
    for (const b of this.moveButtons) b.classList.toggle("held", this.hold?.source === b);
    this.pad.classList.toggle("holding", Boolean(this.hold));
    this.saveButton.setAttribute("aria-pressed", String(this.saveMode));
    this.saveButton.classList.toggle("active", this.saveMode);
    this.container.classList.toggle("save-mode", this.saveMode);
    if (!enabled && this.hold) this.releaseAll(false);
    // Somebody else took the lease (e.g. ward staff): the server has stopped our move.
    const s = model.state;
    if (this.hold && s?.holder && !model.mine && this.hold.started) this.releaseAll(false);
  }

  // ------------------------------------------------------------------ hold to move

  _startHold(source, vector) {
    if (!this.model.available) return;
    if (this.hold) clearInterval(this.hold.timer); // a new direction supersedes; no stop between
    const hold = { source, vector, timer: null, started: false };
    this.hold = hold;
    this._sendMove(hold);
    hold.timer = setInterval(() => this._sendMove(hold), REFRESH_MS);
    this.render();
  }

  async _sendMove(hold) {
    if (this.hold !== hold) return;
    const error = await this.model.send("move", { ...hold.vector });
    if (!error) {
      hold.started = true;
      return;
    }
    if (this.hold !== hold) return;
    // Refused or failed: stop repeating (and stop explicitly when that can still help).
    this._endHold(hold.source, !NO_STOP_AFTER.has(error.code));
  }

  /** End the hold started by `source` (a button, "keyboard"); `stop` unless it was refused. */
  _endHold(source, sendStop = true) {
    const hold = this.hold;
    if (!hold || hold.source !== source) return;
    clearInterval(hold.timer);
    this.hold = null;
    if (sendStop) this.model.send("stop");
    this.render();
  }

  _endPointerHold() {
    if (this.hold && this.hold.source !== "keyboard") this._endHold(this.hold.source);
  }

  /** Stop whatever is held (pointer or keys); `sendStop` false when the server already stopped. */
  releaseAll(sendStop = true) {
    this.keys.clear();
    if (this.hold) this._endHold(this.hold.source, sendStop);
  }

  // ------------------------------------------------------------------ keyboard

  _onKeyDown(e) {
    if (e.target === this.speed || e.altKey || e.ctrlKey || e.metaKey) return;
    const button = e.target.closest?.("button.ptz-move");
    let key = null;
    if (KEY_VECTORS[e.key]) key = e.key;
    else if ((e.key === " " || e.key === "Enter") && button) key = `button:${button.dataset.ptz}`;
    else if (e.key === "Escape") {
      e.preventDefault();
      this.stop();
      return;
    } else if (e.key === "Home") {
      e.preventDefault();
      if (!e.repeat) this.home();
      return;
    }
    if (!key) return;
    e.preventDefault(); // no scrolling, no click
    if (e.repeat || this.keys.has(key)) return; // auto-repeat: the refresh timer does this
    this.keys.add(key);
    this._keysChanged();
  }

  _onKeyUp(e) {
    const button = e.target.closest?.("button.ptz-move");
    const keys = [e.key];
    if (button) keys.push(`button:${button.dataset.ptz}`);
    let changed = false;
    for (const key of keys) changed = this.keys.delete(key) || changed;
    if (changed) {
      e.preventDefault();
      this._keysChanged();
    }
  }

  _clearKeys() {
    if (!this.keys.size) return;
    this.keys.clear();
    this._keysChanged();
  }

  _keysChanged() {
    let pan = 0;
    let tilt = 0;
    let zoom = 0;
    for (const key of this.keys) {
      let v = KEY_VECTORS[key];
      if (!v) {
        const b = this.moveButtons.find((x) => `button:${x.dataset.ptz}` === key);
        v = b ? [b.ptzVector.pan, b.ptzVector.tilt, b.ptzVector.zoom] : [0, 0, 0];
      }
      pan += v[0];
      tilt += v[1];
      zoom += v[2];
    }
    const clamp = (x) => Math.max(-1, Math.min(1, x));
    const unit = { pan: clamp(pan), tilt: clamp(tilt), zoom: clamp(zoom) };
    if (!unit.pan && !unit.tilt && !unit.zoom) {
      this._endHold("keyboard");
      return;
    }
    const vector = this._scaled(unit);
    const h = this.hold;
    if (h?.source === "keyboard" && h.vector.pan === vector.pan
        && h.vector.tilt === vector.tilt && h.vector.zoom === vector.zoom) return;
    this._startHold("keyboard", vector);
  }

  // ------------------------------------------------------------------ one-shot commands

  stop() {
    const hold = this.hold;
    if (hold) {
      clearInterval(hold.timer);
      this.hold = null;
      this.keys.clear();
    }
    this.model.send("stop");
    this.render();
  }

  async home() {
    this.releaseAll(false);
    // `ptz-ok` means the camera accepted it; the motion badge shows it until it arrives.
    if (!(await this.model.send("home"))) this.notice.info(t("live.ptz.going-home"));
  }

  async preset(index, store) {
    this.releaseAll(false);
    this.saveMode = false;
    this.render();
    const error = await this.model.send(store ? "preset-set" : "preset-recall", { preset: index });
    if (!error) {
      this.notice.info(t(store ? "live.ptz.preset-saved" : "live.ptz.preset-going",
        { number: index + 1 }));
    }
  }
}

/** The ward page's small takeover control: who steers, take/release, and stop. */
export class PtzTakeover {
  constructor(container, model) {
    this.container = container;
    this.model = model;
    this.control = new ControlRow(model, {
      takeLabel: t("live.ptz.take-camera"), releaseLabel: t("live.ptz.release-camera"),
      idPrefix: "ptz",
    });
    this.notice = new Notice(model, "ptz-error");
    // Anyone allowed to steer may stop the camera without taking control.
    this.stopButton = el("button", { id: "ptz-stop", type: "button", class: "ptz-stop",
      text: t("live.ptz.stop-camera") });
    this.stopButton.addEventListener("click", () => this.model.send("stop"));
    this.control.node.querySelector(".actions").append(this.stopButton);
    container.replaceChildren(el("h2", { text: t("live.ptz.title") }), this.control.node,
      el("p", { class: "hint", text: t("live.ptz.takeover-hint") }),
      this.notice.node);
    model.onChange(() => this.render());
    this.render();
  }

  render() {
    this.container.hidden = !this.model.available;
    this.control.render();
    this.notice.render();
    this.stopButton.disabled = !this.model.available;
  }
}
