// A small HLS player over Media Source Extensions, for a teaching video that is still
// being rendered: the server's EVENT playlist (recorder/vod.py) grows by one fMP4 segment
// at a time and ends with #EXT-X-ENDLIST. The page uses it wherever MSE exists (Chromium
// 156 answers "maybe" for native HLS, but MSE behaves the same in every browser and
// tells the page when the last segment is in): it fetches the init segment and then
// each media segment in order, appends them to one SourceBuffer, polls the playlist for
// new ones, and ends the stream at #EXT-X-ENDLIST.
// Only what this server writes is handled (one rendition, #EXT-X-MAP, no encryption).
// Requests carry the playback cookie (same origin); nothing is cached.

const POLL_MS = 1000;
const KEEP_BEHIND_S = 60;

/** The playlist's init segment, media segments and whether it is complete. */
export function parsePlaylist(text) {
  const lines = text.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
  if (lines[0] !== "#EXTM3U") throw new Error("not an HLS playlist");
  let init = null;
  const segments = [];
  let duration = null;
  for (const line of lines) {
    if (line.startsWith("#EXT-X-MAP:")) {
      const match = /URI="([^"]+)"/.exec(line);
      if (match) init = match[1];
    } else if (line.startsWith("#EXTINF:")) {
      duration = Number.parseFloat(line.slice(8));
    } else if (!line.startsWith("#")) {
      segments.push({ uri: line, duration });
      duration = null;
    }
  }
  return { init, segments, ended: lines.includes("#EXT-X-ENDLIST") };
}

function findBox(bytes, type) {
  const code = [...type].map((c) => c.charCodeAt(0));
  for (let i = 4; i + 4 <= bytes.length; i++) {
    if (bytes[i] === code[0] && bytes[i + 1] === code[1] && bytes[i + 2] === code[2]
        && bytes[i + 3] === code[3]) return i;
  }
  return -1;
}

/** The MSE type of an fMP4 init segment: H.264 profile/level from its avcC, AAC-LC if any. */
export function mimeOf(init) {
  const bytes = new Uint8Array(init);
  const avcc = findBox(bytes, "avcC");
  const hex = (b) => b.toString(16).padStart(2, "0");
  const codecs = [avcc >= 0
    ? `avc1.${hex(bytes[avcc + 5])}${hex(bytes[avcc + 6])}${hex(bytes[avcc + 7])}`
    : "avc1.640028"];
  if (findBox(bytes, "mp4a") >= 0) codecs.push("mp4a.40.2");
  return `video/mp4; codecs="${codecs.join(",")}"`;
}

export class HlsLoader {
  constructor(video, playlistUrl, { pollMs = POLL_MS } = {}) {
    this.video = video;
    this.url = new URL(playlistUrl, location.href);
    this.pollMs = pollMs;
    this.stopped = false;
    this.appended = 0; // media segments appended
    this.listed = 0; // media segments the playlist listed at the last poll
    this.ended = false;
    this.source = null;
    this.buffer = null;
  }

  static supported() {
    return typeof MediaSource !== "undefined";
  }

  /** Starts loading; resolves when every segment is appended and the stream ended. */
  async start() {
    this.source = new MediaSource();
    const opened = new Promise((resolve) =>
      this.source.addEventListener("sourceopen", resolve, { once: true }));
    this.video.src = URL.createObjectURL(this.source);
    await opened;
    URL.revokeObjectURL(this.video.src);
    while (!this.stopped) {
      const playlist = parsePlaylist(await this.text(this.url));
      this.listed = playlist.segments.length;
      if (!this.buffer && playlist.init && playlist.segments.length) {
        const init = await this.bytes(new URL(playlist.init, this.url));
        if (this.stopped) return;
        this.buffer = this.source.addSourceBuffer(mimeOf(init));
        await this.append(init);
      }
      while (this.buffer && this.appended < playlist.segments.length && !this.stopped) {
        const segment = playlist.segments[this.appended];
        await this.append(await this.bytes(new URL(segment.uri, this.url)));
        this.appended += 1;
      }
      if (playlist.ended && this.buffer && this.appended === playlist.segments.length) {
        if (this.source.readyState === "open") this.source.endOfStream();
        this.ended = true;
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, this.pollMs));
    }
  }

  stop() {
    this.stopped = true;
  }

  async text(url) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(`playlist: HTTP ${response.status}`);
    return response.text();
  }

  async bytes(url) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(`segment: HTTP ${response.status}`);
    return response.arrayBuffer();
  }

  async append(data) {
    try {
      await this.update(() => this.buffer.appendBuffer(data));
    } catch (error) {
      if (error?.name !== "QuotaExceededError") throw error;
      // The buffer is full (a long video): drop what lies well behind the playhead.
      const behind = this.video.currentTime - KEEP_BEHIND_S;
      if (behind <= 0) throw error;
      await this.update(() => this.buffer.remove(0, behind));
      await this.update(() => this.buffer.appendBuffer(data));
    }
  }

  update(action) {
    return new Promise((resolve, reject) => {
      const done = () => {
        this.buffer.removeEventListener("error", failed);
        resolve();
      };
      const failed = () => {
        this.buffer.removeEventListener("updateend", done);
        reject(new Error("the video could not be buffered"));
      };
      this.buffer.addEventListener("updateend", done, { once: true });
      this.buffer.addEventListener("error", failed, { once: true });
      try {
        action();
      } catch (error) {
        this.buffer.removeEventListener("updateend", done);
        this.buffer.removeEventListener("error", failed);
        reject(error);
      }
    });
  }
}
