// Live vital signs (signaling/PROTOCOL.md: `joined.vitals` and the `vitals` event),
// the monitor's alarms (`joined.alarms`, `alarm`) and changes of patient on the bed
// (`joined.patientChanged`, `patient-changed`).
//
// Numeric samples ({vital, value, unit, observedAt}) become big numbers with their
// age and a trend sparkline; waveform samples ({vital, values, sampleRate}) are
// played back at their sample rate on a scrolling strip. Alarms are listed, highest
// priority first, in their priority's colour (high red, medium yellow, low cyan), in the
// page's language, until the server reports them cleared. A change of patient shows a
// warning until someone confirms they checked the patient's identity. The messages
// carry measurements only, never patient identifiers, and so does this page.

import { has, t } from "./i18n.js";
import { el } from "./ui.js";

const MINUTE = 60000;

// The tiles, in display order (labels: `live.vital.<key>`). `staleMs`: older values are
// greyed out. Spot measurements (NIBP, temperature) stay valid far longer than continuous ones.
const TILES = [
  { key: "hr", unit: "/min", digits: 0, color: "#3ddc84", staleMs: 30000, trendMs: 5 * MINUTE },
  { key: "pr", unit: "/min", digits: 0, color: "#3ddc84", staleMs: 30000, trendMs: 5 * MINUTE },
  { key: "spo2", unit: "%", digits: 0, color: "#36c5f0", staleMs: 30000, trendMs: 5 * MINUTE },
  { key: "rr", unit: "/min", digits: 0, color: "#f5d547", staleMs: 30000, trendMs: 5 * MINUTE },
  { key: "temp", unit: "°C", digits: 1, color: "#e8eef3", staleMs: 10 * MINUTE, trendMs: 60 * MINUTE },
  { key: "nibp", unit: "mmHg", digits: 0, color: "#ff8a80", staleMs: 15 * MINUTE,
    trendMs: 60 * MINUTE, parts: ["nibp_sys", "nibp_dia", "nibp_mean"] },
];

/** The label of a vital tile or waveform: `live.vital.<key>` / `live.wave.<key>`, else the key. */
export function vitalLabel(key, kind = "vital") {
  const entry = `live.${kind}.${key}`;
  return has(entry) ? t(entry) : String(key).toUpperCase();
}
const OTHER = { digits: 1, color: "#c9b6ff", staleMs: 30000, trendMs: 5 * MINUTE };
const PART_OF = { nibp_sys: "nibp", nibp_dia: "nibp", nibp_mean: "nibp" };
const WAVE_COLORS = { pleth: "#36c5f0", ecg: "#3ddc84", resp: "#f5d547", co2: "#f5d547" };

// UCUM as sent -> what a clinician reads.
const UNITS = { "mm[Hg]": "mmHg", Cel: "°C", "[degF]": "°F", "/min": "/min", "{beats}/min": "/min",
  "{breaths}/min": "/min", "%": "%", "kPa": "kPa", "mV": "mV" };

// Alarm texts (`live.alarm.*`): "高优先级报警：SpO2 过低" / "High priority alarm: SpO2 low".
const PRIORITIES = ["high", "medium", "low", "none"];
const PRIORITY_RANK = { high: 3, medium: 2, low: 1, none: 0 };
// The monitor's event (IEEE 11073 MDC) or OBX-8 flag -> `live.alarm.event.<key>`.
const EVENT_KEYS = {
  MDC_EVT_LO: "low", MDC_EVT_HI: "high", MDC_EVT_ECG_ASYSTOLE: "asystole",
  MDC_EVT_ECG_V_FIB: "ventricular-fibrillation", MDC_EVT_APNEA: "apnoea",
  MDC_EVT_DESAT: "desaturation", MDC_EVT_LEAD_DISCONN: "lead-off",
};
const FLAG_KEYS = { L: "low", LL: "low", "<": "low", LU: "low", H: "high", HH: "high", ">": "high",
  HU: "high", A: "abnormal", AA: "abnormal" };

