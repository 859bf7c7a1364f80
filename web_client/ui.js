// Small DOM helpers shared by the live pages (no framework), the language switch, and
// the localised text of the signalling protocol's error codes (`live.error.<code>`).

import { FrameFlow, inboundFramesDecoded, watchFrames } from "./frameflow.js";
import {
  LANGUAGES, formatTime, has, language, loadCatalogue, saveLanguage, t, translatePage,
} from "./i18n.js";

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

/** Load the catalogue, translate the static markup and add the language switch. */
export async function preparePage() {
  try {
    await loadCatalogue();
  } catch (err) {
    // The page still works (showing the markup's Chinese and the keys) rather than not at all.
    console.error("huizhen: the message catalogue could not be loaded", err);
    return;
  }
  translatePage();
  const bar = document.querySelector("header.bar");
  if (bar) bar.append(languageSwitch());
}

/** 中文 / English: saves the choice and reloads the page in that language. */
export function languageSwitch() {
  const nav = el("nav", { class: "language-switch", "aria-label": t("live.language.switch") });
  for (const code of LANGUAGES) {
    const button = el("button", { type: "button", class: "language", "data-language": code,
      lang: code, text: t(`language.${code}`), "aria-pressed": String(code === language()) });
    button.addEventListener("click", () => switchLanguage(code));
    nav.append(button);
  }
  return nav;
}

