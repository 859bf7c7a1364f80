// Small DOM helpers shared by the live pages (no framework), the language switch, and
// the localised text of the signalling protocol's error codes (`live.error.<code>`).

import { LANGUAGES, has, language, loadCatalogue, saveLanguage, t, translatePage } from "./i18n.js";

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
  return has(`live.state.${state}`) ? t(`live.state.${state}`) : String(state ?? "");
}

export function roleLabel(role) {
  return has(`live.role.${role}`) ? t(`live.role.${role}`) : String(role ?? "");
}

/**
 * The localised text of a signalling error code (signaling/PROTOCOL.md, plus the page's
 * own: disconnected, timeout, device); the server's (English) message only for a code
 * the catalogue does not know.
 */
export function liveErrorText(code, fallback = "") {
  if (has(`live.error.${code}`)) return t(`live.error.${code}`);
  return fallback || t("live.error.unknown");
}

/** The status line: connection state, or the reason the page stopped, and recent server errors. */
export function renderStatus(node, session) {
  const c = session.client;
  let text;
  let kind = "info";
  let code = "";
  switch (session.state) {
    case "idle":
    case "connecting":
      text = t("live.status.connecting");
      break;
    case "joining":
      text = t("live.status.joining");
      break;
    case "joined":
      text = t("live.status.joined", { room: session.room });
      kind = "ok";
      break;
    case "disconnected":
      text = t("live.status.retrying", { attempt: c._attempt, max: c.maxRetries });
      kind = "warn";
      break;
    case "failed":
      code = c.fatal?.code ?? "unknown";
      if (code === "token-expired") {
        text = t("live.status.session-expired");
      } else {
        const reason = liveErrorText(code, c.fatal?.detail ?? c.fatal?.message);
        text = t(code === "unauthorized" ? "live.status.not-admitted" : "live.status.stopped",
          { reason });
      }
      kind = "error";
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
    text += t("live.status.error-suffix", { reason: liveErrorText(latest.code, latest.message) });
    kind = "error";
    code = latest.code;
  }
  node.textContent = text;
  node.dataset.state = session.state;
  node.dataset.kind = kind;
  node.dataset.code = code; // the error code (English, stable) for support staff and tests
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

/** Every participant with a badge per transport (fed by `connection-state` events). */
export function renderParticipants(list, session) {
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
        "data-direction": transport.direction, "data-state": transport.state,
        title: t(transport.direction === "publish" ? "live.participants.publish-transport"
          : "live.participants.subscribe-transport"),
      }, el("span", { class: "what", text: what }), badge(transport.state));
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
 */
export class TileGrid {
  constructor(container, session, { preferSound = false, emptyText = t("live.tiles.no-video") } = {}) {
    this.container = container;
    this.session = session;
    this.preferSound = preferSound;
    this.emptyText = emptyText;
    this.tiles = new Map(); // stream id -> {node, video, ...}
    this.empty = el("p", { class: "empty", text: emptyText });
  }

  render() {
    const subs = this.session.subscriptions;
    for (const [streamId, tile] of this.tiles) {
      if (!subs[streamId] || subs[streamId] !== tile.sub) {
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

  _create(sub) {
    const video = el("video", { autoplay: true, playsInline: true });
    video.setAttribute("playsinline", "");
    video.muted = !this.preferSound;
    const name = el("span", { class: "name" });
    const role = el("span", { class: "role" });
    const state = el("span", { class: "badge" });
    const stats = el("span", { class: "stats" });
    const unmute = el("button", { type: "button", class: "unmute", text: t("live.tiles.unmute"),
      hidden: true });
    unmute.addEventListener("click", () => {
      video.muted = !video.muted;
      video.play().catch(() => {});
      this._update(tile);
    });
    const node = el("figure", { class: "tile", "data-stream-id": sub.streamId },
      video, el("figcaption", {}, el("div", { class: "who" }, name, role), state, stats, unmute));
    const tile = { sub, node, video, name, role, state, stats, unmute, trackCount: 0 };
    this.tiles.set(sub.streamId, tile);
    this.container.append(node);
    return tile;
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
    tile.state.className = `badge state-${sub.pcState}`;
    tile.state.dataset.state = sub.pcState;
    tile.state.textContent = stateText(sub.pcState);
    const hasVideo = stream?.tracks.some((t) => t.kind === "video");
    const hasAudio = sub.media.getAudioTracks().length > 0;
    tile.node.classList.toggle("audio-only", stream ? !hasVideo : false);
    const s = sub.stats;
    tile.stats.textContent = s && s.width
      ? t("live.tiles.stats", { width: s.width, height: s.height, fps: Math.round(s.fps ?? 0) })
      : stream && !hasVideo ? t("live.tiles.audio-only") : "";
    tile.unmute.hidden = !hasAudio;
    tile.unmute.textContent = t(video.muted ? "live.tiles.unmute" : "live.tiles.mute");
    tile.unmute.setAttribute("aria-pressed", String(!video.muted));
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
