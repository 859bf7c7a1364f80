// Bedside page: publish the camera and microphone, show whether the connection
// is up, play what the specialists send back, show who steers the PTZ camera (ward
// staff can take it over) and the monitor's vital signs.
// `#token=…&autostart=1` starts the camera without a click (used by the tests).

import { PtzModel, PtzTakeover } from "./ptz.js";
import { RoomSession } from "./room.js";
import { readFragment } from "./signaling.js";
import { TileGrid, badge, renderIdentity, renderParticipants, renderStatus, requireToken } from "./ui.js";
import { VitalsPanel } from "./vitals.js";

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
  const tiles = new TileGrid($("tiles"), session, {
    preferSound: true,
    emptyText: "No specialist is talking to this bedside.",
  });
  const ptz = new PtzModel(session);
  const takeover = new PtzTakeover($("ptz"), ptz);
  const vitals = new VitalsPanel($("vitals"), session);
  let camera = null; // the camera publication, while active
  let busy = false;

  function renderPublication() {
    const canPublish = session.state === "joined" && session.grants.includes("publish");
    startButton.disabled = busy || Boolean(camera) || !canPublish;
    startButton.hidden = Boolean(camera);
    stopButton.hidden = !camera;
    stopButton.disabled = busy;
    if (!camera) {
      publicationState.replaceChildren(document.createTextNode("Camera off"));
      publicationState.dataset.state = "off";
      return;
    }
    const server = camera.streamId ? session.transportState(camera.streamId) : null;
    const parts = [document.createTextNode("Browser "), badge(camera.pcState)];
    parts.push(document.createTextNode(" Server "), badge(server ?? "new"));
    if (camera.error) parts.push(document.createTextNode(` ${camera.error.message}`));
    publicationState.replaceChildren(...parts);
    publicationState.dataset.state = camera.pcState;
    publicationState.dataset.serverState = server ?? "new";
  }

  function render() {
    renderStatus(status, session);
    renderIdentity($("identity"), session);
    renderParticipants($("participants"), session);
    tiles.render();
    renderPublication();
    takeover.render();
  }

  async function startCamera() {
    if (camera || busy) return;
    busy = true;
    renderPublication();
    try {
      const media = await navigator.mediaDevices.getUserMedia({
        video: { width: 640, height: 480 }, audio: true,
      });
      preview.srcObject = media;
      camera = await session.publish(media, "bedside camera");
    } catch (err) {
      session.reportError("device", `camera/microphone unavailable (${err.name}: ${err.message})`);
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
  session.onChange(render);
  const exposed = { startCamera, stopCamera, get camera() { return camera; }, ptz: ptz.expose() };
  Object.defineProperties(exposed, Object.getOwnPropertyDescriptors(vitals.expose()));
  session.exposeForTests(exposed);
  if (params.get("autostart") === "1") {
    // Publish as soon as the first join succeeds (later joins republish by themselves).
    const off = session.client.on("joined", () => {
      off();
      startCamera();
    });
  }
  session.start();
  render();
}
