// Teaching recordings: list the recordings a token may see, play the composed teaching
// video with seeking, and show the patient's vitals as they were at the playback time.
//
// The token comes from the URL fragment (#token=…; never sent to the server in a URL).
// API calls carry it as a Bearer header. The <video> element cannot, so the page first
// asks for a playback ticket (POST …/playback): the server sets it as an HttpOnly,
// SameSite=Strict cookie scoped to /recordings/<id>/, and the page renews it while open.
// Optional: #token=…&recording=<id> opens that recording directly.

import { HlsLoader } from "./hls_loader.js";
import { formatTime, has, t } from "./i18n.js";
import { readFragment } from "./signaling.js";
import { el, preparePage } from "./ui.js";
import { displayUnit, vitalLabel } from "./vitals.js";

await preparePage();

const $ = (id) => document.getElementById(id);
const status = $("status");
const list = $("recordings");
const video = $("video");
const title = $("title");
const playerState = $("player-state");
const vitalsNode = $("vitals");
const progressBar = $("render-progress");

// The live panel's tiles, labels (`live.vital.<key>`) and colours (vitals.js), looked up
// at the video's time.
const TILES = [
  { key: "hr", unit: "/min", digits: 0, color: "#3ddc84", alt: "pr" },
  { key: "spo2", unit: "%", digits: 0, color: "#36c5f0" },
  { key: "rr", unit: "/min", digits: 0, color: "#f5d547" },
  { key: "temp", unit: "°C", digits: 1, color: "#e8eef3" },
  { key: "nibp", unit: "mmHg", digits: 0, color: "#ff8a80",
    parts: ["nibp_sys", "nibp_dia", "nibp_mean"] },
];
const DEFAULT_STALE_S = 30;
const WAVE_WINDOW_S = 4;
const GAP_PERIODS = 1.5; // as recorder/vod_vitals.py: more sample periods than this is a gap
const POLL_MS = 1500;

const state = {
  phase: "idle", // idle | loading | rendering | streaming | ready | failed | error
  // streaming: playing the HLS segments written so far while the render goes on
  recordings: [],
  selected: null,
  timeline: null,
  errors: [],
  renewTimer: null,
  pollTimer: null,
  generation: 0,
  loader: null,
  progress: null, // {state, progress (0..1), eta (s)} of the last poll while rendering
  progressReadings: [],
};

function setStatus(text, kind = "info") {
  status.textContent = text;
  status.dataset.kind = kind;
}

function fail(message) {
  state.errors.push({ message, at: Date.now() });
  setStatus(message, "error");
}

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, message, code = "") {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(token, path, { method = "GET" } = {}) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
    credentials: "same-origin",
    cache: "no-store",
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const reason = body && body.error ? body.error : response.statusText;
    throw new ApiError(response.status, reason, body && typeof body.code === "string" ? body.code : "");
  }
  return body;
}

/** What went wrong, in the page's language (the server's English message is not shown). */
function describe(error) {
  if (error instanceof ApiError) {
    if (error.status === 401) return t("recordings.error.unauthorized");
    if (error.status === 403) return t("recordings.error.forbidden");
    if (error.status === 404) return t("recordings.error.not-found");
    return t("recordings.error.server", { status: error.status });
  }
  return t("recordings.error.network");
}

// ------------------------------------------------------------------ vitals on the video's clock

