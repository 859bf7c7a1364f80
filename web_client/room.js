// The room as the browser sees it: participants, their transports' states,
// streams, and this page's own publications and subscriptions (one
// RTCPeerConnection each). Pages render it; `window.huizhen` exposes it to tests.
//
// Recovery (PROTOCOL.md, "Reconnecting"): a dead media transport (its connection
// `failed`, or the server's `stream-ended` / `subscription-closed`) is replaced by a
// fresh one, publish or subscribe again, with a short capped backoff; a lost
// signalling link (the client's heartbeat) closes the publications' connections, keeps
// the subscriptions' last pictures on screen, and the next `joined` republishes and
// resubscribes everything. `link` sums it up for the page.

import { readFragment, SignalingClient } from "./signaling.js";

const FORGET_CLOSED_MS = 15000;
const RECOVER_DELAY_MS = 250; // doubling per failed attempt...
const RECOVER_MAX_DELAY_MS = 2000; // ...up to this
// How often a joined page tells the server how its subscriptions are received
// (`client-stats`, PROTOCOL.md): the server exports it in /metrics.
const CLIENT_STATS_MS = 10000;
// Errors after which publishing again cannot help: the page shows them instead.
const FINAL_PUBLISH_ERRORS = new Set(["forbidden", "too-many-publications",
  "too-many-peer-connections", "unauthorized", "bad-sdp"]);

/** Every live RTCPeerConnection of this page (tests read their getStats). */
function livePeers() {
  window.__huizhenPeers ??= new Set();
  return window.__huizhenPeers;
}

function recoverDelay(attempts) {
  return Math.min(RECOVER_DELAY_MS * 2 ** Math.max(0, attempts - 1), RECOVER_MAX_DELAY_MS);
}

/** A connection state as the `link` event names it, for one stream's transport. */
function mediaState(pcState, recovering) {
  if (pcState === "connected") return "connected";
  if (recovering || pcState === "disconnected") return "recovering";
  if (pcState === "failed" || pcState === "closed") return "failed";
  return "connecting";
}


/** The ward's video encodings when the server accepts simulcast: a thin viewer's stream
 * (q, 160x120 from a 640x480 camera) fits well under 400 kbit/s with its audio. */
const SIMULCAST_ENCODINGS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000, scalabilityMode: "L1T3" },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000, scalabilityMode: "L1T3" },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000, scalabilityMode: "L1T3" },
];

/** The encodings for `track`. Chromium sends at most two simulcast streams below 960x540
 * (it drops the last ones; measured with q/h/f from a 640x480 camera: f never started),
 * so a smaller camera sends the quarter and the full size. */
function simulcastEncodings(track) {
  const { width = 0, height = 0 } = track.getSettings?.() || {};
  const three = width * height >= 960 * 540;
  return SIMULCAST_ENCODINGS.filter((e) => three || e.rid !== "h").map((e) => ({ ...e }));
}

/** The server's answer says whether it accepts simulcast (`a=simulcast:recv`). Without
 * it the browser keeps the first encoding only: make that one full size, L1T3. */
async function singleStreamUnlessSimulcast(pc) {
  if (/^a=simulcast:recv /m.test(pc.remoteDescription?.sdp || "")) return;
  for (const transceiver of pc.getTransceivers()) {
    const sender = transceiver.sender;
    if (sender.track?.kind !== "video") continue;
    const parameters = sender.getParameters();
    if (!parameters.encodings?.length || parameters.encodings[0].rid === undefined) continue;
    parameters.encodings = [{ ...parameters.encodings[0], scaleResolutionDownBy: 1,
                              maxBitrate: undefined, scalabilityMode: "L1T3" }];
    await sender.setParameters(parameters).catch((err) => console.warn("huizhen: encoding", err));
  }
}

