// Specialist page: every participant and their connection states, every stream
// subscribed and shown, a talk-back publication to the bedside, the bedside
// camera's PTZ pad and the patient monitor's live vital signs.

import { t } from "./i18n.js";
import { PtzModel, PtzPad } from "./ptz.js";
import { RoomSession } from "./room.js";
import { readFragment } from "./signaling.js";
import {
  TileGrid, badge, liveErrorText, preparePage, renderIdentity, renderParticipants, renderStatus,
  requireToken,
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
  const tiles = new TileGrid($("tiles"), session, {
    preferSound: false,
    emptyText: t("expert.waiting-for-bedside"),
  });
  const ptz = new PtzModel(session);
  const pad = new PtzPad($("ptz"), ptz);
  const vitalsNode = $("vitals");
  const vitals = new VitalsPanel(vitalsNode, session);
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
    renderStatus(status, session);
    renderIdentity($("identity"), session);
    renderParticipants($("participants"), session);
    tiles.render();
    renderTalk();
    pad.render();
    $("layout").classList.toggle("has-vitals", !vitalsNode.hidden);
  }

  talkButton.addEventListener("click", async () => {
    if (busy) return;
    busy = true;
    renderTalk();
    try {
      if (talk) {
        const ending = talk;
        talk = null;
        talkPreview.srcObject = null;
        await session.unpublish(ending);
      } else {
        const media = await navigator.mediaDevices.getUserMedia({
          audio: true, video: { width: 640, height: 480 },
        });
        talkPreview.srcObject = media;
        talk = await session.publish(media, "specialist microphone and camera");
      }
    } catch (err) {
      session.reportError("device", `microphone/camera unavailable (${err.name}: ${err.message})`);
    } finally {
      busy = false;
      renderTalk();
    }
  });

  session.onChange(render);
  vitals.onToggle = () => render();
  const exposed = { talk: () => talkButton.click(), ptz: ptz.expose(), pad };
  // vitals, vitalSamples, waveforms: live getters (copied as descriptors, not values).
  Object.defineProperties(exposed, Object.getOwnPropertyDescriptors(vitals.expose()));
  session.exposeForTests(exposed);
  session.start();
  render();
}