function lastAtOrBefore(times, t) {
  let lo = 0;
  let hi = times.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (times[mid] <= t) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/** vitals.json (recorder/vod_vitals.py): per vital, times (s from the video's start) and values. */
class VitalsTimeline {
  constructor(doc) {
    this.doc = doc;
    this.vitals = doc.vitals || {};
    this.waves = doc.waves || {};
    this.staleAfter = doc.staleAfter || {};
  }

  get empty() {
    return !Object.keys(this.vitals).length && !Object.keys(this.waves).length;
  }

  /** {key: {value, unit, age, stale}} of the latest value of each vital at or before t. */
  at(t) {
    const out = {};
    const probe = t + 0.001; // a value that arrived exactly at t is shown at t
    for (const [key, series] of Object.entries(this.vitals)) {
      const i = lastAtOrBefore(series.t, probe);
      if (i < 0) continue;
      const age = Math.max(0, t - series.t[i]);
      out[key] = { value: series.v[i], unit: series.unit, age,
        stale: age > (this.staleAfter[key] ?? DEFAULT_STALE_S) };
    }
    return out;
  }

  /**
   * The samples of waveform `key` in (t - window, t], as [[time, value], …], time strictly
   * increasing. A gap (a chunk marked `gap`, or more than GAP_PERIODS sample periods after
   * the last sample) is a [time, null] point: the drawing lifts the pen there. A sample
   * not after the last one (an older vitals.json with overlapping chunks) is left out.
   */
  wave(key, t, window = WAVE_WINDOW_S) {
    const w = this.waves[key];
    if (!w || !(w.sampleRate > 0)) return [];
    const period = 1 / w.sampleRate;
    const points = [];
    let last = -Infinity;
    for (const chunk of w.chunks) {
      const end = chunk.t + chunk.values.length * period;
      if (end < t - window || chunk.t > t) continue;
      chunk.values.forEach((v, i) => {
        const at = chunk.t + i * period;
        if (!(at > t - window && at <= t) || at <= last + period / 2) return;
        if (points.length && (at - last > GAP_PERIODS * period || (i === 0 && chunk.gap))) {
          points.push([(last + at) / 2, null]);
        }
        points.push([at, v]);
        last = at;
      });
    }
    return points;
  }
}

function format(value, digits) {
  return Number.isFinite(value) ? value.toFixed(digits) : "—";
}

function clock(t) {
  if (!Number.isFinite(t)) return "—";
  const m = Math.floor(t / 60);
  const s = t - m * 60;
  return `${m}:${s.toFixed(1).padStart(4, "0")}`;
}

/** The replay's vitals panel: tiles and a pleth strip, for one instant of the video. */
class ReplayVitals {
  constructor(container) {
    this.container = container;
    this.grid = $("vital-tiles");
    this.clock = $("vitals-clock");
    this.waveNode = container.querySelector('[data-wave="pleth"]');
    this.canvas = this.waveNode.querySelector("canvas");
    this.timeline = null;
    this.shownAt = null;
    this.tiles = new Map();
    for (const spec of TILES) {
      const value = el("span", { class: "value", text: "—" });
      const sub = el("span", { class: "vital-sub" });
      const unit = el("span", { class: "vital-unit", text: spec.unit });
      const age = el("span", { class: "vital-age" });
      const node = el("div", { class: "vital", "data-vital": spec.key, "data-stale": "true" },
        el("div", { class: "vital-head" },
          el("span", { class: "vital-label", text: vitalLabel(spec.key) }), unit),
        el("div", { class: "vital-value" }, value, sub), age);
      node.style.setProperty("--vital-color", spec.color);
      this.tiles.set(spec.key, { node, value, sub, unit, age, spec });
      this.grid.append(node);
    }
  }

  load(timeline) {
    this.timeline = timeline;
    this.container.hidden = !timeline || timeline.empty;
    this.render(0);
  }

  render(at) {
    if (!this.timeline) return;
    this.shownAt = at;
    this.clock.textContent = t("recordings.vitals.at", { time: clock(at) });
    const now = this.timeline.at(at);
    for (const tile of this.tiles.values()) {
      const { spec } = tile;
      let text = "—";
      let sub = "";
      let entry = null;
      if (spec.parts) {
        const [sys, dia, mean] = spec.parts.map((k) => now[k]);
        entry = sys || dia || mean || null;
        if (entry) {
          text = `${format(sys?.value, 0)}/${format(dia?.value, 0)}`;
          sub = mean ? `(${format(mean.value, 0)})` : "";
        }
      } else {
        entry = now[spec.key] || (spec.alt ? now[spec.alt] : null) || null;
        if (entry) text = format(entry.value, spec.digits);
      }
      tile.value.textContent = text;
      tile.sub.textContent = sub;
      tile.unit.textContent = (entry && displayUnit(entry.unit)) || spec.unit;
      tile.node.dataset.stale = String(!entry || entry.stale);
      tile.node.dataset.hasValue = String(Boolean(entry));
      const age = entry && t("recordings.vitals.age", { seconds: entry.age.toFixed(1) });
      tile.age.textContent = !entry ? t("recordings.vitals.no-data")
        : entry.stale ? t("live.vitals.age-stale", { age }) : age;
    }
    this.drawWave(at);
  }

  drawWave(t) {
    const points = this.timeline.wave("pleth", t);
    this.waveNode.hidden = !this.timeline.waves.pleth;
    const ratio = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth;
    const h = this.canvas.clientHeight;
    if (!w || !h) return;
    this.canvas.width = Math.round(w * ratio);
    this.canvas.height = Math.round(h * ratio);
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    this.drawn = [];
    const finite = points.filter((p) => Number.isFinite(p[1]));
    if (finite.length < 2) return;
    let lo = Math.min(...finite.map((p) => p[1]));
    let hi = Math.max(...finite.map((p) => p[1]));
    if (hi - lo < 1e-9) {
      lo -= 1;
      hi += 1;
    }
    ctx.strokeStyle = "#36c5f0";
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    let pen = false;
    let run = 0;
    for (const [at, v] of points) {
      if (!Number.isFinite(v)) {
        if (pen) run += 1;
        pen = false;
        continue;
      }
      const x = w - ((t - at) / WAVE_WINDOW_S) * w;
      const y = 4 + (1 - (v - lo) / (hi - lo)) * (h - 8);
      if (pen) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      pen = true;
      this.drawn.push([x, y, run]);
    }
    ctx.stroke();
  }

  /** The pleth points last drawn, as [[x, y, run], …] in CSS px (a new run after a gap). */
  drawnWave() {
    return this.drawn || [];
  }

  /** What the tiles show, e.g. {hr: "72", nibp: "120/80"} (for tests). */
  shown() {
    const out = {};
    for (const [key, tile] of this.tiles) out[key] = tile.value.textContent;
    return out;
  }
}

// ------------------------------------------------------------------ recordings list

/** When a recording started: Asia/Shanghai with the zone, in the page's language. */
function formatDate(iso) {
  const when = iso ? new Date(iso) : null;
  return when && !Number.isNaN(when.getTime()) ? formatTime(when) : t("recordings.unknown-time");
}

function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return "";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

function renderList(onSelect) {
  const items = state.recordings.map((r) => {
    const button = el("button", { type: "button", class: "recording-item",
      "data-recording-id": r.id, "aria-pressed": String(r.id === state.selected) },
    el("span", { class: "recording-when", text: formatDate(r.startedAt) }),
    el("span", { class: "recording-meta",
      text: [r.room, formatDuration(r.duration), t("recordings.participants", { count: r.participants })]
        .filter(Boolean).join(" · ") }),
    el("span", { class: `recording-status status-${r.status}`, "data-status": r.status,
      text: has(`recordings.status.${r.status}`) ? t(`recordings.status.${r.status}`) : r.status }));
    button.addEventListener("click", () => onSelect(r.id));
    return el("li", {}, button);
  });
  list.replaceChildren(...items);
  if (!items.length) list.append(el("li", { class: "muted", text: t("recordings.none") }));
}

// ------------------------------------------------------------------ player

function waitFor(target, event) {
  return new Promise((resolve, reject) => {
    const ok = () => {
      target.removeEventListener("error", bad);
      resolve();
    };
    const bad = () => {
      target.removeEventListener(event, ok);
      reject(new Error(`media error ${target.error?.code ?? "?"}`));
    };
    target.addEventListener(event, ok, { once: true });
    target.addEventListener("error", bad, { once: true });
  });
}

function main() {
  const params = readFragment();
  const token = params.get("token");
  const panel = new ReplayVitals(vitalsNode);

  const follow = () => panel.render(video.currentTime);
  for (const event of ["timeupdate", "seeked", "seeking", "loadeddata", "pause"]) {
    video.addEventListener(event, follow);
  }
  // While playing, follow the frame on screen (its media time), not the coarse timeupdate.
  const onFrame = (_now, meta) => {
    panel.render(meta?.mediaTime ?? video.currentTime);
    video.requestVideoFrameCallback(onFrame);
  };
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
    video.requestVideoFrameCallback(onFrame);
  }

  window.huizhen = {
    replay: {
      get state() { return state.phase; },
      get progress() { return state.progress; },
      get progressReadings() { return state.progressReadings; },
      progressText: () => playerState.textContent,
      get streaming() { return Boolean(state.loader); },
      appendedSegments: () => state.loader?.appended ?? 0,
      decodedFrames: () => video.getVideoPlaybackQuality?.().totalVideoFrames ?? 0,
      get recordings() { return state.recordings; },
      get selected() { return state.selected; },
      get errors() { return state.errors; },
      currentTime: () => video.currentTime,
      duration: () => video.duration,
      vitalsAt: (t) => {
        const out = {};
        if (!state.timeline) return out;
        for (const [key, entry] of Object.entries(state.timeline.at(t))) out[key] = entry.value;
        return out;
      },
      shownVitals: () => panel.shown(),
      drawnWave: () => panel.drawnWave(),
      shownAt: () => panel.shownAt,
      select: (id) => select(id),
      seek: async (t) => {
        const done = waitFor(video, "seeked");
        video.currentTime = t;
        await done;
        panel.render(video.currentTime);
        return video.currentTime;
      },
    },
  };

  if (!token) {
    state.phase = "error";
    status.replaceChildren(t("live.no-token.text"), " ",
      el("a", { href: "./", text: t("live.no-token.start-page") }));
    status.dataset.kind = "error";
    return;
  }

  function stopPlayer() {
    clearInterval(state.renewTimer);
    clearTimeout(state.pollTimer);
    state.loader?.stop();
    state.loader = null;
    state.progress = null;
    state.progressReadings = [];
    hideProgress();
    video.pause();
    video.removeAttribute("src");
    video.load();
    video.hidden = true;
  }

  function showProgress(video) {
    state.progress = { state: video.state, progress: video.progress ?? 0, eta: video.eta ?? null };
    state.progressReadings.push(state.progress.progress);
    progressBar.hidden = false;
    if (video.state === "queued") {
      progressBar.removeAttribute("value");
      playerState.textContent = t("recordings.player.queued", { position: video.position ?? 1 });
      return;
    }
    const percent = Math.floor((video.progress ?? 0) * 100);
    progressBar.value = percent;
    const eta = Number.isFinite(video.eta) ? video.eta : null;
    const left = eta === null ? ""
      : eta >= 60 ? t("recordings.player.eta-minutes", { minutes: Math.ceil(eta / 60) })
        : t("recordings.player.eta-seconds", { seconds: Math.max(1, Math.ceil(eta)) });
    const text = t("recordings.player.progress", { percent });
    playerState.textContent = left ? `${text}${t("recordings.player.eta-separator")}${left}` : text;
  }

  function hideProgress() {
    progressBar.hidden = true;
  }

  /** Polls the render; starts streaming (``startStreaming``) once segments exist.
      Returns the final state ("ready", "failed", "unfinished"), or null if superseded. */
  async function waitRendered(id, generation, startStreaming) {
    for (;;) {
      const info = await api(token, `/api/v1/recordings/${encodeURIComponent(id)}`);
      if (generation !== state.generation) return null;
      if (["ready", "failed", "unfinished"].includes(info.video.state)) return info.video.state;
      if (info.video.state === "none") {
        // Not queued (e.g. the server restarted): ask again.
        await api(token, `/api/v1/recordings/${encodeURIComponent(id)}/render`, { method: "POST" });
      } else {
        showProgress(info.video);
        if (info.video.state === "rendering" && info.video.segments) startStreaming(info.video);
      }
      await new Promise((resolve) => {
        state.pollTimer = setTimeout(resolve, POLL_MS);
      });
    }
  }

  async function select(id) {
    const generation = ++state.generation;
    stopPlayer();
    state.selected = id;
    state.phase = "loading";
    renderList(select);
    const entry = state.recordings.find((r) => r.id === id);
    title.textContent = entry ? `${formatDate(entry.startedAt)} · ${entry.room}` : id;
    playerState.textContent = t("recordings.player.loading");
    const base = `/api/v1/recordings/${encodeURIComponent(id)}`;
    try {
      const [playback, doc] = await Promise.all([
        api(token, `${base}/playback`, { method: "POST" }),
        api(token, `${base}/vitals`),
      ]);
      if (generation !== state.generation) return;
      state.timeline = new VitalsTimeline(doc);
      panel.load(state.timeline);
      // Renew the ticket cookie well before it expires, for as long as the page plays.
      const renewMs = Math.max(10, (playback.ticketExpiresIn || 600) / 2) * 1000;
      state.renewTimer = setInterval(() => {
        api(token, `${base}/playback`, { method: "POST" }).catch((e) => fail(describe(e)));
      }, renewMs);
      const playing = () => {
        state.phase = "ready";
        playerState.textContent = t("recordings.player.duration",
          { duration: formatDuration(video.duration) });
        setStatus(t("recordings.status-line.playing", { when: entry ? formatDate(entry.startedAt) : id }), "ok");
        follow();
      };
      let streamed = null;
      // While rendering: play the segments written so far (HLS over MSE), keep polling
      // for progress, and call the video ready once the last segment is in.
      const startStreaming = (info) => {
        if (streamed) return;
        if (!HlsLoader.supported()) {
          // No MSE (an iPhone before iOS 17.1): the browser's own HLS, if it has one.
          if (!video.canPlayType("application/vnd.apple.mpegurl")) return;
          streamed = Promise.resolve();
          video.src = info.hls;
          video.hidden = false;
          state.phase = "streaming";
          return;
        }
        // MSE even where canPlayType says "maybe" for HLS (Chromium 156 does): the same
        // loader everywhere, and its end (#EXT-X-ENDLIST) is known to the page.
        const loader = new HlsLoader(video, info.hls);
        state.loader = loader;
        const metadata = waitFor(video, "loadedmetadata");
        streamed = loader.start().then(() => {
          if (generation !== state.generation || loader.stopped) return;
          hideProgress();
          playing();
        }).catch((error) => {
          if (generation !== state.generation) return;
          state.phase = "error";
          fail(t("recordings.error.stream", { reason: String(error?.message ?? error) }));
        });
        video.hidden = false;
        metadata.then(() => {
          if (generation === state.generation && state.phase === "rendering") {
            state.phase = "streaming";
            follow();
          }
        }, () => {});
      };
      let ready = playback.state;
      if (ready !== "ready" && ready !== "unfinished") {
        state.phase = "rendering";
        if (ready === "rendering" && playback.segments) startStreaming(playback);
        ready = await waitRendered(id, generation, startStreaming);
        if (ready === null) return;
        if (ready === "ready") {
          progressBar.value = 100;
          playerState.textContent = t("recordings.player.progress", { percent: 100 });
        }
        if (ready === "ready" && streamed) {
          await streamed; // the loader ends the stream at #EXT-X-ENDLIST
          if (generation === state.generation && !state.loader) {
            hideProgress(); // the browser's own HLS: the playlist has its end now
            playing();
          }
          return;
        }
      }
      hideProgress();
      if (ready === "unfinished") {
        state.phase = "failed";
        playerState.textContent = t("recordings.player.unfinished");
        return;
      }
      if (ready !== "ready") {
        state.phase = "failed";
        playerState.textContent = t("recordings.player.failed");
        fail(t("recordings.error.render-failed"));
        return;
      }
      const loaded = waitFor(video, "loadedmetadata");
      video.src = playback.media;
      video.hidden = false;
      await loaded;
      if (generation !== state.generation) return;
      playing();
    } catch (error) {
      if (generation !== state.generation) return;
      state.phase = "error";
      playerState.textContent = "";
      fail(describe(error));
    }
  }

  (async () => {
    try {
      const body = await api(token, "/api/v1/recordings");
      state.recordings = body.recordings;
      renderList(select);
      setStatus(t("recordings.status-line.count", { count: state.recordings.length }), "ok");
      const wanted = params.get("recording");
      if (wanted && state.recordings.some((r) => r.id === wanted)) await select(wanted);
    } catch (error) {
      state.phase = "error";
      fail(describe(error));
    }
  })();
}

main();