export function switchLanguage(code) {
  if (code === language()) return;
  saveLanguage(code);
  // `lang=` in the address outranks the saved choice: rewrite it there too.
  const url = new URL(location.href);
  const fragment = new URLSearchParams(url.hash.replace(/^#/, ""));
  if (fragment.has("lang")) {
    fragment.set("lang", code);
    url.hash = fragment.toString();
  }
  if (url.searchParams.has("lang")) url.searchParams.set("lang", code);
  history.replaceState(history.state, "", url.toString());
  location.reload();
}

/** A connection state as a badge; `label` defaults to the state's localised name. */
export function badge(state, label = stateText(state)) {
  return el("span", { class: `badge state-${state}`, "data-state": state, text: label });
}

/** The localised name of a transport state (new, connecting, connected, ...). */
export function stateText(state) {
  if (has(`live.state.${state}`)) return t(`live.state.${state}`);
  return has(`live.health.state.${state}`) ? t(`live.health.state.${state}`) : String(state ?? "");
}

export function roleLabel(role) {
  return has(`live.role.${role}`) ? t(`live.role.${role}`) : String(role ?? "");
}

/**
 * The localised text of a signalling error code (signaling/PROTOCOL.md, plus the page's
 * own: disconnected, timeout, device); the server's (English) message only for a code
 * the catalogue does not know. `limit` (a `room-full` error's) chooses a more precise
 * text when the catalogue has one (`live.error.room-full.viewers`).
 */
export function liveErrorText(code, fallback = "", limit = undefined) {
  if (limit && has(`live.error.${code}.${limit}`)) return t(`live.error.${code}.${limit}`);
  if (has(`live.error.${code}`)) return t(`live.error.${code}`);
  return fallback || t("live.error.unknown");
}

/**
 * Whether the signalling link and each stream's media are up, from RoomSession's `link`
 * events ({signalling: "up"|"lost"|"reconnecting", media: {<streamId>: "connecting"|
 * "connected"|"failed"|"recovering"}}) when it sends them, else from the signalling
 * client's states. Server-reported states are stale while the link is not up.
 */
export class LinkWatch {
  constructor(session, onChange = () => {}) {
    this.session = session;
    this.link = null; // the latest `link` event, if the session emits them
    this.everJoined = false;
    const take = (link) => {
      if (link && typeof link === "object") this.link = link;
      onChange();
    };
    // Wherever RoomSession sends them from (itself or its client): both are listened to.
    if (typeof session.on === "function") session.on("link", take);
    session.client.on("link", take);
    session.client.on("joined", () => {
      this.everJoined = true;
      // A (re)join is the link up, whatever an older `link` event said.
      if (this.link) this.link = { ...this.link, signalling: "up" };
    });
  }

  get current() {
    return this.link ?? this.session.link ?? null;
  }

  /** "up", "connecting" (never joined yet), "reconnecting", "lost" or "closed". */
  get signalling() {
    const state = this.session.state;
    if (state === "failed") return "lost";
    if (state === "closed") return "closed";
    const reported = this.current?.signalling;
    if (reported) return reported;
    if (state === "joined") return "up";
    if (state === "disconnected") return "reconnecting";
    return this.everJoined ? "reconnecting" : "connecting";
  }

  /** The session's view of a stream's media ("recovering", "failed", ...), or null. */
  media(streamId) {
    return this.current?.media?.[streamId] ?? null;
  }
}

/**
 * The PTZ camera's badges (ptz.js) while the signalling link is not up: the last
 * `ptz-state` may no longer be true, so they say "unknown" rather than "online".
 */
export function markStale(cameraBadges) {
  for (const node of cameraBadges) {
    node.replaceChildren(`${t("live.ptz.camera")} `, badge("unknown"));
    node.dataset.state = "unknown";
  }
}

/**
 * The bed's display name from its binding (`joined.bed.label`, a place such as
 * "ICU 3 · 12 床", never patient data), as a getter for TileGrid's `bedLabel`; null when
 * the room's bed has no label.
 */
export function bedLabelOf(session) {
  let label = null;
  session.client.on("joined", (reply) => {
    label = typeof reply.bed?.label === "string" ? reply.bed.label : null;
  });
  return () => label;
}

/** "14:03:21" in Asia/Shanghai: the time of a video's last frame. */
export function clockTime(wall) {
  return formatTime(wall, { date: false, seconds: true, zone: false });
}

/**
 * The status line: connection state, or the reason the page stopped, and recent server errors.
 * `health` (optional): {signalling (LinkWatch.signalling), media: {state: "none"|"waiting"|
 * "flowing"|"frozen"|"recovering"|"sending", lastFrameWall}}: "connected" is said only while
 * media flows (or, with no media to receive or send, the room is joined).
 */
export function renderStatus(node, session, health = null) {
  const c = session.client;
  let text;
  let kind = "info";
  let code = "";
  const signalling = health?.signalling ?? null;
  const media = health?.media ?? null;
  switch (session.state) {
    case "idle":
    case "connecting":
      text = t(signalling === "reconnecting" ? "live.health.status.reconnecting"
        : "live.status.connecting");
      kind = signalling === "reconnecting" ? "warn" : "info";
      break;
    case "joining":
      text = t(signalling === "reconnecting" ? "live.health.status.reconnecting"
        : "live.status.joining");
      kind = signalling === "reconnecting" ? "warn" : "info";
      break;
    case "joined":
      if (signalling === "lost") {
        text = t("live.health.status.link-lost");
        kind = "error";
      } else if (signalling === "reconnecting") {
        text = t("live.health.status.reconnecting");
        kind = "warn";
      } else if (!media || media.state === "flowing" || media.state === "sending") {
        text = t("live.status.joined", { room: session.room });
        kind = "ok";
      } else if (media.state === "frozen") {
        text = t("live.health.status.frozen",
          { room: session.room, time: clockTime(media.lastFrameWall) });
        kind = "warn";
      } else if (media.state === "recovering") {
        text = t("live.health.status.recovering", { room: session.room });
        kind = "warn";
      } else if (media.state === "waiting") {
        text = t("live.health.status.waiting", { room: session.room });
      } else {
        text = t("live.health.status.in-room", { room: session.room });
      }
      break;
    case "disconnected":
      // Before the first join a few attempts; after it they never stop (signaling.js).
      text = c._everJoined
        ? t("live.status.retrying-unlimited", { attempt: c._attempt })
        : t("live.status.retrying", { attempt: c._attempt, max: c.maxRetries });
      kind = "warn";
      break;
    case "failed":
      code = c.fatal?.code ?? "unknown";
      if (code === "token-expired") {
        text = t("live.status.session-expired");
      } else {
        const reason = liveErrorText(code, c.fatal?.detail ?? c.fatal?.message, c.fatal?.limit);
        text = t(code === "unauthorized" ? "live.status.not-admitted" : "live.status.stopped",
          { reason });
      }
      kind = "error";
      break;
    case "redirecting":
      // Sent on by a `redirect`, or back to where the page was opened when its node died.
      text = t(c.failingOver ? "live.status.failover" : "live.status.redirecting");
      kind = c.failingOver ? "warn" : "info";
      break;
    case "relocating":
      text = t("live.status.relocating");
      kind = "warn";
      break;
    case "busy":
      text = t("live.status.busy");
      kind = "warn";
      break;
    case "closed":
      text = t("live.status.closed");
      kind = "warn";
      break;
    default:
      text = session.state;
  }
  const latest = session.errors[session.errors.length - 1];
  if (latest && Date.now() - latest.at < 15000 && session.state !== "failed") {
    text += t("live.status.error-suffix",
      { reason: liveErrorText(latest.code, latest.message, latest.limit) });
    kind = "error";
    code = latest.code;
  }
  node.textContent = text;
  node.dataset.state = session.state;
  node.dataset.kind = kind;
  node.dataset.code = code; // the error code (English, stable) for support staff and tests
  if (health) {
    node.dataset.link = signalling ?? "";
    node.dataset.media = media?.state ?? "none";
  }
}

export function renderIdentity(node, session) {
  const me = session.self;
  node.textContent = me ? `${me.name} · ${roleLabel(me.role)}` : "";
}

function streamKinds(stream) {
  if (!stream) return "";
  const kinds = stream.tracks.map((track) => track.kind);
  return kinds.sort((a, b) => (a === "video" ? -1 : b === "video" ? 1 : 0))
    .map((kind) => (has(`live.media.${kind}`) ? t(`live.media.${kind}`) : kind)).join(" + ");
}

/**
 * Every participant with a badge per transport (fed by `connection-state` events).
 * `mediaState(streamId)`: what this page sees of a stream it receives ("connected" only
 * while frames arrive, "frozen", ...; null when it does not watch it), which outranks the
 * server's report; `signalling`: while not "up", the server's reports are stale ("unknown").
 */
export function renderParticipants(list, session, { mediaState = () => null, signalling = "up" } = {}) {
  const shown = (transport) => {
    const seen = transport.direction === "publish" ? mediaState(transport.id) : null;
    if (seen) return seen;
    return signalling === "up" ? transport.state : "unknown";
  };
  const people = Object.values(session.participants)
    .sort((a, b) => Number(b.self) - Number(a.self) || a.name.localeCompare(b.name));
  const items = people.map((p) => {
    const transports = Object.values(p.transports).map((transport) => {
      const stream = session.streams[transport.id];
      let what;
      if (transport.direction === "publish") {
        what = t("live.participants.sends", { what: streamKinds(stream) || t("live.media.any") });
      } else {
        const target = Object.values(session.subscriptions).find((s) => s.id === transport.id);
        const owner = target && session.participants[session.streams[target.streamId]?.participant];
        what = owner ? t("live.participants.receives", { name: owner.name })
          : t("live.participants.receives-media");
      }
      return el("li", {
        class: "transport", "data-transport-id": transport.id,
        "data-direction": transport.direction, "data-state": shown(transport),
        "data-server-state": transport.state,
        title: t(transport.direction === "publish" ? "live.participants.publish-transport"
          : "live.participants.subscribe-transport"),
      }, el("span", { class: "what", text: what }), badge(shown(transport)));
    });
    return el("li", { class: "participant", "data-participant-id": p.id, "data-role": p.role },
      el("div", { class: "who" },
        el("span", { class: "name", text: p.name }),
        el("span", { class: `role role-${p.role}`, text: roleLabel(p.role) }),
        p.self ? el("span", { class: "you", text: t("live.participants.you") }) : null),
      transports.length
        ? el("ul", { class: "transports" }, ...transports)
        : el("p", { class: "muted", text: t("live.participants.no-media") }));
  });
  list.replaceChildren(...items);
  if (!items.length) list.append(el("li", { class: "muted", text: t("live.participants.nobody") }));
}

/**
 * One <video> tile per subscription, kept in sync with `session.subscriptions`.
 * `preferSound`: try to play with sound (fall back to muted + an Unmute button
 * when the browser blocks autoplay); otherwise start muted with an Unmute button.
 * `link`: a LinkWatch (the session's media view of each stream); `bedLabel()`: the bed's
 * display name from its binding (or null), shown on the bedside's tiles; `onHealth`:
 * called when a tile's media state changes (frames stop or resume).
 *
 * A tile's state comes from its frames: "connected" while they arrive, "frozen" (the
 * picture greyed, the time of the last frame shown) once they stop, "connecting" before
 * the first. A tile can be enlarged within the page (click the video, Esc to leave) or
 * shown fullscreen (the Fullscreen API; the browser leaves it on Esc).
 */
export class TileGrid {
  constructor(container, session, {
    preferSound = false, emptyText = t("live.tiles.no-video"), link = null,
    bedLabel = () => null, onHealth = () => {},
  } = {}) {
    this.container = container;
    this.session = session;
    this.preferSound = preferSound;
    this.emptyText = emptyText;
    this.link = link;
    this.bedLabel = bedLabel;
    this.onHealth = onHealth;
    this.tiles = new Map(); // stream id -> {node, video, flow, ...}
    this.empty = el("p", { class: "empty", text: emptyText });
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || document.fullscreenElement) return;
      for (const tile of this.tiles.values()) if (tile.enlarged) this._enlarge(tile, false);
    });
    document.addEventListener("fullscreenchange", () => {
      for (const tile of this.tiles.values()) this._update(tile);
    });
  }

  render() {
    const subs = this.session.subscriptions;
    for (const [streamId, tile] of this.tiles) {
      if (!subs[streamId] || subs[streamId] !== tile.sub) {
        tile.stopWatching?.();
        tile.video.srcObject = null;
        tile.node.remove();
        this.tiles.delete(streamId);
      }
    }
    for (const sub of Object.values(subs)) {
      const tile = this.tiles.get(sub.streamId) ?? this._create(sub);
      this._update(tile);
    }
    this.empty.textContent = this.session.state === "joined" ? this.emptyText
      : t("live.tiles.not-connected");
    if (this.tiles.size === 0) this.container.replaceChildren(this.empty);
    else this.empty.remove();
  }

  /** What this page sees of a stream's media: "connected" only while frames arrive. */
  mediaState(streamId) {
    const tile = this.tiles.get(streamId);
    return tile ? this._state(tile) : null;
  }

  /**
   * The page's media in one word for the status line: "none" (no video received),
   * "waiting", "flowing", "recovering" or "frozen" (with `lastFrameWall`); the worst tile
   * decides.
   */
  summary() {
    const rank = { flowing: 0, waiting: 1, recovering: 2, frozen: 3 };
    let worst = { state: "none", lastFrameWall: null };
    for (const tile of this.tiles.values()) {
      if (!this._hasVideo(tile)) continue;
      const state = this._state(tile);
      const word = state === "connected" ? "flowing" : state === "frozen" ? "frozen"
        : state === "recovering" ? "recovering" : "waiting";
      if (worst.state === "none" || rank[word] > rank[worst.state]) {
        worst = { state: word, lastFrameWall: tile.flow.lastFrameWall };
      }
    }
    return worst;
  }

  _hasVideo(tile) {
    const stream = this.session.streams[tile.sub.streamId];
    return stream ? stream.tracks.some((track) => track.kind === "video")
      : tile.sub.media.getVideoTracks().length > 0;
  }

  /** connecting, connected, frozen, recovering or failed (audio only: the connection's state). */
  _state(tile) {
    const { sub, flow } = tile;
    if (!this._hasVideo(tile)) return sub.pcState;
    const frames = flow.state(performance.now());
    if (frames === "flowing") return "connected";
    const reported = this.link?.media(sub.streamId);
    if (reported === "recovering" || reported === "failed") return reported;
    if (frames === "frozen") return "frozen";
    return sub.pcState === "failed" ? "failed" : "connecting";
  }

  _create(sub) {
    const video = el("video", { autoplay: true, playsInline: true });
    video.setAttribute("playsinline", "");
    video.muted = !this.preferSound;
    const frozenText = el("p", { class: "frozen-text" });
    const overlay = el("div", { class: "frozen-overlay", role: "status", hidden: true }, frozenText);
    const bedLabel = el("span", { class: "bed-label", hidden: true });
    const enlarge = el("button", { type: "button", class: "enlarge" });
    const fullscreen = el("button", { type: "button", class: "fullscreen" });
    const box = el("div", { class: "video-box" }, video, overlay);
    const name = el("span", { class: "name" });
    const role = el("span", { class: "role" });
    const state = el("span", { class: "badge" });
    const stats = el("span", { class: "stats" });
    const unmute = el("button", { type: "button", class: "unmute", text: t("live.tiles.unmute"),
      hidden: true });
    const node = el("figure", { class: "tile", "data-stream-id": sub.streamId },
      box, el("figcaption", {}, el("div", { class: "who" }, bedLabel, name, role), state, stats,
        el("div", { class: "view" }, unmute, enlarge, fullscreen)));
    const tile = { sub, node, box, video, overlay, frozenText, bedLabel, name, role, state, stats,
      unmute, enlarge, fullscreen, trackCount: 0, flow: new FrameFlow(), enlarged: false,
      stopWatching: null, shownState: null };
    unmute.addEventListener("click", () => {
      video.muted = !video.muted;
      video.play().catch(() => {});
      this._update(tile);
    });
    video.addEventListener("click", () => this._enlarge(tile, !tile.enlarged));
    enlarge.addEventListener("click", () => this._enlarge(tile, !tile.enlarged));
    fullscreen.addEventListener("click", () => this._fullscreen(tile));
    tile.stopWatching = watchFrames(video, tile.flow, {
      decodedFrames: () => inboundFramesDecoded(sub.pc),
      onChange: () => {
        this._update(tile);
        this.onHealth();
      },
    });
    this.tiles.set(sub.streamId, tile);
    this.container.append(node);
    return tile;
  }

  _enlarge(tile, on) {
    tile.enlarged = on;
    tile.node.classList.toggle("enlarged", on);
    document.body.classList.toggle("has-enlarged-tile",
      [...this.tiles.values()].some((other) => other.enlarged));
    this._update(tile);
  }

  _fullscreen(tile) {
    if (document.fullscreenElement) {
      document.exitFullscreen().catch(() => {});
      return;
    }
    if (!tile.box.requestFullscreen) return;
    tile.box.requestFullscreen().catch((err) => {
      console.warn("huizhen: fullscreen refused", err);
    });
  }

  _play(tile) {
    const { video } = tile;
    video.play().catch((err) => {
      if (err.name === "NotAllowedError" && !video.muted) {
        // Autoplay with sound is blocked: play muted and offer the button.
        video.muted = true;
        video.play().catch(() => {});
        this._update(tile);
      }
    });
  }

  _update(tile) {
    const { sub, video } = tile;
    const tracks = sub.media.getTracks().length;
    if (tracks !== tile.trackCount) {
      tile.trackCount = tracks;
      video.srcObject = sub.media;
      this._play(tile);
    }
    const stream = this.session.streams[sub.streamId];
    const owner = stream && this.session.participants[stream.participant];
    tile.name.textContent = owner?.name ?? t("live.tiles.unknown-participant");
    tile.role.textContent = owner ? roleLabel(owner.role) : "";
    tile.role.className = `role role-${owner?.role ?? "unknown"}`;
    // The bedside's tiles carry the bed's display name (from its binding; never a patient's).
    const bed = owner?.role === "ward" ? (this.bedLabel() || this.session.room) : null;
    tile.bedLabel.hidden = !bed;
    tile.bedLabel.textContent = bed ? t("live.health.bed", { label: bed }) : "";
    const state = this._state(tile);
    tile.state.className = `badge state-${state}`;
    tile.state.dataset.state = state;
    tile.state.textContent = stateText(state);
    tile.node.dataset.media = state;
    const frozen = state === "frozen" || state === "recovering" || state === "failed"
      ? tile.flow.lastFrameWall !== null : false;
    tile.node.classList.toggle("frozen", frozen);
    tile.overlay.hidden = !frozen;
    tile.frozenText.textContent = frozen
      ? t("live.health.frozen", { time: clockTime(tile.flow.lastFrameWall) }) : "";
    const hasVideo = stream?.tracks.some((t) => t.kind === "video");
    const hasAudio = sub.media.getAudioTracks().length > 0;
    tile.node.classList.toggle("audio-only", stream ? !hasVideo : false);
    const s = sub.stats;
    tile.stats.textContent = s && s.width && !frozen
      ? t("live.tiles.stats", { width: s.width, height: s.height, fps: Math.round(s.fps ?? 0) })
      : stream && !hasVideo ? t("live.tiles.audio-only") : "";
    tile.unmute.hidden = !hasAudio;
    tile.unmute.textContent = t(video.muted ? "live.tiles.unmute" : "live.tiles.mute");
    tile.unmute.setAttribute("aria-pressed", String(!video.muted));
    const canView = stream ? hasVideo : true;
    tile.enlarge.hidden = !canView;
    tile.enlarge.textContent = t(tile.enlarged ? "live.health.shrink" : "live.health.enlarge");
    tile.enlarge.setAttribute("aria-pressed", String(tile.enlarged));
    const full = document.fullscreenElement === tile.box;
    tile.fullscreen.hidden = !canView || !document.fullscreenEnabled;
    tile.fullscreen.textContent = t(full ? "live.health.exit-fullscreen" : "live.health.fullscreen");
    tile.fullscreen.setAttribute("aria-pressed", String(full));
  }
}

/** The token from the fragment, or null after telling the user how to get one. */
export function requireToken(params, statusNode) {
  const token = params.get("token");
  if (!token) {
    statusNode.replaceChildren(t("live.no-token.text"), " ",
      el("a", { href: "./", text: t("live.no-token.start-page") }));
    statusNode.dataset.state = "no-token";
    statusNode.dataset.kind = "error";
    window.huizhen = { state: "no-token", participants: {}, peerConnections: [],
      framesDecoded: async () => 0 };
  }
  return token;
}
