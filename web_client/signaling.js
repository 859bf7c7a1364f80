// huizhen signalling client, protocol version 1 (see signaling/PROTOCOL.md).
//
// One WebSocket at /ws. Requests carry an `id`; the reply (or error) carries the
// same id. Events carry none. The server does NOT support trickle ICE: every
// offer/answer is sent once ICE gathering is complete (or after a timeout).

export const PROTOCOL_VERSION = 1;

// Join errors that a retry cannot fix: the page stops and shows them.
const FATAL_JOIN_ERRORS = new Set(["unauthorized", "unsupported-version", "forbidden"]);
// ...and those that stop a page that has not joined yet (a full room: the person is told
// at once, and opens the link again later); once joined, a rejoin keeps trying. A node
// at capacity (`server-busy`) is waited for instead: see `busyDelayMs`.
const FATAL_FIRST_JOIN_ERRORS = new Set(["room-full"]);
// States in which the page waits to join again, and shows why (not "connecting").
const WAITING_STATES = new Set(["relocating", "busy"]);

export class SignalingError extends Error {
  /** `limit`: which of the room's limits a `room-full` error is about. */
  constructor(code, message, { limit } = {}) {
    super(`${code}: ${message}`);
    this.name = "SignalingError";
    this.code = code;
    this.detail = message;
    this.limit = limit;
  }
}

/** The URL fragment (#token=…&autostart=1) as URLSearchParams; it never reaches the server. */
export function readFragment(hash = location.hash) {
  return new URLSearchParams(hash.startsWith("#") ? hash.slice(1) : hash);
}

// A page sent on by `redirect` more often than this in a row gives up (a misconfigured
// `[cluster] node_url` would otherwise bounce it between nodes for ever). The count
// (`hops` in the fragment) is dropped once the page has joined.
export const MAX_REDIRECTS = 3;

/**
 * `value` if it is an http(s) origin ("https://media.example" or with a port, nothing
 * after it), else null. The fragment is the user's to edit: what it names is checked.
 */
export function httpOrigin(value) {
  const url = httpUrl(value);
  return url && url.origin === value ? url.origin : null;
}

/** `value` parsed, if it is an http(s) URL; else null. */
function httpUrl(value) {
  if (typeof value !== "string" || value === "") return null;
  let url;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  return url.protocol === "http:" || url.protocol === "https:" ? url : null;
}

/** The fragment's `entry`: where this page was first opened, before any redirect (or null). */
export function entryOrigin(loc = location) {
  return httpOrigin(readFragment(loc.hash).get("entry"));
}

/** The fragment's `failed`: the node this page left because it stopped answering (or null). */
export function failedOrigin(loc = location) {
  return httpOrigin(readFragment(loc.hash).get("failed"));
}

function pageAt(base, loc, fragment) {
  return new URL(`${loc.pathname}${loc.search}#${fragment}`, base).href;
}

function addParams(fragment, extra) {
  for (const [key, value] of Object.entries(extra ?? {})) fragment.set(key, String(value));
}

/**
 * Where a `redirect` join reply sends this page: the same page, query and fragment (the
 * token stays in the fragment, never sent to a server) on the room's node, with the
 * fragment's `hops` counting the redirects, `entry` naming where the page was first
 * opened (kept if the fragment has a valid one) and `failed` dropped. Null when `url` is
 * not an http(s) URL, or after MAX_REDIRECTS hops. `extra`: fragment keys to set too.
 */
export function redirectedPage(url, loc = location, extra = {}) {
  const base = httpUrl(url);
  if (!base) return null;
  const fragment = readFragment(loc.hash);
  const hops = Number.parseInt(fragment.get("hops") ?? "0", 10) || 0;
  if (hops >= MAX_REDIRECTS) return null;
  fragment.set("hops", String(hops + 1));
  if (!httpOrigin(fragment.get("entry"))) fragment.set("entry", loc.origin);
  fragment.delete("failed");
  addParams(fragment, extra);
  return pageAt(base, loc, fragment);
}