export class RoomSession {
  /**
   * @param {string} token  the room token from the URL fragment
   * @param {object} options
   *   autoSubscribe(stream, session) -> bool: subscribe to this stream on sight
   */
  constructor(token, { autoSubscribe = () => true, clientOptions = {},
    clientStatsMs = CLIENT_STATS_MS } = {}) {
    this.client = new SignalingClient(token, clientOptions);
    this.autoSubscribe = autoSubscribe;
    this.self = null;
    this.room = null;
    this.grants = [];
    this.expiresAt = null;
    this.participants = {}; // id -> {id, name, role, self, transports: {id -> {direction, state}}}
    this.streams = {}; // stream id -> {id, participant, tracks}
    this.subscriptions = {}; // stream id -> {streamId, id, pc, media, pcState, stats, recovering}
    this.publications = []; // {key, label, media, pc, streamId, pcState, error, recovering, ...}
    this.errors = []; // server errors, newest last
    this._listeners = new Set();
    this._forgetTimers = new Map();
    this._attempts = {}; // stream id -> failed subscription attempts in a row
    this._recovering = new Set(); // streams watched when the link was lost
    this._statsTimer = null;
    this.clientStatsMs = clientStatsMs;
    this._clientStatsTimer = null;
    this._link = null; // the last `link` state emitted (as JSON)
    this._linkListeners = new Set();

    const c = this.client;
    c.on("state", () => this._changed());
    c.on("joined", (reply) => this._onJoined(reply));
    c.on("disconnected", () => this._onDisconnected());
    c.on("error", (error) => {
      // A refusal for load is the "busy" state's own line (it waits and joins by itself).
      if (error.code !== "server-busy") this.reportError(error.code, error.message, error.limit);
    });
    c.on("participant-joined", ({ participant }) => {
      this.participants[participant.id] = { ...participant, self: false, transports: {} };
      this._changed();
    });
    c.on("participant-left", ({ participant }) => this._removeParticipant(participant));
    c.on("track-added", ({ stream }) => this._addStream(stream));
    c.on("track-removed", ({ stream }) => {
      delete this.streams[stream];
      this._dropSubscription(stream);
      this._changed();
    });
    c.on("connection-state", (event) => this._onConnectionState(event));
    c.on("subscription-closed", (event) => this._onSubscriptionClosed(event));
    // Registered before any page's handler: a stream this session republishes by itself
    // is no longer the publication's by the time the page hears of it.
    c.on("stream-ended", (event) => this._onStreamEnded(event));
    c.on("signalling", () => this._changed());
    c.on("room-closed", () => {
      // The room ended under us (e.g. server shutdown): start over.
      this._resetMedia();
      c.reconnect();
    });
    window.addEventListener("pagehide", () => this.close());
  }

  // ------------------------------------------------------------------ public

  get state() {
    return this.client.state;
  }

  get fatal() {
    return this.client.fatal;
  }

  get peerConnections() {
    return [
      ...this.publications.map((p) => p.pc).filter(Boolean),
      ...Object.values(this.subscriptions).map((s) => s.pc),
    ];
  }

  /**
   * The page's link: `{signalling: "up"|"lost"|"reconnecting", media: {<streamId>:
   * "connecting"|"connected"|"failed"|"recovering"}}`, one entry per own publication (by
   * its stream id; while it is being published again, by its previous one) and per
   * subscription (by the stream it receives).
   */
  get link() {
    const media = {};
    for (const p of this.publications) {
      const key = p.streamId ?? p.lastStreamId ?? p.key;
      if (p.pc) media[key] = mediaState(p.pcState, p.recovering);
      else media[key] = p.recovering ? "recovering" : (p.error ? "failed" : "connecting");
    }
    for (const sub of Object.values(this.subscriptions)) {
      media[sub.streamId] = mediaState(sub.pcState, sub.recovering);
    }
    return { signalling: this.client.signalling, media };
  }

  /** Call `listener(link)` whenever `link` changes (also emitted as the client's "link"). */
  onLink(listener) {
    this._linkListeners.add(listener);
    return () => this._linkListeners.delete(listener);
  }

  /** Record an error (from the server, or a local one such as a missing camera) for display. */
  reportError(code, message, limit = undefined) {
    this.errors.push({ code, message, limit, at: Date.now() });
    if (this.errors.length > 20) this.errors.shift();
    this._changed();
  }

