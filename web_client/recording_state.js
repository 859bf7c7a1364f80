// Whether the room is being recorded (signaling/PROTOCOL.md: the `recording-state` event).
//
// The recorder stops when the server's disk is full and starts again when space is freed;
// both pages show a banner while it is stopped, and say so briefly once it records again.

import { has, t } from "./i18n.js";

/** Shows `recording-state` events (and `joined.recording`) of `session` in `node`. */
export class RecordingNotice {
  constructor(node, session) {
    this.node = node;
    this.state = "recording";
    this.reason = null;
    session.client.on("recording-state", (event) => this.update(event));
    // Joining (or rejoining) while it is stopped: `joined.recording` says so.
    session.client.on("joined", (reply) => {
      if (reply.recording) this.update(reply.recording);
      else if (this.state === "stopped") this.update({ state: "recording" });
    });
  }

  update({ state, reason }) {
    this.state = state === "stopped" ? "stopped" : "recording";
    this.reason = this.state === "stopped" ? String(reason || "") : null;
    const key = this.state === "stopped" ? `live.recording.stopped.${this.reason}` : "live.recording.resumed";
    this.node.textContent = t(has(key) ? key : "live.recording.stopped");
    this.node.dataset.state = this.state;
    this.node.hidden = false;
  }

  /** For tests: `recordingState` read live. */
  expose() {
    const notice = this;
    return {
      get recordingState() {
        return { state: notice.state, reason: notice.reason, text: notice.node.textContent };
      },
    };
  }
}