/**
 * Where a page goes when the node it was moved to stops answering: back to its `entry`
 * (same page, query and fragment) with `failed=<this node's origin>`, so that the entry's
 * redirects to the dead node are not followed (PROTOCOL.md, "Several nodes"). Null when
 * the fragment names no valid entry, or this page is at its entry.
 */
export function failoverPage(loc = location, extra = {}) {
  const entry = entryOrigin(loc);
  if (!entry || entry === loc.origin) return null;
  const fragment = readFragment(loc.hash);
  fragment.delete("hops");
  fragment.set("failed", loc.origin);
  addParams(fragment, extra);
  return pageAt(entry, loc, fragment);
}

/**
 * This page's address without the fragment's `hops` and `failed` (once joined, the
 * redirect limit counts anew and the dead node is forgotten), or null when it has neither.
 */
export function settledPage(loc = location) {
  const fragment = readFragment(loc.hash);
  if (!fragment.has("hops") && !fragment.has("failed")) return null;
  fragment.delete("hops");
  fragment.delete("failed");
  return `${loc.pathname}${loc.search}#${fragment}`;
}

export function signalingUrl(loc = location) {
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}/ws`;
}

/**
 * Resolve once `pc` has finished gathering ICE candidates (true), or after
 * `timeoutMs` (false): the caller then sends whatever candidates it has.
 */
export function waitForIceGathering(pc, timeoutMs = 3000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve(true);
  return new Promise((resolve) => {
    const finish = (complete) => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", onState);
      pc.removeEventListener("icecandidate", onCandidate);
      resolve(complete);
    };
    const onState = () => {
      if (pc.iceGatheringState === "complete") finish(true);
    };
    const onCandidate = (event) => {
      if (event.candidate === null) finish(true); // end of candidates
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    pc.addEventListener("icegatheringstatechange", onState);
    pc.addEventListener("icecandidate", onCandidate);
  });
}

/**
 * Connects, joins with a token, matches replies to requests and dispatches events.
 *
 * Emitted (via `on(type, fn)`): every server event by its `type`
 * ("participant-joined", "track-added", "connection-state", ...), plus
 * "joined" (the join reply, also after each reconnection), "error" (every
 * server error message), "state" ({state, ...}), "disconnected" and "signalling"
 * (the link: "up", "lost" or "reconnecting", see `signalling`).
 * "token-expired" ends the session for good (state "failed", `fatal.code`
 * "token-expired"); `refresh(token)` before `expiresAt` avoids it.
 *
 * States: idle, connecting, joining, joined, disconnected (the link was lost
 * after a join; reconnection attempts run until the next join), failed (join
 * refused, or gave up after `maxRetries`: see `fatal`), redirecting (the room lives
 * on another node: "redirect" is emitted with {url, room, target} and `onRedirect(target)`
 * moves the page there, by default with `location.replace`), relocating (this page left
 * a node that died, and its entry still redirects to that node: it joins again every
 * `relocateDelayMs` until the room is placed anew), busy (the node refused this viewer
 * for load, `server-busy`: it joins again after `busyDelayMs`, doubling up to
 * `maxBusyDelayMs`, each jittered (pages refused together come back apart, and fewer
 * and fewer: a node at capacity is not kept busy by its refusals) for up to `busyForMs`,
 * then fails with `server-busy`), closed.
 *
 * Several nodes (PROTOCOL.md): a page moved by `redirect` keeps in its fragment where it
 * was first opened (`entry`). When the link to its node is lost and `failoverAttempts`
 * reconnections in a row have failed over at least `failoverMs`, the page goes back to its
 * entry ("failover" is emitted with {target}, then `onRedirect(target)`), naming the node
 * it left (`failed`); there a redirect to that node is not followed for `relocateForMs`
 * (then the page fails with `node-lost`). Once joined, `onSettled()` drops `hops` and
 * `failed` from the address. `moveFragment()`: fragment keys the page wants set on a page
 * it moves to (the ward page: `autostart=1` while its camera is on).
 *
 * Heartbeat (PROTOCOL.md, "Heartbeat"): from the moment the socket opens, a `ping`
 * goes out every `heartbeatIntervalMs`; when nothing at all has arrived for
 * `heartbeatTimeoutMs` the link is declared lost at once (a blackholed TCP socket
 * would otherwise look open for minutes). A socket that does not open within
 * `connectTimeoutMs` is abandoned. Reconnection is attempted again and again with a
 * short capped backoff (`retryDelayMs` doubling up to `maxRetryDelayMs`), so that the
 * page rejoins within a second or two of the network coming back; each rejoin names
 * the participant it replaces (`join.previous`), which the server ends at once.
 */
export class SignalingClient {
  constructor(token, options = {}) {
    this.token = token;
    this.url = options.url ?? signalingUrl();
    // Until the first join a few attempts, then a failure shown; after a join, for ever.
    this.maxRetries = options.maxRetries ?? 5;
    this.retryDelayMs = options.retryDelayMs ?? 250;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 500;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 2000;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 2000;
    this.heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 4000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 20000;
    // A `subscribe` may wait its turn in the server's set-up queue (hundreds joining at
    // once): giving up earlier would only queue it again at the back.
    this.subscribeTimeoutMs = options.subscribeTimeoutMs ?? 60000;
    this.iceGatheringTimeoutMs = options.iceGatheringTimeoutMs ?? 3000;
    this.onRedirect = options.onRedirect ?? ((target) => location.replace(target));
    this.location = options.location ?? location;
    this.failoverAttempts = options.failoverAttempts ?? 3;
    this.failoverMs = options.failoverMs ?? 2000;
    this.relocateDelayMs = options.relocateDelayMs ?? 500;
    this.relocateForMs = options.relocateForMs ?? 60000;
    this.busyDelayMs = options.busyDelayMs ?? 3000;
    this.maxBusyDelayMs = options.maxBusyDelayMs ?? 30000;
    this.busyForMs = options.busyForMs ?? 120000;
    this.onSettled = options.onSettled ?? (() => {
      const settled = settledPage(this.location);
      if (settled) history.replaceState(history.state, "", settled);
    });
    this.moveFragment = options.moveFragment ?? (() => ({}));
    this.state = "idle";
    this.joined = null;
    this.fatal = null;
    this.ws = null;
    this._pending = new Map();
    this._handlers = new Map();
    this._nextId = 1;
    this._attempt = 0;
    this._stopped = false;
    this._retryTimer = null;
    this._connectTimer = null;
    this._heartbeatTimer = null;
    this._lastReceived = 0;
    this._everJoined = false;
    this._previousParticipant = null; // who this client was on its last socket
    this._lostAt = null; // when the link was lost after a join (Date.now()), until rejoined
    this._relocatingSince = null; // when a redirect to the failed node was first refused
    this._refused = false; // the last join was redirected to the failed node
    this._busy = false; // the last join was refused with `server-busy`
    this._busySince = null; // when the node first refused this page for load
    this._busyError = null; // that refusal, the failure shown after `busyForMs`
    this._busyRefusals = 0; // refusals for load in a row (the wait doubles with each)
    this.failingOver = false; // the page is leaving a node that stopped answering
    this.signalling = "reconnecting"; // the link: up | lost | reconnecting
  }

  get iceServers() {
    return this.joined?.iceServers ?? [];
  }

  /** A new peer connection configured with the ICE servers (TURN credentials minted for
   * this participant) and the transport policy ("all" or "relay") from the `joined` reply. */
  createPeerConnection() {
    const iceTransportPolicy = this.joined?.iceTransportPolicy === "relay" ? "relay" : "all";
    return new RTCPeerConnection({ iceServers: this.iceServers, iceTransportPolicy });
  }

  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this._handlers.get(type)?.delete(handler);
  }

  _emit(type, data) {
    for (const handler of this._handlers.get(type) ?? []) {
      try {
        handler(data);
      } catch (err) {
        console.error(`huizhen: ${type} handler failed`, err);
      }
    }
  }

  _setState(state, detail = {}) {
    this.state = state;
    this._emit("state", { state, ...detail });
  }

  _setSignalling(link) {
    if (this.signalling === link) return;
    this.signalling = link;
    this._emit("signalling", link);
  }

  start() {
    this._stopped = false;
    this.fatal = null;
    this._attempt = 0;
    this._connect();
  }

  /** Close the socket on purpose (a retry follows unless `stop` is true). */
  reconnect() {
    this.ws?.close(1000, "reconnecting");
  }

  close() {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    this._stopTimers();
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN && this.joined) {
      try {
        ws.send(JSON.stringify({ type: "leave" }));
      } catch {
        // closing anyway
      }
    }
    ws?.close(1000, "bye");
    this._setSignalling("lost");
    if (this.state !== "failed") this._setState("closed");
  }

  _connect() {
    this._refused = false;
    // After a join, the page stays "disconnected" until it has joined again.
    if (!this._everJoined && !WAITING_STATES.has(this.state)) this._setState("connecting");
    this._setSignalling("reconnecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._scheduleRetry(String(err));
      return;
    }
    this.ws = ws;
    ws.onopen = () => this._opened(ws);
    ws.onmessage = (message) => this._onMessage(ws, message);
    ws.onclose = (event) => this._onClose(ws, event);
    ws.onerror = () => {}; // a close event always follows
    clearTimeout(this._connectTimer);
    // Short once the page has joined (a quick rejoin when the network returns); the
    // first connection of a page that is still loading gets longer.
    const timeout = this._everJoined ? this.connectTimeoutMs : Math.max(this.connectTimeoutMs, 10000);
    this._connectTimer = setTimeout(() => {
      if (ws === this.ws && ws.readyState !== WebSocket.OPEN) {
        this._abandon(ws, 4000, "connect timeout");
      }
    }, timeout);
  }

  _opened(ws) {
    if (ws !== this.ws) return;
    clearTimeout(this._connectTimer);
    this._lastReceived = Date.now();
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = setInterval(() => this._beat(ws), this.heartbeatIntervalMs / 4);
    this._nextPing = Date.now() + this.heartbeatIntervalMs;
    this._join(ws);
  }

  /** One heartbeat tick: declare the link lost after a silence, else ping when due. */
  _beat(ws) {
    if (ws !== this.ws) return;
    const now = Date.now();
    if (now - this._lastReceived > this.heartbeatTimeoutMs) {
      this._abandon(ws, 4000, "heartbeat timeout");
      return;
    }
    if (now >= this._nextPing && ws.readyState === WebSocket.OPEN) {
      this._nextPing = now + this.heartbeatIntervalMs;
      try {
        ws.send(JSON.stringify({ type: "ping" }));
      } catch {
        // the close event follows
      }
    }
  }

  /**
   * Give up on `ws` now, without waiting for its close event: on a dead network the
   * closing handshake can take minutes.
   */
  _abandon(ws, code, reason) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch {
      // closing anyway
    }
    this._onClose(ws, { code: 1006, reason });
  }

  _stopTimers() {
    clearTimeout(this._connectTimer);
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }

  async _join(ws) {
    if (!WAITING_STATES.has(this.state)) this._setState("joining");
    const join = { type: "join", version: PROTOCOL_VERSION, token: this.token };
    if (this._previousParticipant) join.previous = this._previousParticipant;
    try {
      const reply = await this.request(join);
      if (ws !== this.ws) return;
      if (reply.type === "redirect") {
        this._redirect(ws, reply);
        return;
      }
      this.joined = reply;
      this._attempt = 0;
      this._everJoined = true;
      this._lostAt = null;
      this._relocatingSince = null;
      this._busySince = null;
      this._busyRefusals = 0;
      try {
        this.onSettled();
      } catch (err) {
        console.warn("huizhen: could not tidy the address", err);
      }
      this._previousParticipant = reply.participant?.id ?? null;
      this._setState("joined");
      this._setSignalling("up");
      this._emit("joined", reply);
    } catch (err) {
      if (ws !== this.ws) return;
      if (err.code === "server-busy" && !this._everJoined) {
        // The node is at capacity: those watching keep their picture; this page waits.
        this._busy = true;
        this._busySince ??= Date.now();
        this._busyError = err;
      } else if (FATAL_JOIN_ERRORS.has(err.code)
          || (FATAL_FIRST_JOIN_ERRORS.has(err.code) && !this._everJoined)) {
        // Retrying with the same token cannot succeed.
        this.fatal = err;
        this._stopped = true;
        this._setState("failed", { error: err });
      }
      ws.close(1000, "join failed");
    }
  }

  /** The room lives on another node (PROTOCOL.md, "Several nodes"): the page moves there. */
  _redirect(ws, reply) {
    const failed = failedOrigin(this.location);
    if (failed && httpUrl(reply.url)?.origin === failed) {
      // Sent back to the node this page left because it died: its record has not expired
      // yet. Stay, and join again shortly (`_scheduleRetry`), until the room is placed anew.
      this._refused = true;
      this._relocatingSince ??= Date.now();
      ws.close(1000, "redirect to a failed node");
      return;
    }
    this._stopped = true;
    const target = redirectedPage(reply.url, this.location, this._extraFragment());
    if (target) {
      this._setState("redirecting", { url: target });
      this._emit("redirect", { ...reply, target });
      this.onRedirect(target);
    } else {
      this.fatal = new SignalingError("redirect-failed",
        "the room lives on another media node that this page cannot reach");
      this._setState("failed", { error: this.fatal });
    }
    ws.close(1000, "redirect");
  }

  _onMessage(ws, message) {
    if (ws !== this.ws || typeof message.data !== "string") return;
    this._lastReceived = Date.now();
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      console.warn("huizhen: ignoring a frame that is not JSON");
      return;
    }
    if (!data || typeof data !== "object" || typeof data.type !== "string") return;
    if (data.type === "error") this._emit("error", data);
    if (data.type === "token-expired") {
      // The server has ended the session and closes the socket: the same token cannot rejoin.
      this.fatal = new SignalingError("token-expired", data.message ?? "the token has expired");
      this._stopped = true;
      this._setState("failed", { error: this.fatal });
    }
    const key = data.id === undefined || data.id === null ? null : String(data.id);
    const pending = key === null ? undefined : this._pending.get(key);
    if (pending) {
      this._pending.delete(key);
      clearTimeout(pending.timer);
      if (data.type === "error") pending.reject(new SignalingError(data.code, data.message, data));
      else pending.resolve(data);
      return;
    }
    if (data.type === "pong" && key === null) return; // a heartbeat's answer
    if (data.type !== "error") this._emit(data.type, data);
  }

  _onClose(ws, event) {
    if (ws !== this.ws) return;
    this._stopTimers();
    this.ws = null;
    const wasJoined = this.joined !== null;
    this.joined = null;
    for (const pending of this._pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new SignalingError("disconnected", "the signalling connection closed"));
    }
    this._pending.clear();
    this._setSignalling("lost");
    this._emit("disconnected", { code: event.code, reason: event.reason, wasJoined });
    if (this._stopped) {
      if (this.state !== "failed" && this.state !== "redirecting") this._setState("closed");
      return;
    }
    this._scheduleRetry(`connection closed (code ${event.code})`);
  }

  _extraFragment() {
    try {
      return this.moveFragment() ?? {};
    } catch (err) {
      console.warn("huizhen: moveFragment failed", err);
      return {};
    }
  }

  /** Back to the entry: the node this page was moved to no longer answers. */
  _failover(target) {
    this._stopped = true;
    this.failingOver = true;
    clearTimeout(this._retryTimer);
    this._setState("redirecting", { url: target, failover: true });
    this._emit("failover", { target });
    this.onRedirect(target);
  }

  /**
   * Wait in `state` (a WAITING_STATES one) and join again after `delayMs`; once `forMs`
   * have passed since `since`, stop with the error `fatal()` instead.
   */
  _waitToJoin(state, reason, since, forMs, delayMs, fatal) {
    if (Date.now() - since >= forMs) {
      this._stopped = true;
      this.fatal = fatal();
      this._setState("failed", { error: this.fatal });
      return;
    }
    this._attempt = 0;
    this._setState(state, { reason, retryInMs: delayMs });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      if (!this._stopped) this._connect();
    }, delayMs);
  }

  _scheduleRetry(reason) {
    if (this._busy) {
      this._busy = false;
      const backoff = Math.min(this.busyDelayMs * 2 ** this._busyRefusals, this.maxBusyDelayMs);
      this._busyRefusals += 1;
      this._waitToJoin("busy", reason, this._busySince, this.busyForMs,
        Math.round(backoff * (0.75 + Math.random() / 2)), () => this._busyError);
      return;
    }
    if (this._refused) {
      this._refused = false;
      this._waitToJoin("relocating", reason, this._relocatingSince, this.relocateForMs,
        this.relocateDelayMs, () => new SignalingError("node-lost",
          "the media node of this room stopped answering and no other node has taken the room"));
      return;
    }
    if (this._everJoined) {
      this._lostAt ??= Date.now();
      // A node that died refuses (or never answers) every reconnection: after a few, over
      // a couple of seconds, go back to where the page was first opened. Not while the
      // browser knows it is offline: a navigation would end on its error page.
      const target = this._attempt >= this.failoverAttempts
        && Date.now() - this._lostAt >= this.failoverMs
        && globalThis.navigator?.onLine !== false
        ? failoverPage(this.location, this._extraFragment()) : null;
      if (target) {
        this._failover(target);
        return;
      }
    }
    if (!this._everJoined && this._attempt >= this.maxRetries) {
      this._stopped = true;
      this.fatal = new SignalingError("disconnected",
        `the server could not be reached after ${this.maxRetries} attempts`);
      this._setState("failed", { error: this.fatal });
      return;
    }
    const delay = Math.min(this.retryDelayMs * 2 ** this._attempt, this.maxRetryDelayMs);
    this._attempt += 1;
    this._setState("disconnected", { reason, retryInMs: delay, attempt: this._attempt });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      if (!this._stopped) this._connect();
    }, delay);
  }

  /** Send a request; resolves with the reply, rejects with a SignalingError. */
  request(message, timeoutMs = this.requestTimeoutMs) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new SignalingError("disconnected", "the signalling connection is not open"));
    }
    const id = `c${this._nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new SignalingError("timeout", `no reply to '${message.type}' in ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ ...message, id }));
    });
  }

  /**
   * Replace the session's token with a new one for the same room, subject and role
   * (before the old one expires); resolves with the new `expiresAt` (Unix seconds).
   */
  async refresh(token) {
    const reply = await this.request({ type: "refresh", token });
    this.token = token;
    if (this.joined) this.joined = { ...this.joined, expiresAt: reply.expiresAt };
    return reply.expiresAt;
  }

  /** Offer `pc`'s tracks as one new stream; returns the stream {id, participant, tracks}. */
  async publish(pc) {
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc, this.iceGatheringTimeoutMs);
    const reply = await this.request({ type: "publish", sdp: pc.localDescription.sdp });
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    return reply.stream;
  }

  /**
   * Receive stream `streamId` on `pc` (a fresh peer connection, one per
   * subscription). `onSubscription(id)` is called as soon as the server's
   * offer names the subscription. Returns the subscription id.
   */
  async subscribe(streamId, pc, { onSubscription } = {}) {
    const offer = await this.request({ type: "subscribe", stream: streamId },
      Math.max(this.requestTimeoutMs, this.subscribeTimeoutMs));
    onSubscription?.(offer.subscription);
    try {
      await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      await waitForIceGathering(pc, this.iceGatheringTimeoutMs);
      await this.request({ type: "answer", subscription: offer.subscription, sdp: pc.localDescription.sdp });
    } catch (err) {
      this.unsubscribe(offer.subscription).catch(() => {});
      throw err;
    }
    return offer.subscription;
  }

  unpublish(streamId) {
    return this.request({ type: "unpublish", stream: streamId });
  }

  unsubscribe(subscriptionId) {
    return this.request({ type: "unsubscribe", subscription: subscriptionId });
  }

  ping() {
    return this.request({ type: "ping" });
  }
}