/** The text of an `alarm` event in the page's language, e.g. "高优先级报警：SpO2 过低". */
export function alarmText(alarm) {
  const priority = PRIORITIES.includes(alarm.priority) ? alarm.priority : "none";
  const vitalKey = `live.alarm.vital.${alarm.vital}`;
  const vital = alarm.vital ? (has(vitalKey) ? t(vitalKey) : String(alarm.vital)) : "";
  const flags = Array.isArray(alarm.flags) ? alarm.flags : [];
  const eventKey = EVENT_KEYS[alarm.name] ?? flags.map((f) => FLAG_KEYS[String(f).toUpperCase()])
    .find(Boolean);
  // Unknown events: the monitor's own text (or the event's name) as sent.
  const fallback = alarm.text || String(alarm.name || alarm.code || "").replace(/^MDC_EVT_/, "");
  const condition = eventKey ? t(`live.alarm.event.${eventKey}`) : fallback;
  let what = vital ? t("live.alarm.what", { vital, condition }).trim() : condition.trim();
  if (eventKey && alarm.text) what = t("live.alarm.with-monitor-text", { what, text: alarm.text });
  return t("live.alarm.text", { priority: t(`live.alarm.priority.${priority}`), what });
}

const WAVE_WINDOW_S = 6; // seconds of waveform on screen
const WAVE_MAX_LAG_S = 2; // more than this queued: skip ahead (e.g. after a hidden tab)
const WAVE_SILENT_MS = 5000; // no waveform data for this long: the strip greys out
const WAVE_PLAYOUT_MS = 250; // after running dry, buffer this long before playing again (jitter)
const STALE_COLOR = "#6b7884";

export function displayUnit(unit) {
  if (!unit) return "";
  return UNITS[unit] ?? unit;
}

function sampleKey(sample) {
  return String(sample.vital || sample.name || sample.code || "");
}

function parseTime(iso) {
  const t = typeof iso === "string" ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? t : null;
}

function formatAge(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 5) return t("live.vitals.age.now");
  if (s < 90) return t("live.vitals.age.seconds", { count: s });
  const m = Math.round(s / 60);
  if (m < 90) return t("live.vitals.age.minutes", { count: m });
  return t("live.vitals.age.hours", { count: Math.round(m / 60) });
}

function format(value, digits) {
  return Number.isFinite(value) ? value.toFixed(digits) : "—";
}

/** Size a canvas's backing store to its CSS box; returns [context, width, height] in CSS px. */
function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (!w || !h) return [null, 0, 0];
  const bw = Math.round(w * ratio);
  const bh = Math.round(h * ratio);
  if (canvas.width !== bw || canvas.height !== bh) {
    canvas.width = bw;
    canvas.height = bh;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return [ctx, w, h];
}

/** A waveform played back at its sample rate, scrolling right to left. */
class WaveformStrip {
  constructor(key, unit) {
    this.key = key;
    this.unit = unit;
    this.rate = 0;
    this.samples = []; // received, not yet trimmed; samples[0 .. played) have been shown
    this.played = 0; // playhead (fractional index into samples)
    this.playedTotal = 0; // samples played since the strip was created (for tests)
    this.received = 0;
    this.lastData = 0;
    this.lastFrame = null;
    this.resumeAt = null; // performance.now() at which playback resumes after running dry
    this.skipped = 0;
    this.color = WAVE_COLORS[key] ?? OTHER.color;
    this.canvas = el("canvas", { class: "wave-canvas" });
    this.node = el("div", { class: "wave", "data-wave": key },
      el("span", { class: "wave-label", text: vitalLabel(key, "wave") }),
      this.canvas);
    this.node.style.setProperty("--wave-color", this.color);
  }

  push(values, rate, unit) {
    if (rate !== this.rate) {
      this.rate = rate;
      this.samples = [];
      this.played = 0;
    }
    if (this.played >= this.samples.length) this.resumeAt = performance.now() + WAVE_PLAYOUT_MS;
    for (const v of values) this.samples.push(Number.isFinite(v) ? v : null);
    this.received += values.length;
    this.lastData = Date.now();
    this.unit = unit ?? this.unit;
    // Keep the delay bounded: never more than WAVE_MAX_LAG_S queued behind the playhead.
    const lag = this.samples.length - this.played;
    if (lag > rate * WAVE_MAX_LAG_S) {
      const target = this.samples.length - rate * 0.5;
      this.skipped += Math.floor(target - this.played);
      this.played = target;
    }
  }

