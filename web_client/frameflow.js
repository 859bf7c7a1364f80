// Is the picture moving? "Connected" on the live pages means frames are arriving, not that
// a peer connection once said so: during a network outage the connection state can stay
// "connected" for many seconds while the last frame stays on screen.
//
// `FrameFlow` is the pure core (times passed in); `watchFrames` feeds it from a <video>
// (requestVideoFrameCallback: every frame painted) and from the subscription's getStats
// `framesDecoded` (which also advances in a background tab, where no frame is painted).

/** A video is frozen when no frame arrived for this long (the overlay shows within 2 s). */
export const FROZEN_AFTER_MS = 1200;

export class FrameFlow {
  constructor({ frozenAfterMs = FROZEN_AFTER_MS } = {}) {
    this.frozenAfterMs = frozenAfterMs;
    this.lastFrame = null; // monotonic ms of the latest frame
    this.lastFrameWall = null; // wall-clock ms (Date.now()) of the latest frame, to show
    this.frames = 0;
  }

  /** A frame arrived at monotonic `now` (wall-clock `wall`). */
  frame(now, wall) {
    this.lastFrame = now;
    this.lastFrameWall = wall;
    this.frames += 1;
  }

  /** Forget the frames (a new subscription: its first frame is awaited again). */
  reset() {
    this.lastFrame = null;
    this.lastFrameWall = null;
    this.frames = 0;
  }

  /** "waiting" (no frame yet), "flowing", or "frozen" (frames stopped). */
  state(now) {
    if (this.lastFrame === null) return "waiting";
    return now - this.lastFrame > this.frozenAfterMs ? "frozen" : "flowing";
  }
}

/**
 * Feed `flow` from `video`'s painted frames and from `decodedFrames()` (a promise of the
 * subscription's framesDecoded, or null), polled every `pollMs`; `onChange` runs whenever
 * the flow's state may have changed. Returns a function that stops watching.
 */
export function watchFrames(video, flow, { decodedFrames, onChange, pollMs = 250 }) {
  let stopped = false;
  let decoded = null;
  let shown = flow.state(performance.now());
  const frame = () => {
    flow.frame(performance.now(), Date.now());
    check();
  };
  const check = () => {
    const now = flow.state(performance.now());
    if (now !== shown) {
      shown = now;
      onChange(now);
    }
  };
  let handle = null;
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
    const painted = () => {
      if (stopped) return;
      frame();
      handle = video.requestVideoFrameCallback(painted);
    };
    handle = video.requestVideoFrameCallback(painted);
  }
  const timer = setInterval(async () => {
    if (stopped) return;
    let count = null;
    try {
      count = await decodedFrames();
    } catch {
      count = null; // the connection is closing: no frame from it
    }
    if (!stopped && count !== null && decoded !== null && count > decoded) frame();
    if (count !== null) decoded = count;
    check();
  }, pollMs);
  return () => {
    stopped = true;
    clearInterval(timer);
    if (handle !== null && video.cancelVideoFrameCallback) video.cancelVideoFrameCallback(handle);
  };
}

/** framesDecoded of the inbound video of `pc`, or null when it has none yet. */
export async function inboundFramesDecoded(pc) {
  if (pc.connectionState === "closed") return null;
  let frames = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") frames = (frames ?? 0) + (s.framesDecoded ?? 0);
  });
  return frames;
}
