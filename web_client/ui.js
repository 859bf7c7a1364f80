// Small DOM helpers shared by the ward and expert pages (no framework).

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

export function badge(state, label = state) {
  return el("span", { class: `badge state-${state}`, "data-state": state, text: label });
}

const ROLE_LABELS = { ward: "Ward", expert: "Specialist", observer: "Observer", operator: "Operator" };

export function roleLabel(role) {
  return ROLE_LABELS[role] ?? role;
}

function describeError(error) {
  return `${error.code} — ${error.detail ?? error.message}`;
}

export const SESSION_EXPIRED_ZH = "会话已过期，请重新打开链接";
export const SESSION_EXPIRED_EN = "The session has expired; open the link again.";

/** The status line: connection state, or the reason the page stopped, and recent server errors. */
export function renderStatus(node, session) {
  const c = session.client;
  let text;
  let kind = "info";
  switch (session.state) {
    case "idle":
    case "connecting":
      text = "Connecting to the server…";
      break;
    case "joining":
      text = "Joining the consultation…";
      break;
    case "joined":
      text = `Connected to room ${session.room}`;
      kind = "ok";
      break;
    case "disconnected":
      text = `Disconnected — retrying (attempt ${c._attempt} of ${c.maxRetries})…`;
      kind = "warn";
      break;
    case "failed":
      if (c.fatal?.code === "token-expired") {
        text = `${SESSION_EXPIRED_ZH} · ${SESSION_EXPIRED_EN}`;
      } else {
        text = c.fatal?.code === "unauthorized"
          ? `Not admitted: ${describeError(c.fatal)}. Ask for a new link.`
          : `Stopped: ${c.fatal ? describeError(c.fatal) : "unknown error"}`;
      }
      kind = "error";
      break;
    case "closed":
      text = "Disconnected: you left the consultation.";
      kind = "warn";
      break;
    default:
      text = session.state;
  }
  const latest = session.errors[session.errors.length - 1];
  if (latest && Date.now() - latest.at < 15000 && session.state !== "failed") {
    text += ` · Error: ${latest.code} — ${latest.message}`;
    kind = "error";
  }
  node.textContent = text;
  node.dataset.state = session.state;
  node.dataset.kind = kind;
}

export function renderIdentity(node, session) {
  const me = session.self;
  node.textContent = me ? `${me.name} · ${roleLabel(me.role)}` : "";
}

function streamKinds(stream) {
  if (!stream) return "";
  const kinds = stream.tracks.map((t) => t.kind);
  return kinds.sort((a, b) => (a === "video" ? -1 : b === "video" ? 1 : 0)).join(" + ");
}

/** Every participant with a badge per transport (fed by `connection-state` events). */
export function renderParticipants(list, session) {
  const people = Object.values(session.participants)
    .sort((a, b) => Number(b.self) - Number(a.self) || a.name.localeCompare(b.name));
  const items = people.map((p) => {
    const transports = Object.values(p.transports).map((t) => {
      const stream = session.streams[t.id];
      let what;
      if (t.direction === "publish") what = `Sends ${streamKinds(stream) || "media"}`;
      else {
        const target = Object.values(session.subscriptions).find((s) => s.id === t.id);
        const owner = target && session.participants[session.streams[target.streamId]?.participant];
        what = owner ? `Receives ${owner.name}` : "Receives media";
      }
      return el("li", {
        class: "transport", "data-transport-id": t.id, "data-direction": t.direction,
        "data-state": t.state, title: `${t.direction} transport ${t.id}`,
      }, el("span", { class: "what", text: what }), badge(t.state));
    });
    return el("li", { class: "participant", "data-participant-id": p.id, "data-role": p.role },
      el("div", { class: "who" },
        el("span", { class: "name", text: p.name }),
        el("span", { class: `role role-${p.role}`, text: roleLabel(p.role) }),
        p.self ? el("span", { class: "you", text: "you" }) : null),
      transports.length
        ? el("ul", { class: "transports" }, ...transports)
        : el("p", { class: "muted", text: "No audio or video" }));
  });
  list.replaceChildren(...items);
  if (!items.length) list.append(el("li", { class: "muted", text: "Nobody here yet" }));
}

/**
 * One <video> tile per subscription, kept in sync with `session.subscriptions`.
 * `preferSound`: try to play with sound (fall back to muted + an Unmute button
 * when the browser blocks autoplay); otherwise start muted with an Unmute button.
 */
export class TileGrid {
  constructor(container, session, { preferSound = false, emptyText = "No video yet" } = {}) {
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
    this.empty.textContent = this.session.state === "joined" ? this.emptyText : "Not connected.";
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
    const unmute = el("button", { type: "button", class: "unmute", text: "Unmute", hidden: true });
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
    tile.name.textContent = owner?.name ?? "Unknown participant";
    tile.role.textContent = owner ? roleLabel(owner.role) : "";
    tile.role.className = `role role-${owner?.role ?? "unknown"}`;
    tile.state.className = `badge state-${sub.pcState}`;
    tile.state.dataset.state = sub.pcState;
    tile.state.textContent = sub.pcState;
    const hasVideo = stream?.tracks.some((t) => t.kind === "video");
    const hasAudio = sub.media.getAudioTracks().length > 0;
    tile.node.classList.toggle("audio-only", stream ? !hasVideo : false);
    const s = sub.stats;
    tile.stats.textContent = s && s.width ? `${s.width}×${s.height} · ${Math.round(s.fps ?? 0)} fps`
      : stream && !hasVideo ? "audio only" : "";
    tile.unmute.hidden = !hasAudio;
    tile.unmute.textContent = video.muted ? "Unmute" : "Mute";
    tile.unmute.setAttribute("aria-pressed", String(!video.muted));
  }
}

/** The token from the fragment, or null after telling the user how to get one. */
export function requireToken(params, statusNode) {
  const token = params.get("token");
  if (!token) {
    statusNode.replaceChildren("No token: open this page with #token=… in the address (see ",
      el("a", { href: "./", text: "the start page" }), ").");
    statusNode.dataset.state = "no-token";
    statusNode.dataset.kind = "error";
    window.huizhen = { state: "no-token", participants: {}, peerConnections: [],
      framesDecoded: async () => 0 };
  }
  return token;
}