  /** Advance the playhead by the time since the last frame and draw. */
  frame(now) {
    if (this.resumeAt !== null && now >= this.resumeAt) this.resumeAt = null;
    if (this.lastFrame !== null && this.rate > 0 && this.resumeAt === null) {
      const before = Math.floor(this.played);
      this.played = Math.min(this.samples.length, this.played + ((now - this.lastFrame) / 1000) * this.rate);
      this.playedTotal += Math.floor(this.played) - before;
    }
    this.lastFrame = now;
    const keep = Math.ceil(this.rate * WAVE_WINDOW_S) + 1;
    const drop = Math.floor(this.played) - keep;
    if (drop > 0) {
      this.samples.splice(0, drop);
      this.played -= drop;
    }
    // Redraw only when something visible changed (the loop runs at the display's rate).
    const key = `${Math.floor(this.played)}|${this.samples.length}|${this.silent}|${this.canvas.clientWidth}`;
    if (key !== this._drawn) {
      this._drawn = key;
      this.draw();
    }
  }

  get silent() {
    return Date.now() - this.lastData > WAVE_SILENT_MS;
  }

  draw() {
    const [ctx, w, h] = fitCanvas(this.canvas);
    if (!ctx) return;
    this.node.dataset.silent = String(this.silent);
    const end = Math.floor(this.played);
    const count = Math.min(end, Math.ceil(this.rate * WAVE_WINDOW_S));
    if (count < 2) return;
    const start = end - count;
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of this.samples) {
      if (v === null) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (!Number.isFinite(lo)) return;
    if (hi - lo < 1e-9) {
      hi += 1;
      lo -= 1;
    }
    const pad = 4;
    const xPerSample = w / (this.rate * WAVE_WINDOW_S);
    ctx.lineWidth = 1.6;
    ctx.lineJoin = "round";
    ctx.strokeStyle = this.silent ? STALE_COLOR : this.color;
    ctx.beginPath();
    let pen = false;
    for (let i = start; i < end; i += 1) {
      const v = this.samples[i];
      if (v === null) {
        pen = false;
        continue;
      }
      const x = w - (end - 1 - i) * xPerSample;
      const y = pad + (1 - (v - lo) / (hi - lo)) * (h - 2 * pad);
      if (pen) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      pen = true;
    }
    ctx.stroke();
  }

  expose() {
    return { sampleRate: this.rate, received: this.received, played: this.playedTotal,
      skipped: this.skipped, queued: Math.max(0, this.samples.length - Math.floor(this.played)),
      unit: this.unit };
  }
}

/**
 * The vitals panel: one tile per vital (value, unit, age, trend) and a strip per
 * waveform. Hidden until the server reports vitals for the room (`joined.vitals`
 * present, or a `vitals` event).
 */
export class VitalsPanel {
  constructor(container, session, { onToggle } = {}) {
    this.container = container;
    this.session = session;
    this.onToggle = onToggle; // called when the panel shows or hides
    this.present = false;
    this.latest = {}; // key -> {sample, t, receivedAt}
    this.history = {}; // key -> [{t, v}]
    this.waves = new Map(); // key -> WaveformStrip
    this.tiles = new Map(); // tile key -> {node, value, sub, unit, age, canvas, spec}
    this.device = null;
    this.alarms = new Map(); // alarm id -> the latest active `alarm` event
    this.patientChange = null; // the unconfirmed `patient-changed` event, if any
    this.confirmedChange = null; // changedAt of the change someone confirmed here
    this._frame = null;
    this._build();
    const c = session.client;
    c.on("joined", (reply) => {
      // After a reconnection the trends continue; `joined.vitals` adds what was missed.
      this.present = Array.isArray(reply.vitals);
      if (this.present) this.ingest(reply.vitals);
      if (Array.isArray(reply.alarms)) {
        this.alarms.clear(); // the server's list is the truth: missed clears are applied
        for (const alarm of reply.alarms) this.alarm(alarm);
      }
      if (reply.patientChanged) this.patientChanged(reply.patientChanged);
      this.render();
    });
    c.on("alarm", (event) => {
      this.present = true;
      this.alarm(event);
      this.render();
    });
    c.on("patient-changed", (event) => {
      this.present = true;
      this.patientChanged(event);
      this.render();
    });
    c.on("vitals", (event) => {
      this.present = true;
      if (typeof event.device === "string") this.device = event.device;
      this.ingest(Array.isArray(event.samples) ? event.samples : []);
      this.render();
    });
    setInterval(() => this.render(), 1000); // ages, staleness, trend scrolling
    this.render();
  }