  onChange(listener) {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  start() {
    this.client.start();
    this._statsTimer = setInterval(() => this._pollStats(), 1000);
    this._clientStatsTimer = setInterval(() => this.reportClientStats(), this.clientStatsMs);
  }

  close() {
    clearInterval(this._statsTimer);
    clearInterval(this._clientStatsTimer);
    this._resetMedia();
    this.client.close();
  }

  /** Server-reported state of a transport (publication id = stream id), or null. */
  transportState(transportId) {
    for (const p of Object.values(this.participants)) {
      const t = p.transports[transportId];
      if (t) return t.state;
    }
    return null;
  }

  /** Publish `media` (a MediaStream) as one stream; republished after each reconnection. */
  async publish(media, label) {
    const publication = { key: `local-${Date.now()}-${Math.random()}`, label, media, pc: null,
      streamId: null, pcState: "new", error: null };
    this.publications.push(publication);
    this._changed();
    if (this.state === "joined") await this._negotiatePublication(publication);
    return publication;
  }

  async unpublish(publication) {
    this.publications = this.publications.filter((p) => p !== publication);
    const { streamId, pc } = publication;
    publication.pc = null;
    clearTimeout(publication.recoverTimer);
    closePeer(pc);
    for (const track of publication.media.getTracks()) track.stop();
    this._changed();
    if (streamId && this.state === "joined") {
      await this.client.unpublish(streamId).catch(() => {});
    }
  }

  async subscribe(streamId) {
    if (this.subscriptions[streamId]) return this.subscriptions[streamId];
    const pc = this._peerConnection();
    const media = new MediaStream();
    const sub = { streamId, id: null, pc, media, pcState: pc.connectionState, stats: null,
      recovering: this._recovering.has(streamId) || Boolean(this._attempts[streamId]),
      error: null };
    this.subscriptions[streamId] = sub;
    pc.addEventListener("track", (event) => {
      media.addTrack(event.track);
      this._changed();
    });
    pc.addEventListener("connectionstatechange", () => {
      sub.pcState = pc.connectionState;
      if (sub.pcState === "connected") {
        sub.recovering = false;
        delete this._attempts[streamId];
        this._recovering.delete(streamId);
      } else if (sub.pcState === "failed" && this.subscriptions[streamId] === sub
                 && this.state === "joined") {
        // (While the link is lost the frozen picture stays until the next `joined`.)
        this._recoverSubscription(streamId);
      }
      this._changed();
    });
    this._changed();
    try {
      await this.client.subscribe(streamId, pc, {
        onSubscription: (id) => {
          sub.id = id;
          this._changed();
        },
      });
    } catch (err) {
      sub.error = err;
      console.warn(`huizhen: subscribing to ${streamId} failed`, err);
      // A stream that still exists is tried again (not-found: it has ended meanwhile).
      if (this.subscriptions[streamId] === sub) {
        if (err.code !== "not-found" && err.code !== "forbidden") this._recoverSubscription(streamId);
        else this._dropSubscription(streamId);
      }
    }
    return sub;
  }

  async unsubscribe(streamId) {
    const sub = this.subscriptions[streamId];
    this._dropSubscription(streamId);
    if (sub?.id && this.state === "joined") await this.client.unsubscribe(sub.id).catch(() => {});
  }

  /** Total framesDecoded over the inbound video of every subscription (for tests). */
  async framesDecoded() {
    let total = 0;
    for (const sub of Object.values(this.subscriptions)) {
      const report = await sub.pc.getStats();
      report.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") total += s.framesDecoded ?? 0;
      });
    }
    return total;
  }

  /**
   * Send the server (`client-stats`) how each connected subscription is received:
   * the browser's inbound video numbers and the candidate pair's round trip. Runs every
   * `clientStatsMs` while joined; resolves with what was sent (null: nothing to send).
   * A refusal is logged, never shown: it is the operators' business, not the viewer's.
   */
  async reportClientStats() {
    if (this.state !== "joined") return null;
    const streams = [];
    for (const sub of Object.values(this.subscriptions)) {
      if (!sub.id || sub.pc.connectionState !== "connected") continue;
      try {
        const entry = receptionOf(sub.streamId, await sub.pc.getStats());
        if (entry) streams.push(entry);
      } catch {
        // closed meanwhile
      }
    }
    if (!streams.length || this.state !== "joined") return null;
    const message = { type: "client-stats", streams };
    try {
      await this.client.request(message);
    } catch (err) {
      console.warn("huizhen: client-stats refused", err.code);
    }
    return message;
  }

  /** The object tests (and curious engineers) reach through `window.huizhen`. */
  exposeForTests(extra = {}) {
    const session = this;
    const exposed = {
      session,
      get state() { return session.state; },
      get room() { return session.room; },
      get self() { return session.self; },
      get participants() { return session.participants; },
      get streams() { return session.streams; },
      get subscriptions() { return session.subscriptions; },
      get publications() { return session.publications; },
      get peerConnections() { return session.peerConnections; },
      get errors() { return session.errors; },
      get link() { return session.link; },
      framesDecoded: () => session.framesDecoded(),
    };
    // Copy descriptors, not values: getters in `extra` stay live.
    Object.defineProperties(exposed, Object.getOwnPropertyDescriptors(extra));
    window.huizhen = exposed;
    return exposed;
  }

  // ------------------------------------------------------------------ internals

  _changed() {
    const link = this.link;
    const json = JSON.stringify(link);
    if (json !== this._link) {
      this._link = json;
      for (const listener of this._linkListeners) {
        try {
          listener(link);
        } catch (err) {
          console.error("huizhen: link listener failed", err);
        }
      }
      this.client._emit("link", link);
    }
    for (const listener of this._listeners) {
      try {
        listener(this);
      } catch (err) {
        console.error("huizhen: render failed", err);
      }
    }
  }

  _onJoined(reply) {
    // The server ended this page's previous connections with its previous socket.
    for (const streamId of Object.keys(this.subscriptions)) this._recovering.add(streamId);
    this._resetMedia();
    this._attempts = {};
    this.self = reply.participant;
    this.room = reply.room;
    this.grants = reply.grants;
    this.expiresAt = reply.expiresAt;
    // Whether the server accepts simulcast (`media.simulcast`): only then are rids offered
    // (an offer with rids carries no RTX stream association for a server without them).
    this.simulcast = reply.simulcast === true;
    this.participants = {
      [reply.participant.id]: { ...reply.participant, self: true, transports: {} },
    };
    for (const p of reply.participants) this.participants[p.id] = { ...p, self: false, transports: {} };
    this.streams = {};
    const listed = new Set(reply.streams.map((stream) => stream.id));
    for (const streamId of this._recovering) if (!listed.has(streamId)) this._recovering.delete(streamId);
    for (const stream of reply.streams) this._addStream(stream);
    for (const publication of this.publications) this._negotiatePublication(publication);
    this._changed();
  }

  /**
   * The signalling link is lost: the server ends (or has ended) this page's
   * connections. Publications close theirs and wait for the next `joined`; the
   * subscriptions keep theirs, so their last pictures stay on screen (frozen), until
   * the next `joined` replaces them. The room as last seen stays shown meanwhile.
   */
  _onDisconnected() {
    for (const publication of this.publications) {
      this._closePublication(publication);
      publication.recovering = true;
    }
    for (const sub of Object.values(this.subscriptions)) sub.recovering = true;
    this._changed();
  }

  /** Close every peer connection of this page (the server has or will have closed its side). */
  _resetMedia() {
    for (const streamId of Object.keys(this.subscriptions)) this._dropSubscription(streamId);
    for (const publication of this.publications) this._closePublication(publication);
    for (const timer of this._forgetTimers.values()) clearTimeout(timer);
    this._forgetTimers.clear();
  }

  /** Close a publication's connection (kept in the list, to publish again). */
  _closePublication(publication) {
    clearTimeout(publication.recoverTimer);
    publication.recoverTimer = null;
    closePeer(publication.pc);
    publication.pc = null;
    if (publication.streamId) publication.lastStreamId = publication.streamId;
    publication.streamId = null;
    publication.pcState = "new";
  }

  /** A new peer connection, listed in `window.__huizhenPeers` until it closes. */
  _peerConnection() {
    const pc = this.client.createPeerConnection();
    livePeers().add(pc);
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "closed") livePeers().delete(pc);
    });
    return pc;
  }

  /**
   * The publication's connection died (failed, or the server ended the stream): end
   * what is left of it on both sides and publish the same media again on a fresh one.
   */
  _recoverPublication(publication) {
    if (publication.recoverTimer || !this.publications.includes(publication)) return;
    const old = publication.streamId;
    this._closePublication(publication);
    publication.recovering = true;
    publication.attempts = (publication.attempts ?? 0) + 1;
    if (old && this.state === "joined") this.client.unpublish(old).catch(() => {});
    publication.recoverTimer = setTimeout(() => {
      publication.recoverTimer = null;
      if (this.state === "joined" && this.publications.includes(publication) && !publication.pc) {
        this._negotiatePublication(publication);
      }
    }, recoverDelay(publication.attempts));
    this._changed();
  }

  _onStreamEnded({ stream, reason }) {
    const publication = this.publications.find((p) => p.streamId === stream);
    if (publication && (reason === "failed" || reason === "closed")) {
      this._recoverPublication(publication);
    }
  }

  async _negotiatePublication(publication) {
    const pc = this._peerConnection();
    publication.pc = pc;
    publication.error = null;
    publication.pcState = pc.connectionState;
    pc.addEventListener("connectionstatechange", () => {
      if (publication.pc !== pc) return;
      publication.pcState = pc.connectionState;
      if (publication.pcState === "connected") {
        publication.recovering = false;
        publication.attempts = 0;
      } else if (publication.pcState === "failed" && this.state === "joined") {
        this._recoverPublication(publication);
      }
      this._changed();
    });
    // Video first, then audio: the stream's tracks are listed in this order.
    const tracks = [...publication.media.getVideoTracks(), ...publication.media.getAudioTracks()];
    for (const track of tracks) {
      const init = { direction: "sendonly", streams: [publication.media] };
      // VP8 simulcast, three streams (quarter, half, full size; lowest first, as the
      // server numbers them) each in three temporal layers (L1T3): the server forwards
      // each viewer the stream and layers its downlink carries. A server that does not
      // accept simulcast answers without it and gets one full-size L1T3 stream (below).
      if (track.kind === "video" && (readFragment().get("codec") || "VP8").toUpperCase() === "VP8") {
        init.sendEncodings = this.simulcast ? simulcastEncodings(track)
          : [{ scalabilityMode: "L1T3" }];
      }
      const transceiver = pc.addTransceiver(track, init);
      if (track.kind === "video") preferVideoCodec(transceiver, readFragment().get("codec"));
    }
    this._changed();
    try {
      const stream = await this.client.publish(pc);
      if (publication.pc !== pc) return; // replaced meanwhile
      await singleStreamUnlessSimulcast(pc);
      publication.streamId = stream.id;
      this.streams[stream.id] = stream;
    } catch (err) {
      console.warn("huizhen: publishing failed", err);
      if (publication.pc === pc) {
        publication.error = err;
        publication.pc = null;
        closePeer(pc);
        if (!FINAL_PUBLISH_ERRORS.has(err.code) && this.state === "joined") {
          this._recoverPublication(publication);
        }
      }
    }
    this._changed();
  }

  _addStream(stream) {
    this.streams[stream.id] = stream;
    const owner = this.participants[stream.participant];
    if (owner && !owner.transports[stream.id]) {
      // The server reports the publication's state as of now; events keep it current.
      owner.transports[stream.id] = {
        id: stream.id, direction: "publish", state: stream.state || "unknown",
      };
    }
    const mine = stream.participant === this.self?.id;
    if (!mine && this.autoSubscribe(stream, this)) this.subscribe(stream.id);
    this._changed();
  }

  _removeParticipant(participantId) {
    for (const stream of Object.values(this.streams)) {
      if (stream.participant === participantId) {
        delete this.streams[stream.id];
        this._dropSubscription(stream.id);
      }
    }
    delete this.participants[participantId];
    this._changed();
  }

  _onConnectionState({ participant, transport, direction, state }) {
    const owner = this.participants[participant];
    if (!owner) return;
    owner.transports[transport] = { id: transport, direction, state };
    clearTimeout(this._forgetTimers.get(transport));
    if (state === "closed") {
      // Keep a closed transport visible for a moment, then forget it.
      this._forgetTimers.set(transport, setTimeout(() => {
        if (owner.transports[transport]?.state === "closed") delete owner.transports[transport];
        this._forgetTimers.delete(transport);
        this._changed();
      }, FORGET_CLOSED_MS));
    }
    this._changed();
  }

  _onSubscriptionClosed({ subscription, stream, reason }) {
    const sub = this.subscriptions[stream];
    if (!sub || (sub.id && sub.id !== subscription)) return;
    if (reason === "stream-ended") {
      this._dropSubscription(stream);
      return;
    }
    // failed, closed, answer-timeout: the stream goes on; receive it on a fresh connection.
    sub.id = null; // the server has already ended it
    this._recoverSubscription(stream);
  }

  /**
   * A subscription's connection died: end it on both sides and subscribe again on a
   * fresh one (with a short capped backoff) while the stream exists.
   */
  _recoverSubscription(streamId) {
    const sub = this.subscriptions[streamId];
    if (!sub) return;
    const attempts = (this._attempts[streamId] ?? 0) + 1;
    this._attempts[streamId] = attempts;
    this._dropSubscription(streamId);
    if (sub.id && this.state === "joined") this.client.unsubscribe(sub.id).catch(() => {});
    setTimeout(() => {
      if (this.streams[streamId] && !this.subscriptions[streamId] && this.state === "joined") {
        this.subscribe(streamId);
      }
    }, recoverDelay(attempts));
  }

  _dropSubscription(streamId) {
    const sub = this.subscriptions[streamId];
    if (!sub) return;
    delete this.subscriptions[streamId];
    closePeer(sub.pc);
    for (const track of sub.media.getTracks()) track.stop();
    this._changed();
  }

  async _pollStats() {
    for (const sub of Object.values(this.subscriptions)) {
      if (sub.pc.connectionState !== "connected") continue;
      let video = null;
      let audio = null;
      try {
        (await sub.pc.getStats()).forEach((s) => {
          if (s.type !== "inbound-rtp") return;
          if (s.kind === "video") video = s;
          if (s.kind === "audio") audio = s;
        });
      } catch {
        continue;
      }
      sub.stats = {
        width: video?.frameWidth ?? null,
        height: video?.frameHeight ?? null,
        fps: video?.framesPerSecond ?? null,
        framesDecoded: video?.framesDecoded ?? 0,
        audioPackets: audio?.packetsReceived ?? 0,
      };
    }
    if (Object.keys(this.subscriptions).length) this._changed();
  }
}

