// The room as the browser sees it: participants, their transports' states,
// streams, and this page's own publications and subscriptions (one
// RTCPeerConnection each). Pages render it; `window.huizhen` exposes it to tests.

import { readFragment, SignalingClient } from "./signaling.js";

const FORGET_CLOSED_MS = 15000;
const RESUBSCRIBE_ATTEMPTS = 3;

export class RoomSession {
  /**
   * @param {string} token  the room token from the URL fragment
   * @param {object} options
   *   autoSubscribe(stream, session) -> bool: subscribe to this stream on sight
   */
  constructor(token, { autoSubscribe = () => true, clientOptions = {} } = {}) {
    this.client = new SignalingClient(token, clientOptions);
    this.autoSubscribe = autoSubscribe;
    this.self = null;
    this.room = null;
    this.grants = [];
    this.expiresAt = null;
    this.participants = {}; // id -> {id, name, role, self, transports: {id -> {direction, state}}}
    this.streams = {}; // stream id -> {id, participant, tracks}
    this.subscriptions = {}; // stream id -> {streamId, id, pc, media, pcState, stats, attempts}
    this.publications = []; // {key, label, media, pc, streamId, pcState, error}
    this.errors = []; // server errors, newest last
    this._listeners = new Set();
    this._forgetTimers = new Map();
    this._attempts = {}; // stream id -> subscription attempts since the last join
    this._statsTimer = null;

    const c = this.client;
    c.on("state", () => this._changed());
    c.on("joined", (reply) => this._onJoined(reply));
    c.on("disconnected", () => this._onDisconnected());
    c.on("error", (error) => this.reportError(error.code, error.message));
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

  /** Record an error (from the server, or a local one such as a missing camera) for display. */
  reportError(code, message) {
    this.errors.push({ code, message, at: Date.now() });
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
  }

  close() {
    clearInterval(this._statsTimer);
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
    pc?.close();
    for (const track of publication.media.getTracks()) track.stop();
    this._changed();
    if (streamId && this.state === "joined") {
      await this.client.unpublish(streamId).catch(() => {});
    }
  }

  async subscribe(streamId) {
    if (this.subscriptions[streamId]) return this.subscriptions[streamId];
    const pc = this.client.createPeerConnection();
    const media = new MediaStream();
    const sub = { streamId, id: null, pc, media, pcState: pc.connectionState, stats: null,
      attempts: (this._attempts[streamId] ?? 0) + 1, error: null };
    this.subscriptions[streamId] = sub;
    pc.addEventListener("track", (event) => {
      media.addTrack(event.track);
      this._changed();
    });
    pc.addEventListener("connectionstatechange", () => {
      sub.pcState = pc.connectionState;
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
      if (this.subscriptions[streamId] === sub) this._dropSubscription(streamId);
      console.warn(`huizhen: subscribing to ${streamId} failed`, err);
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
      framesDecoded: () => session.framesDecoded(),
    };
    // Copy descriptors, not values: getters in `extra` stay live.
    Object.defineProperties(exposed, Object.getOwnPropertyDescriptors(extra));
    window.huizhen = exposed;
    return exposed;
  }

  // ------------------------------------------------------------------ internals

  _changed() {
    for (const listener of this._listeners) {
      try {
        listener(this);
      } catch (err) {
        console.error("huizhen: render failed", err);
      }
    }
  }

  _onJoined(reply) {
    this._resetMedia();
    this._attempts = {};
    this.self = reply.participant;
    this.room = reply.room;
    this.grants = reply.grants;
    this.expiresAt = reply.expiresAt;
    this.participants = {
      [reply.participant.id]: { ...reply.participant, self: true, transports: {} },
    };
    for (const p of reply.participants) this.participants[p.id] = { ...p, self: false, transports: {} };
    this.streams = {};
    for (const stream of reply.streams) this._addStream(stream);
    for (const publication of this.publications) this._negotiatePublication(publication);
    this._changed();
  }

  _onDisconnected() {
    this._resetMedia();
    // Everybody else is unknown until the next `joined`.
    this.participants = {};
    this.streams = {};
    this._changed();
  }

  /** Close every peer connection of this page (the server has or will have closed its side). */
  _resetMedia() {
    for (const streamId of Object.keys(this.subscriptions)) this._dropSubscription(streamId);
    for (const publication of this.publications) {
      publication.pc?.close();
      publication.pc = null;
      publication.streamId = null;
      publication.pcState = "new";
    }
    for (const timer of this._forgetTimers.values()) clearTimeout(timer);
    this._forgetTimers.clear();
  }

  async _negotiatePublication(publication) {
    const pc = this.client.createPeerConnection();
    publication.pc = pc;
    publication.error = null;
    publication.pcState = pc.connectionState;
    pc.addEventListener("connectionstatechange", () => {
      publication.pcState = pc.connectionState;
      this._changed();
    });
    // Video first, then audio: the stream's tracks are listed in this order.
    const tracks = [...publication.media.getVideoTracks(), ...publication.media.getAudioTracks()];
    for (const track of tracks) {
      const init = { direction: "sendonly", streams: [publication.media] };
      // VP8 in three temporal layers (L1T3): the server forwards each viewer the layers
      // its downlink carries.
      if (track.kind === "video" && (readFragment().get("codec") || "VP8").toUpperCase() === "VP8") {
        init.sendEncodings = [{ scalabilityMode: "L1T3" }];
      }
      const transceiver = pc.addTransceiver(track, init);
      if (track.kind === "video") preferVideoCodec(transceiver, readFragment().get("codec"));
    }
    this._changed();
    try {
      const stream = await this.client.publish(pc);
      if (publication.pc !== pc) return; // replaced meanwhile
      publication.streamId = stream.id;
      this.streams[stream.id] = stream;
    } catch (err) {
      if (publication.pc === pc) {
        publication.error = err;
        publication.pc = null;
        pc.close();
      }
      console.warn("huizhen: publishing failed", err);
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
    const attempts = sub.attempts;
    this._dropSubscription(stream);
    this._changed();
    if (reason === "failed" && this.streams[stream] && attempts < RESUBSCRIBE_ATTEMPTS) {
      this._attempts[stream] = attempts;
      setTimeout(() => {
        if (this.streams[stream] && !this.subscriptions[stream] && this.state === "joined") {
          this.subscribe(stream);
        }
      }, 2000);
    }
  }

  _dropSubscription(streamId) {
    const sub = this.subscriptions[streamId];
    if (!sub) return;
    delete this.subscriptions[streamId];
    sub.pc.close();
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