  _build() {
    this.tileGrid = el("div", { class: "vital-tiles" });
    this.waveList = el("div", { class: "waves" });
    this.empty = el("p", { class: "vitals-empty", text: t("live.vitals.waiting") });
    this.alarmList = el("ul", { class: "alarms", "aria-live": "assertive",
      "aria-label": t("live.alarm.list") });
    const confirm = el("button", { type: "button", class: "patient-changed-ok",
      text: t("live.patient-changed.confirm") });
    confirm.addEventListener("click", () => {
      this.confirmedChange = this.patientChange?.changedAt ?? null;
      this.patientChange = null;
      this.render();
    });
    this.patientWarning = el("div", { class: "patient-changed", role: "alert", hidden: true },
      el("p", { class: "patient-changed-text", text: t("live.patient-changed.text") }), confirm);
    this.container.replaceChildren(
      el("h2", { text: t("live.vitals.title") }), this.patientWarning, this.alarmList, this.waveList,
      this.tileGrid, this.empty);
    for (const spec of TILES) this._tile(spec.key, spec);
  }

  _tile(key, spec) {
    if (this.tiles.has(key)) return this.tiles.get(key);
    const value = el("span", { class: "value", text: "—" });
    const sub = el("span", { class: "vital-sub" });
    const unit = el("span", { class: "vital-unit", text: spec.unit ?? "" });
    const age = el("span", { class: "vital-age" });
    const canvas = el("canvas", { class: "trend" });
    canvas.title = t("live.vitals.trend", { minutes: Math.round(spec.trendMs / MINUTE) });
    const node = el("div", { class: "vital", "data-vital": key, "data-stale": "true", hidden: true },
      el("div", { class: "vital-head" },
        el("span", { class: "vital-label", text: spec.label ?? vitalLabel(key) }), unit),
      el("div", { class: "vital-value" }, value, sub),
      canvas, age);
    node.style.setProperty("--vital-color", spec.color);
    const tile = { node, value, sub, unit, age, canvas, spec, key };
    this.tiles.set(key, tile);
    this.tileGrid.append(node);
    return tile;
  }

  /** Take a list of samples (from `joined.vitals` or a `vitals` event). */
  ingest(samples) {
    const now = Date.now();
    for (const sample of samples) {
      if (!sample || typeof sample !== "object") continue;
      const key = sampleKey(sample);
      if (!key) continue;
      const rate = Number(sample.sampleRate);
      if (Array.isArray(sample.values)) {
        if (!(rate > 0)) continue;
        let wave = this.waves.get(key);
        if (!wave) {
          wave = new WaveformStrip(key, sample.unit);
          this.waves.set(key, wave);
          this.waveList.append(wave.node);
        }
        wave.push(sample.values.map((v) => (typeof v === "number" ? v : Number.NaN)), rate,
          sample.unit);
        continue;
      }
      const v = typeof sample.value === "number" ? sample.value : Number.NaN;
      if (!Number.isFinite(v)) continue;
      const t = parseTime(sample.observedAt) ?? now;
      const previous = this.latest[key];
      if (!previous || t >= previous.t) this.latest[key] = { sample, t, receivedAt: now };
      // Trend points in time order; a late sample (e.g. an HL7 backlog) slots in.
      const points = (this.history[key] ??= []);
      let i = points.length;
      while (i > 0 && points[i - 1].t > t) i -= 1;
      if (i > 0 && points[i - 1].t === t) points[i - 1].v = v;
      else points.splice(i, 0, { t, v });
    }
    if (this.waves.size) this._animate();
  }