/**
 * One `client-stats` entry from a subscription's getStats() report: its inbound video
 * (null without one) and the selected candidate pair's round trip (seconds).
 */
function receptionOf(streamId, report) {
  let video = null;
  let transport = null;
  const pairs = new Map();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") video = s;
    else if (s.type === "transport") transport = s;
    else if (s.type === "candidate-pair") pairs.set(s.id, s);
  });
  if (!video) return null;
  let pair = transport?.selectedCandidatePairId ? pairs.get(transport.selectedCandidatePairId) : null;
  pair ??= [...pairs.values()].find((p) => p.nominated && p.state === "succeeded") ?? null;
  const count = (value) => (Number.isSafeInteger(value) ? value : 0);
  const seconds = (value) => (Number.isFinite(value) && value >= 0 ? value : null);
  return {
    stream: streamId,
    framesDecoded: count(video.framesDecoded),
    freezeCount: count(video.freezeCount),
    totalFreezesDuration: seconds(video.totalFreezesDuration) ?? 0,
    packetsLost: count(video.packetsLost),
    jitter: seconds(video.jitter),
    currentRoundTripTime: seconds(pair?.currentRoundTripTime),
  };
}

/** Close `pc` (if any) and forget it in `window.__huizhenPeers`. */
function closePeer(pc) {
  if (!pc) return;
  livePeers().delete(pc);
  pc.close();
}

/**
 * Put the codec named in the URL fragment (`&codec=H264` or `&codec=VP8`) first in the
 * offer. For H.264, the profile the server forwards (constrained baseline,
 * packetization-mode 1) goes first.
 */
function preferVideoCodec(transceiver, name) {
  if (!name || !transceiver.setCodecPreferences || !RTCRtpSender.getCapabilities) return;
  const codecs = RTCRtpSender.getCapabilities("video").codecs;
  const mime = `video/${name.toLowerCase()}`;
  const score = (c) => {
    const fmtp = c.sdpFmtpLine || "";
    return (fmtp.includes("packetization-mode=1") ? 2 : 0)
      + (/profile-level-id=42e01f/i.test(fmtp) ? 1 : 0);
  };
  const chosen = codecs.filter((c) => c.mimeType.toLowerCase() === mime)
    .sort((a, b) => score(b) - score(a));
  if (!chosen.length) {
    console.warn(`huizhen: this browser cannot send ${name}`);
    return;
  }
  transceiver.setCodecPreferences([...chosen, ...codecs.filter((c) => !chosen.includes(c))]);
}
