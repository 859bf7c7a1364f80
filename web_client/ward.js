// Bedside page: publish the camera and microphone, show whether the connection
// is up, play what the specialists send back, show who steers the PTZ camera (ward
// staff can take it over) and the monitor's vital signs. When the server ends the
// camera's stream (`stream-ended`), the page says so and offers to publish again.
// `#token=…&autostart=1` starts the camera without a click (used by the tests).
// A camera that cannot be opened (blocked, absent, busy, or a page not opened over HTTPS)
// is explained with what to do, until it is fixed.

import { CameraHelp, cameraProblem, insecureContext } from "./camera_help.js";
import { has, t } from "./i18n.js";
import { PtzModel, PtzTakeover } from "./ptz.js";
import { RecordingNotice } from "./recording_state.js";
import { RoomSession } from "./room.js";
import { readFragment } from "./signaling.js";
import {
  LinkWatch, TileGrid, badge, bedLabelOf, liveErrorText, markStale, preparePage, renderIdentity,
  renderParticipants, renderStatus, requireToken,
} from "./ui.js";
import { VitalsPanel } from "./vitals.js";

await preparePage();

const $ = (id) => document.getElementById(id);
const status = $("status");
const preview = $("preview");
const startButton = $("start");
const stopButton = $("stop");
const publicationState = $("publication-state");

const params = readFragment();
const token = requireToken(params, status);
if (token) {
  // Hear and see everybody else (e.g. a specialist talking back).
  const session = new RoomSession(token, { autoSubscribe: () => true });
  const link = new LinkWatch(session, () => render());
  const tiles = new TileGrid($("tiles"), session, {
    preferSound: true,
    emptyText: t("ward.no-specialist"),
    link,
    bedLabel: bedLabelOf(session),
    onHealth: () => render(),
  });
  const help = new CameraHelp($("camera-help"), { retry: () => startCamera() });
  const ptz = new PtzModel(session);
  const takeover = new PtzTakeover($("ptz"), ptz);
  const vitals = new VitalsPanel($("vitals"), session);
  const recording = new RecordingNotice($("recording-state"), session);
  let camera = null; // the camera publication, while active
  let busy = false;
  let ended = null; // {stream, reason} when the server ended our camera's stream
  // Moved to another node (its node died, or a redirect) while the camera is on: the page
  // there starts it again by itself.
  session.client.moveFragment = () => (camera ? { autostart: "1" } : {});

  function renderEnded() {
    const notice = $("stream-ended");
    notice.hidden = !ended;
    if (!ended) return;
    // Why the server stopped forwarding our stream (`stream-ended` reasons).
    const key = `ward.end-reason.${ended.reason}`;
    const reason = has(key) ? t(key) : t("ward.end-reason.unknown");
    $("stream-ended-text").textContent = t("ward.stream-ended", { reason });
    notice.dataset.reason = ended.reason;
    $("republish").disabled = busy;
  }

  function renderPublication() {
    const canPublish = session.state === "joined" && session.grants.includes("publish");
    startButton.disabled = busy || Boolean(camera) || !canPublish;
    startButton.hidden = Boolean(camera);
    stopButton.hidden = !camera;
    stopButton.disabled = busy;
    if (!camera) {
      publicationState.replaceChildren(document.createTextNode(t("ward.camera-off")));
      publicationState.dataset.state = "off";
      return;
    }
    const server = camera.streamId ? session.transportState(camera.streamId) : null;
    const parts = [document.createTextNode(`${t("live.transport.browser")} `), badge(camera.pcState)];
    parts.push(document.createTextNode(` ${t("live.transport.server")} `), badge(server ?? "new"));
    if (camera.error) {
      parts.push(document.createTextNode(
        ` ${liveErrorText(camera.error.code, camera.error.detail ?? camera.error.message)}`));
    }
    publicationState.replaceChildren(...parts);
    publicationState.dataset.state = camera.pcState;
    publicationState.dataset.serverState = server ?? "new";
  }

  /** Our camera's media for the status line: sending once both ends say connected. */
  function mediaHealth() {
    const incoming = tiles.summary();
    if (incoming.state === "frozen" || incoming.state === "recovering") return incoming;
    if (!camera) return incoming;
    const server = camera.streamId ? session.transportState(camera.streamId) : null;
    return { state: camera.pcState === "connected" && server === "connected" ? "sending"
      : "waiting", lastFrameWall: null };
  }

  function render() {
    const signalling = link.signalling;
    tiles.render();
    renderStatus(status, session, { signalling, media: mediaHealth() });
    renderIdentity($("identity"), session);
    renderParticipants($("participants"), session,
      { mediaState: (id) => tiles.mediaState(id), signalling });
    renderPublication();
    renderEnded();
    takeover.render();
    if (signalling !== "up") markStale(document.querySelectorAll(".ptz-camera"));
    document.body.dataset.link = signalling;
  }

  // The server ended our camera's stream (its connection failed or closed): say so
  // and offer to publish again; the local camera may still look fine.
  function onStreamEnded({ stream, reason }) {
    if (!camera || camera.streamId !== stream) return;
    ended = { stream, reason };
    render();
  }

  async function publishAgain() {
    if (busy) return;
    const stale = camera;
    camera = null;
    ended = null;
    preview.srcObject = null;
    if (stale) await session.unpublish(stale); // closes our side; the server already ended it
    await startCamera();
  }

  async function startCamera() {
    if (camera || busy) return;
    if (insecureContext()) {
      help.show("insecure");
      return;
    }
    busy = true;
    renderPublication();
    let media = null;
    try {
      media = await navigator.mediaDevices.getUserMedia({
        video: { width: 640, height: 480 }, audio: true,
      });
      help.show(null);
    } catch (err) {
      console.warn("huizhen: camera/microphone unavailable", err.name);
      session.reportError("device", `camera/microphone unavailable (${err.name})`);
      help.show(cameraProblem(err));
    }
    try {
      if (media) {
        preview.srcObject = media;
        camera = await session.publish(media, "bedside camera");
      }
    } finally {
      busy = false;
      render();
    }
  }

  async function stopCamera() {
    if (!camera || busy) return;
    busy = true;
    const ending = camera;
    camera = null;
    ended = null;
    preview.srcObject = null;
    try {
      await session.unpublish(ending);
    } finally {
      busy = false;
      render();
    }
  }

  startButton.addEventListener("click", startCamera);
  stopButton.addEventListener("click", stopCamera);
  $("republish").addEventListener("click", publishAgain);
  session.client.on("stream-ended", onStreamEnded);
  session.onChange(render);
  const exposed = { startCamera, stopCamera, publishAgain, get camera() { return camera; },
    get ended() { return ended; }, get cameraProblem() { return help.problem; },
    ptz: ptz.expose() };
  Object.defineProperties(exposed, Object.getOwnPropertyDescriptors(vitals.expose()));
  Object.defineProperties(exposed, Object.getOwnPropertyDescriptors(recording.expose()));
  session.exposeForTests(exposed);
  if (params.get("autostart") === "1") {
    // Publish as soon as the first join succeeds (later joins republish by themselves).
    const off = session.client.on("joined", () => {
      off();
      startCamera();
    });
  }
  if (insecureContext()) help.show("insecure"); // say so before anyone presses Start
  session.start();
  render();
}
