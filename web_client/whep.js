// WHEP player: `#token=…&room=…[&stream=…]` POSTs a recvonly offer (video and audio) to
// /whep/<room> with the room token as a bearer token, plays the answer's media, and
// DELETEs the session on "stop" or when the page goes away. See signaling/WHIP-WHEP.md.
// The ICE servers (TURN credentials minted for this session) come in the response's
// `Link` headers; the offer exists by then, so they are set with setConfiguration, as
// RFC 9725 4.6 suggests: they serve the connectivity checks that follow.

import { t } from "./i18n.js";
import { iceServersFromLinks } from "./link_header.js";
import { readFragment, waitForIceGathering } from "./signaling.js";
import { preparePage, requireToken } from "./ui.js";

await preparePage();

const $ = (id) => document.getElementById(id);
const status = $("status");
const video = $("video");
const stopButton = $("stop");

function show(key, params = {}, kind = "info") {
  status.textContent = t(key, params);
  status.dataset.kind = kind;
  status.dataset.state = key;
}

async function framesDecoded(pc) {
  let frames = 0;
  (await pc.getStats()).forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === "video") frames += report.framesDecoded || 0;
  });
  return frames;
}

const params = readFragment();
const token = requireToken(params, status);
const room = params.get("room");
if (token && !room) show("whep.no-room", {}, "error");
if (token && room) {
  const pc = new RTCPeerConnection();
  window.huizhen = {
    state: "starting", peerConnections: [pc], iceServers: [], framesDecoded: () => framesDecoded(pc),
  };
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const media = new MediaStream();
  pc.ontrack = (event) => {
    media.addTrack(event.track);
    video.srcObject = media;
  };
  let resource = null;
  const remove = (keepalive) => {
    if (!resource) return;
    const url = resource;
    resource = null;
    fetch(url, { method: "DELETE", keepalive, headers: { Authorization: `Bearer ${token}` } })
      .catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "connected") {
      show("whep.status.playing", { room });
      window.huizhen.state = "playing";
    } else if (pc.connectionState === "failed" || pc.connectionState === "closed") {
      show("whep.status.ended", {}, "error");
      window.huizhen.state = "ended";
      stopButton.disabled = true;
    }
  };
  stopButton.addEventListener("click", () => {
    remove(false);
    pc.close();
    show("whep.status.stopped");
    window.huizhen.state = "stopped";
    stopButton.disabled = true;
  });
  window.addEventListener("pagehide", () => remove(true));
  try {
    show("whep.status.connecting");
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc);
    const path = `/whep/${encodeURIComponent(room)}`;
    const stream = params.get("stream");
    const response = await fetch(stream ? `${path}?stream=${encodeURIComponent(stream)}` : path, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
      body: pc.localDescription.sdp,
    });
    const body = await response.text();
    if (response.status !== 201) {
      // The server's refusal is one line, "code: message".
      show("whep.status.refused", { status: response.status, reason: body.trim() }, "error");
      window.huizhen.state = "refused";
      pc.close();
    } else {
      resource = response.headers.get("Location");
      const iceServers = iceServersFromLinks(response.headers.get("Link"));
      if (iceServers.length) {
        try {
          pc.setConfiguration({ ...pc.getConfiguration(), iceServers });
          window.huizhen.iceServers = iceServers;
        } catch (err) {
          console.warn("huizhen: the announced ICE servers could not be used", err);
        }
      }
      stopButton.disabled = false;
      await pc.setRemoteDescription({ type: "answer", sdp: body });
      window.huizhen.state = "answered";
    }
  } catch (err) {
    show("whep.status.refused", { status: "-", reason: String(err) }, "error");
    window.huizhen.state = "error";
  }
}
