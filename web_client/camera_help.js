// When the camera or microphone cannot be opened, say why and what to do, and keep saying
// it until it is fixed: the browser blocked them for this site (NotAllowedError), none is
// plugged in (NotFoundError), another program holds them (NotReadableError), or the page
// was not opened over HTTPS (browsers only offer cameras to secure pages: no
// `navigator.mediaDevices` at all). The notice re-checks by itself when a device is
// plugged in or the site's permission changes, and offers a retry button.

import { t } from "./i18n.js";
import { el } from "./ui.js";

/** The page cannot ask for a camera at all: not HTTPS (nor localhost). */
export function insecureContext() {
  return window.isSecureContext === false || !navigator.mediaDevices?.getUserMedia;
}

/** What went wrong, from a getUserMedia error: denied, absent, busy, insecure or other. */
export function cameraProblem(err) {
  if (insecureContext()) return "insecure";
  switch (err?.name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
      return "denied";
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return "absent";
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return "busy";
    case "SecurityError":
      return "insecure";
    default:
      return "other";
  }
}

const STEPS = { denied: 3, absent: 2, busy: 3, insecure: 2, other: 2 };

export class CameraHelp {
  /**
   * @param {HTMLElement} container  emptied and filled with the explanation (hidden when fine)
   * @param {object} options  retry: async () => void, tries the camera again
   */
  constructor(container, { retry }) {
    this.container = container;
    this.retry = retry;
    this.problem = null;
    this._permissions = [];
    navigator.mediaDevices?.addEventListener?.("devicechange", () => this._recheck("devicechange"));
    this._watchPermissions();
  }

  /** Show the explanation of `problem` (see cameraProblem), or hide it (null). */
  show(problem) {
    if (problem && problem === this.problem) return; // already said (keeps the focus)
    this.problem = problem;
    this.container.hidden = !problem;
    this.container.dataset.problem = problem ?? "";
    if (!problem) {
      this.container.replaceChildren();
      return;
    }
    const steps = [];
    for (let i = 1; i <= STEPS[problem]; i += 1) {
      steps.push(el("li", { text: t(`live.camera-help.${problem}.step${i}`) }));
    }
    const again = el("button", { type: "button", class: "primary camera-retry",
      text: t("live.camera-help.retry") });
    again.addEventListener("click", () => this._recheck("button"));
    this.container.replaceChildren(
      el("p", { class: "camera-help-title", text: t(`live.camera-help.${problem}.title`) }),
      el("ol", { class: "camera-help-steps" }, ...steps),
      el("div", { class: "actions" }, again));
  }

  async _recheck(why) {
    if (!this.problem || this._busy) return;
    if (this.problem === "insecure" && insecureContext()) {
      this.show("insecure"); // nothing to try until the page is opened over HTTPS
      return;
    }
    if (why === "devicechange" && this.problem === "denied") return; // a permission matter
    this._busy = true;
    try {
      await this.retry(why);
    } finally {
      this._busy = false;
    }
  }

  async _watchPermissions() {
    if (!navigator.permissions?.query) return;
    for (const name of ["camera", "microphone"]) {
      try {
        const status = await navigator.permissions.query({ name });
        status.addEventListener("change", () => {
          if (status.state !== "denied") this._recheck("permission");
        });
        this._permissions.push(status); // keep it (and its listener) alive
      } catch {
        // this browser does not report camera permissions: the retry button remains
      }
    }
  }
}