  /** Take an `alarm` event: keep it while active, drop it when cleared. */
  alarm(event) {
    if (!event || typeof event.id !== "string") return;
    if (event.state === "cleared") this.alarms.delete(event.id);
    else this.alarms.set(event.id, event);
  }

  /** Take a `patient-changed` event: the previous patient's alarms are gone. */
  patientChanged(event) {
    if (!event || event.changedAt === this.confirmedChange) return;
    this.patientChange = event;
    for (const [id, alarm] of this.alarms) {
      if (alarm.device === event.device) this.alarms.delete(id);
    }
  }

  _renderAlarms() {
    const alarms = [...this.alarms.values()].sort((a, b) =>
      (PRIORITY_RANK[b.priority] ?? 0) - (PRIORITY_RANK[a.priority] ?? 0)
      || (parseTime(b.observedAt) ?? 0) - (parseTime(a.observedAt) ?? 0));
    const key = alarms.map((a) => `${a.id}|${a.priority}|${a.text}|${a.flags}`).join("\n");
    if (key !== this._alarmsDrawn) {
      this._alarmsDrawn = key;
      this.alarmList.replaceChildren(...alarms.map((alarm) => {
        const priority = PRIORITIES.includes(alarm.priority) ? alarm.priority : "none";
        return el("li", { class: `alarm alarm-${priority}`, "data-alarm-id": alarm.id,
          "data-priority": priority, "data-vital": alarm.vital ?? "" },
        el("span", { class: "alarm-text", text: alarmText(alarm) }));
      }));
    }
    this.alarmList.hidden = alarms.length === 0;
    this.patientWarning.hidden = this.patientChange === null;
  }

  /** Latest numeric value per vital key (what `window.huizhen.vitals` shows). */
  get values() {
    const out = {};
    for (const [key, entry] of Object.entries(this.latest)) out[key] = entry.sample.value;
    return out;
  }

  ageOf(entry, now = Date.now()) {
    // The measurement time, but never younger than its arrival here (clock skew).
    return now - Math.min(entry.t, entry.receivedAt);
  }

  expose() {
    const panel = this;
    return {
      get vitals() { return panel.values; },
      get vitalSamples() {
        const out = {};
        for (const [key, entry] of Object.entries(panel.latest)) {
          out[key] = { ...entry.sample, ageMs: panel.ageOf(entry),
            stale: panel.ageOf(entry) > (panel._specFor(key).staleMs) };
        }
        return out;
      },
      get waveforms() {
        const out = {};
        for (const [key, wave] of panel.waves) out[key] = wave.expose();
        return out;
      },
      get alarms() {
        return [...panel.alarms.values()].map((a) => ({ ...a, display: alarmText(a) }));
      },
      get patientChanged() { return panel.patientChange; },
    };
  }

  _specFor(key) {
    const tileKey = PART_OF[key] ?? key;
    return TILES.find((s) => s.key === tileKey) ?? { ...OTHER, key, label: key.toUpperCase() };
  }

  render() {
    if (this.container.hidden === this.present) {
      this.container.hidden = !this.present;
      this.onToggle?.(this.present);
    }
    if (!this.present) return;
    this._renderAlarms();
    const now = Date.now();
    // Any numeric vital without a tile of its own gets a generic one.
    for (const key of Object.keys(this.latest)) {
      if (!PART_OF[key] && !this.tiles.has(key)) this._tile(key, this._specFor(key));
    }
    const has = (k) => Boolean(this.latest[k]);
    const anyNumbers = Object.keys(this.latest).length > 0;
    this.tileGrid.hidden = !anyNumbers; // only the waiting line until a monitor reports
    for (const tile of this.tiles.values()) {
      const { key, spec } = tile;
      if (spec.parts) this._renderNibp(tile, now);
      else this._renderSingle(tile, now);
      // HR and PR: show whichever the monitor sends; HR (with "—") when neither.
      let shown = has(key) || (spec.parts && spec.parts.some(has));
      if (key === "hr" && !has("pr")) shown = true;
      if (["spo2", "rr", "temp", "nibp"].includes(key)) shown = true;
      tile.node.hidden = !shown;
    }
    this.empty.hidden = anyNumbers || this.waves.size > 0;
  }

