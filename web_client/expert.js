// Specialist page: every participant and their connection states, every stream
// subscribed and shown, a talk-back publication to the bedside, the bedside
// camera's PTZ pad and the patient monitor's live vital signs.

import { CameraHelp, cameraProblem, insecureContext } from "./camera_help.js";
import { t } from "./i18n.js";
import { PtzModel, PtzPad } from "./ptz.js";
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
const talkButton = $("talk");
const talkPreview = $("talk-preview");
const talkState = $("talk-state");

const token = requireToken(readFragment(), status);
if (token) {
  const session = new RoomSession(token, { autoSubscribe: () => true });
  const link = new LinkWatch(session, () => render());
  const tiles = new TileGrid($("tiles"), session, {
    preferSound: false,
    emptyText: t("expert.waiting-for-bedside"),
    link,
    bedLabel: bedLabelOf(session),
    onHealth: () => render(),
  });
  const help = new CameraHelp($("talk-help"), { retry: () => startTalk() });
  const ptz = new PtzModel(session);
  const pad = new PtzPad($("ptz"), ptz);
  const vitalsNode = $("vitals");
  const vitals = new VitalsPanel(vitalsNode, session);
  const recording = new RecordingNotice($("recording-state"), session);
  let talk = null; // the talk-back publication, while active
  let busy = false;

  function renderTalk() {
    const canPublish = session.state === "joined" && session.grants.includes("publish");
    talkButton.disabled = busy || (!talk && !canPublish);
    talkButton.textContent = t(talk ? "expert.talk.stop" : "expert.talk.start");
    talkButton.classList.toggle("danger", Boolean(talk));
    talkPreview.hidden = !talk;
    if (!talk) {
      talkState.replaceChildren();
      return;
    }
    const server = talk.streamId ? session.transportState(talk.streamId) : null;
    const parts = [document.createTextNode(`${t("live.transport.browser")} `), badge(talk.pcState)];
    if (server) parts.push(document.createTextNode(` ${t("live.transport.server")} `), badge(server));
    if (talk.error) {
      parts.push(document.createTextNode(
        ` ${liveErrorText(talk.error.code, talk.error.detail ?? talk.error.message)}`));
    }
    talkState.replaceChildren(...parts);
  }

  function render() {
    const signalling = link.signalling;
    tiles.render();
    renderStatus(status, session, { signalling, media: tiles.summary() });
    renderIdentity($("identity"), session);
    renderParticipants($("participants"), session,
      { mediaState: (id) => tiles.mediaState(id), signalling });
    renderTalk();
    pad.render();
    if (signalling !== "up") markStale(document.querySelectorAll(".ptz-camera"));
    document.body.dataset.link = signalling;
    $("layout").classList.toggle("has-vitals", !vitalsNode.hidden);
  }

  async function startTalk() {
    if (talk || busy) return;
    if (insecureContext()) {
      help.show("insecure");
      return;
    }
    busy = true;
    renderTalk();
    let media = null;
    try {
      media = await navigator.mediaDevices.getUserMedia({
        audio: true, video: { width: 640, height: 480 },
      });
      help.show(null);
    } catch (err) {
      session.reportError("device", `microphone/camera unavailable (${err.name})`);
      help.show(cameraProblem(err));
    }
    try {
      if (media) {
        talkPreview.srcObject = media;
        talk = await session.publish(media, "specialist microphone and camera");
      }
    } finally {
      busy = false;
      renderTalk();
    }
  }

  async function stopTalk() {
    if (!talk || busy) return;
    busy = true;
    const ending = talk;
    talk = null;
    talkPreview.srcObject = null;
    try {
      await session.unpublish(ending);
    } finally {
      busy = false;
      renderTalk();
    }
  }

  talkButton.addEventListener("click", () => (talk ? stopTalk() : startTalk()));

  session.onChange(render);
  vitals.onToggle = () => render();
  const exposed = { talk: () => talkButton.click(), ptz: ptz.expose(), pad };
  // vitals, vitalSamples, waveforms: live getters (copied as descriptors, not values).
  Object.defineProperties(exposed, Object.getOwnPropertyDescriptors(vitals.expose()));
  Object.defineProperties(exposed, Object.getOwnPropertyDescriptors(recording.expose()));
  session.exposeForTests(exposed);
  session.start();
  render();
}