  _renderSingle(tile, now) {
    const entry = this.latest[tile.key];
    const { spec } = tile;
    if (!entry) {
      this._setTile(tile, "—", "", spec.unit, null, spec);
      this._drawTrend(tile, [], now);
      return;
    }
    const { sample } = entry;
    this._setTile(tile, format(sample.value, spec.digits), "", displayUnit(sample.unit) || spec.unit,
      this.ageOf(entry, now), spec, sample.status);
    this._drawTrend(tile, [this.history[tile.key] ?? []], now);
  }

  _renderNibp(tile, now) {
    const { spec } = tile;
    const [sysKey, diaKey, meanKey] = spec.parts;
    const sys = this.latest[sysKey];
    const dia = this.latest[diaKey];
    const mean = this.latest[meanKey];
    const main = sys || dia || mean;
    if (!main) {
      this._setTile(tile, "—/—", "", spec.unit, null, spec);
      this._drawTrend(tile, [], now);
      return;
    }
    const text = `${format(sys?.sample.value, 0)}/${format(dia?.sample.value, 0)}`;
    const sub = mean ? `(${format(mean.sample.value, 0)})` : "";
    const ages = [sys, dia, mean].filter(Boolean).map((e) => this.ageOf(e, now));
    this._setTile(tile, text, sub, displayUnit(main.sample.unit) || spec.unit, Math.max(...ages), spec,
      main.sample.status);
    this._drawTrend(tile, [this.history[sysKey] ?? [], this.history[diaKey] ?? []], now);
  }

  _setTile(tile, value, sub, unit, age, spec, status) {
    tile.value.textContent = value;
    tile.sub.textContent = sub;
    tile.unit.textContent = unit;
    const stale = age === null || age > spec.staleMs;
    tile.node.dataset.stale = String(stale);
    tile.node.dataset.hasValue = String(age !== null);
    if (status) tile.node.dataset.status = status;
    tile.age.textContent = age === null ? t("live.vitals.no-data")
      : stale ? t("live.vitals.age-stale", { age: formatAge(age) }) : formatAge(age);
  }

  _drawTrend(tile, series, now) {
    const [ctx, w, h] = fitCanvas(tile.canvas);
    if (!ctx) return;
    const { trendMs } = tile.spec;
    const from = now - trendMs;
    for (const points of series) {
      while (points.length && points[0].t < from - trendMs) points.shift(); // bounded memory
    }
    const visible = series.map((points) => points.filter((p) => p.t >= from));
    const all = visible.flat();
    if (!all.length) return;
    let lo = Math.min(...all.map((p) => p.v));
    let hi = Math.max(...all.map((p) => p.v));
    if (hi - lo < 2) {
      const mid = (hi + lo) / 2;
      lo = mid - 1;
      hi = mid + 1;
    }
    const pad = 3;
    const x = (t) => ((t - from) / trendMs) * w;
    const y = (v) => pad + (1 - (v - lo) / (hi - lo)) * (h - 2 * pad);
    const color = tile.node.dataset.stale === "true" ? STALE_COLOR : tile.spec.color;
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 1.5;
    for (const points of visible) {
      if (!points.length) continue;
      ctx.beginPath();
      points.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.v)) : ctx.moveTo(x(p.t), y(p.v))));
      ctx.stroke();
      const last = points[points.length - 1];
      ctx.beginPath();
      ctx.arc(x(last.t), y(last.v), 2.2, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  _animate() {
    if (this._frame !== null) return;
    const step = () => {
      const now = performance.now();
      for (const wave of this.waves.values()) wave.frame(now);
      this._frame = this.waves.size ? requestAnimationFrame(step) : null;
    };
    this._frame = requestAnimationFrame(step);
  }
}
