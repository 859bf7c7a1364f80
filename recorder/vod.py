"""Teaching video on demand: compose a finished recording into one H.264 + AAC video.

The bedside camera (the first video track of a "ward" participant; else the first
video track) fills the large tile, every other camera (a second ward camera, the
experts' cameras) gets a smaller tile of its own beside it,
the vitals of the timeline are drawn over the bedside picture, and the audio tracks
are mixed. Every track is placed by its ``start_ms`` on one wall clock; the video
starts at the earliest track and ends with the last one.

Outputs, in ``<recording>/vod/``:

- ``hls/index.m3u8`` + ``hls/init.mp4`` + ``hls/seg*.m4s``: the encoder writes straight
  into HLS with fMP4 segments, an EVENT playlist that grows as each segment is complete
  (segment and playlist are written to a temporary name and renamed), with
  ``#EXT-X-ENDLIST`` at the end: a page can play the video while it is being rendered;
- ``progress.json`` while rendering: frames done of the total, elapsed, speed, ETA
  (``recorder.vod_progress``), a few times a second;
- ``teaching.mp4``: fragmented MP4 (H.264 High + AAC-LC), a keyframe every 2 s, remuxed
  from the segments afterwards (the same packets, not encoded twice);
- ``vitals.json``: the vitals as a time series in seconds from the video's start;
- ``render.json``: layout, timing and render speed; written last, it marks the render
  complete (``is_rendered``). Each file is renamed into place, so a reader sees a file
  whole or not at all.

Decoding is fine here: this is offline rendering, never the live path. Run it out of
the server's process (``python -m recorder.vod DIR``): ``recorder.http`` does.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fractions
import json
import logging
import math
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import av
import av.container
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from contracts.roles import BEDSIDE_ROLE
from recorder.errors import RecorderError
from recorder.vod_canvas import (
    I420Canvas,
    Overlay,
    even_box,
    even_cover,
    plane_arrays,
    rects_minus,
    scale_into,
)
from recorder.vod_input import (
    MediaClock,
    Recording,
    Track,
    media_clocks,
    read_recording,
    read_timeline,
)
from recorder.vod_overlay import (
    DEFAULT_LABELS,
    Rect,
    TextPainter,
    draw_vitals,
    label_text,
    vitals_look,
    vitals_traces,
)
from recorder.vod_progress import (
    PROGRESS_JSON,
    ProgressThrottle,
    RenderProgress,
    write_progress,
)
from recorder.vod_vitals import VitalsSeries, VitalsState

logger = logging.getLogger(__name__)

VOD_DIR = "vod"
MP4 = "teaching.mp4"
HLS_DIR = "hls"
HLS_PLAYLIST = "index.m3u8"
VITALS_JSON = "vitals.json"
RENDER_JSON = "render.json"
AUDIO_RATE = 48000
AAC_FRAME = 1024
MAIN_ROLE = BEDSIDE_ROLE
"""Whose video is the large tile: the bedside's camera."""
BACKGROUND = 18
DARK = 40
"""A tile whose participant shows no picture."""
LABEL_PX, LABEL_OUTLINE = 18, 2
"""The tiles' labels: size and outline in pixels."""
HOLD_MS = 500.0
"""A track's last frame stays on screen this long after it; then the tile goes dark."""
FRAGMENTED_MP4 = "frag_keyframe+empty_moov+default_base_moof"
HLS_INIT = "init.mp4"
HLS_SEGMENTS = "seg%05d.m4s"

COMPOSE_NICE = 5
"""The composing thread runs this much nicer than the encoder's. x264 alone keeps about
1.3 of two cores busy; composing needs about 0.6 more. At equal priority the scheduler
shares the cores between them as they ask, and each delay of an x264 frame thread
stalls the frames waiting for its rows; nicer, the composing thread takes the time
x264 leaves and runs ahead through the queue to the encoder (``BackgroundEncoder``)."""

Progress = Callable[[int, int], None]
"""``progress(frames_done, frames_total)``, called by ``compose`` after each picture."""


class RenderError(RecorderError):
    """The recording cannot be rendered (not finished, no media, unreadable)."""


@dataclass(frozen=True)
class RenderOptions:
    width: int = 1280
    height: int = 720
    fps: int = 25
    preset: str = "veryfast"
    crf: int = 23
    keyframe_seconds: float = 2.0
    segment_seconds: float = 4.0
    audio_bitrate: int = 96000
    threads: int = 0
    """Encoder threads; 0 lets x264 choose."""


@dataclass(frozen=True)
class RenderResult:
    directory: Path
    duration: float
    """Seconds of video written."""
    frames: int
    render_seconds: float

    @property
    def speed(self) -> float:
        """Render speed as a multiple of real time."""
        return self.duration / self.render_seconds if self.render_seconds > 0 else math.inf

    @property
    def mp4(self) -> Path:
        return self.directory / MP4

    @property
    def playlist(self) -> Path:
        return self.directory / HLS_DIR / HLS_PLAYLIST


# ----------------------------------------------------------------------------- layout


MAX_SIDE_TILES = 8
"""Tiles beside the bedside camera: one column up to 4, two columns up to 8; more
cameras than that are left out of the picture (with a warning)."""
RECONNECT_MS = 60_000.0
"""A camera of the same role starting this soon after another one ended is taken for
its participant rejoining (a new participant id) and shares its tile."""
REPUBLISH_GAP_MS = 1000.0
"""A video track that starts no earlier than this before another track of the same
camera ended is that camera published again (a reconnect): it shares the tile."""


@dataclass(frozen=True)
class Slot:
    """One tile of the picture and the tracks shown in it: one camera, i.e. one video
    track and the tracks that re-publish it after a reconnect (never two at once)."""

    label: str
    """The camera's role ("ward", "expert", ...): the ``role.*`` label key."""
    rect: Rect
    tracks: tuple[Track, ...]
    number: int = 0
    """2, 3, ... for one of several cameras of the same role (1 for the first); 0 when
    the role has one camera only."""

    def caption(self, labels: Mapping[str, str]) -> str:
        """The tile's words, e.g. "会诊专家" or "床旁摄像头 2" (labels: ``vod.*`` entries)."""
        role = label_text(labels, f"role.{self.label}", self.label.capitalize())
        if self.number == 0:
            return role
        template = (label_text(labels, f"camera.{self.label}", "")
                    or label_text(labels, "camera.other", "{role} {n}"))
        # replace(), not format(): a catalogue entry with other braces cannot raise.
        return template.replace("{role}", role).replace("{n}", str(self.number))


@dataclass(frozen=True)
class Layout:
    main: Slot
    others: tuple[Slot, ...]
    vitals: Rect

    def to_json(self) -> dict[str, Any]:
        def slot(s: Slot) -> dict[str, Any]:
            return {"label": s.label, "number": s.number, "rect": s.rect.to_json(),
                    "tracks": [t.id for t in s.tracks]}
        return {"main": slot(self.main), "others": [slot(s) for s in self.others],
                "vitals": self.vitals.to_json()}


def group_cameras(videos: Sequence[Track]) -> list[tuple[Track, ...]]:
    """The video tracks grouped into cameras, in order of their first start (then of
    the manifest).

    A track joins an earlier camera only when it re-publishes it (``_republishes``:
    it starts after that camera's last track ended, same participant or a rejoin of
    the same role). Tracks live at the same time are different cameras: a second ward
    camera is a tile of its own, never a replacement of the first.
    """
    cameras: list[list[Track]] = []
    # Ties in start time go by the manifest's order (the order the recorder attached).
    ordered = [t for _, t in sorted(enumerate(videos), key=lambda p: (p[1].start_ms, p[0]))]
    for track in ordered:
        candidates = [c for c in cameras if _republishes(track, c[-1])]
        if candidates:
            # The same participant's camera first, then the one that ended last.
            best = max(candidates, key=lambda c: (c[-1].participant == track.participant,
                                                  _end_ms(c[-1])))
            best.append(track)
        else:
            cameras.append([track])
    return [tuple(c) for c in cameras]


def _republishes(track: Track, last: Track) -> bool:
    """Whether ``track`` re-publishes the camera whose last track is ``last``: it starts
    after ``last`` ended, and is the same participant's, or of the same role (a rejoin
    after a lost socket has a new participant id, see signaling/PROTOCOL.md
    "Reconnecting"): any time for the bedside role, within RECONNECT_MS for others."""
    end = _end_ms(last)
    if track.start_ms < end - REPUBLISH_GAP_MS:
        return False
    if last.participant == track.participant or (track.role == MAIN_ROLE == last.role):
        return True
    return bool(track.role) and track.role == last.role and track.start_ms - end <= RECONNECT_MS


def plan_layout(recording: Recording, width: int, height: int) -> Layout:
    """The bedside camera large on the left, every other camera in a tile beside it.

    The bedside camera is the earliest-started camera of the bedside role (else the
    earliest camera). The others are stacked on the right: further bedside cameras
    first, then the rest, each group in order of start.
    """
    cameras = group_cameras(recording.video_tracks)
    if not cameras:
        return Layout(Slot("main", Rect(0, 0, width, height), ()), (),
                      _vitals_strip(width, height))
    main_camera = next((c for c in cameras if c[0].role == MAIN_ROLE), cameras[0])
    rest = sorted((c for c in cameras if c is not main_camera),
                  key=lambda c: c[0].role != MAIN_ROLE)  # stable: by start within
    roles = [c[0].role or "participant" for c in cameras]
    ordinal: dict[str, int] = {}

    def number(camera: tuple[Track, ...]) -> int:
        role = camera[0].role or "participant"
        if roles.count(role) < 2:
            return 0
        ordinal[role] = ordinal.get(role, 0) + 1
        return ordinal[role]

    main_label = MAIN_ROLE if main_camera[0].role == MAIN_ROLE else "main"
    main_number = number(main_camera)
    if len(rest) > MAX_SIDE_TILES:
        logger.warning("vod: %d cameras beside the bedside camera, %d shown", len(rest),
                       MAX_SIDE_TILES)
        rest = rest[:MAX_SIDE_TILES]
    if rest:
        columns = 1 if len(rest) <= 4 else 2
        main_w = _even(width * 3 // 4 if columns == 1 else width * 5 // 8)
        side_w = _even((width - main_w) // columns)
        rows = math.ceil(len(rest) / columns)
        tile_h = _even(min(side_w * 3 // 4, height // rows))
        others = tuple(
            Slot(camera[0].role or "participant",
                 Rect(main_w + (i % columns) * side_w, (i // columns) * tile_h, side_w, tile_h),
                 camera, number(camera))
            for i, camera in enumerate(rest))
    else:
        main_w, others = width, ()
    main = Slot(main_label, Rect(0, 0, main_w, height), main_camera, main_number)
    return Layout(main, others, _vitals_strip(main_w, height))


def _vitals_strip(width: int, height: int) -> Rect:
    strip_h = max(48, height // 6)
    return Rect(0, height - strip_h, width, strip_h)


def _end_ms(track: Track) -> float:
    return track.start_ms + _duration(track) * 1000.0


def _even(value: int) -> int:
    return value - value % 2


def fit(width: int, height: int, area: Rect) -> Rect:
    """The largest rectangle of ``width``:``height`` centred in ``area`` (letterbox)."""
    scale = min(area.w / width, area.h / height)
    w = max(2, min(area.w, round(width * scale)))
    h = max(2, min(area.h, round(height * scale)))
    return Rect(area.x + (area.w - w) // 2, area.y + (area.h - h) // 2, w, h)


def media_span(recording: Recording) -> tuple[float, float]:
    """(first, last) wall-clock ms covered by any track."""
    if not recording.tracks:
        raise RenderError("the recording has no tracks")
    starts = [t.start_ms for t in recording.tracks]
    ends = [t.start_ms + _duration(t) * 1000.0 for t in recording.tracks]
    return min(starts), max(ends)


def _duration(track: Track) -> float:
    """The manifest's duration, or the container's when the manifest says 0."""
    if track.duration > 0:
        return track.duration
    try:
        with av.open(str(track.file)) as container:
            return (container.duration or 0) / av.time_base
    except (av.error.FFmpegError, OSError):
        return 0.0


# ----------------------------------------------------------------------------- inputs


class VideoCursor:
    """Decoded frames of one video track, looked up by wall-clock ms (monotonic)."""

    def __init__(self, track: Track, clock: MediaClock | None = None) -> None:
        self.track = track
        self.clock = clock or MediaClock(track.start_ms)
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._current: tuple[float, av.VideoFrame] | None = None
        self._next: tuple[float, av.VideoFrame] | None = None
        self._done = False
        self._scaler = VideoReformatter()
        self._serial = 0
        self.decoded = 0

    def frame_at(self, t_ms: float) -> tuple[int, av.VideoFrame] | None:
        """(serial, frame) on screen at ``t_ms``, or None (not started, or over)."""
        if t_ms < self.track.start_ms - 1 or (self._done and self._current is None):
            return None
        if self._frames is None and not self._done:
            self._open()
        while True:
            if self._next is None:
                self._next = self._pull()
                if self._next is None:
                    break
            if self._next[0] > t_ms + 0.5:
                break
            self._current, self._next = self._next, None
            self._serial += 1
        if self._current is None:
            return None
        if self._next is None and t_ms - self._current[0] > HOLD_MS:
            self.close()
            self._current = None
            return None
        return self._serial, self._current[1]

    def paint(self, canvas: I420Canvas, frame: av.VideoFrame, area: Rect) -> Rect:
        """Scale ``frame`` into ``area`` of the picture (kept aspect, even-aligned inside
        it); returns the box it covers.

        Enlarging goes through FFmpeg's scaler (its fast bilinear filter: 0.32 ms for a
        640x480 camera to 960x720, against OpenCV's bilinear 0.72 ms, mean difference 0.1
        of 255 in luma); shrinking by area and copying stay with OpenCV (``scale_into``).
        One scaler per track, kept (a frame's own reformat() builds a new one each call),
        single-threaded: several tracks and the encoder share the cores."""
        box = even_box(fit(frame.width, frame.height, area), canvas.width, canvas.height)
        if box.w > frame.width and box.h > frame.height:
            frame = self._scaler.reformat(frame, box.w, box.h, "yuv420p",
                                          interpolation="FAST_BILINEAR", threads=1)
        elif frame.format.name != "yuv420p":  # e.g. yuvj420p, or 4:4:4 from some sender
            frame = self._scaler.reformat(frame, format="yuv420p", threads=1)
        scale_into(canvas.box_planes(box), plane_arrays(frame))
        return box

    def _open(self) -> None:
        try:
            self._container = av.open(str(self.track.file))
            stream = self._container.streams.video[0]
            # One thread: the render is short of CPU, not of threads (x264 and the
            # composing share the cores), and the decoder's frame threads cost a quarter
            # more CPU for the same frames (two 30 s VP8 tracks: 0.48-0.53 s against 0.38 s).
            stream.thread_count = 1
        except (av.error.FFmpegError, OSError, IndexError) as exc:
            logger.warning("vod: cannot open video track %s: %s", self.track.id, exc)
            self._done = True
            return
        self._frames = self._decode(self._container, stream)

    @staticmethod
    def _decode(container: av.container.InputContainer,
                stream: av.VideoStream) -> Iterator[av.VideoFrame]:
        try:
            for packet in container.demux(stream):
                try:
                    yield from packet.decode()
                except av.error.InvalidDataError:
                    continue  # a damaged frame (packet loss): the next keyframe repairs it
        except av.error.FFmpegError as exc:
            logger.info("vod: video input ends early: %s", exc)

    def _pull(self) -> tuple[float, av.VideoFrame] | None:
        if self._frames is None:
            return None
        for frame in self._frames:
            time_s = frame.time  # a float from FFmpeg (a Fraction's arithmetic costs more)
            if time_s is None:
                continue
            self.decoded += 1
            return self.clock.wall_ms(time_s), frame
        self._frames = None
        self._done = True
        return None

    def close(self) -> None:
        self._frames = None
        self._done = True
        if self._container is not None:
            self._container.close()
            self._container = None


class AudioCursor:
    """One audio track as mono float samples at AUDIO_RATE, placed on the output clock.

    Small timestamp jitter (< 20 ms) is absorbed so the sound stays continuous; a
    longer gap (packet loss, a muted sender) is silence, kept as a gap between decoded
    runs (never materialised: a one-hour gap costs nothing); an overlap is dropped.
    """

    TOLERANCE = AUDIO_RATE // 50

    def __init__(self, track: Track, origin_ms: float, clock: MediaClock | None = None) -> None:
        self.track = track
        self.origin_ms = origin_ms
        self.clock = clock or MediaClock(track.start_ms)
        self._frames: Iterator[tuple[int, np.ndarray]] | None = None
        self._container: av.container.InputContainer | None = None
        self._runs: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self._end = self._start_index  # output sample index after the last decoded sample
        self._done = False
        self._opened = False

    @property
    def _start_index(self) -> int:
        return round((self.track.start_ms - self.origin_ms) * AUDIO_RATE / 1000.0)

    def read(self, start: int, count: int) -> np.ndarray | None:
        """Samples [start, start + count) of the output clock, or None if silent."""
        stop = start + count
        if stop <= self._start_index or (self._done and not self._runs):
            return None
        if not self._opened:
            self._open()
        while self._end < stop and not self._done:
            self._pull()
        out = np.zeros(count, dtype=np.float32)
        for run_start, samples in self._runs:
            lo, hi = max(start, run_start), min(stop, run_start + len(samples))
            if hi > lo:
                out[lo - start:hi - start] = samples[lo - run_start:hi - run_start]
        while self._runs and self._runs[0][0] + len(self._runs[0][1]) <= stop:
            self._runs.popleft()
        return out

    def _open(self) -> None:
        self._opened = True
        try:
            self._container = av.open(str(self.track.file))
            stream = self._container.streams.audio[0]
        except (av.error.FFmpegError, OSError, IndexError) as exc:
            logger.warning("vod: cannot open audio track %s: %s", self.track.id, exc)
            self._done = True
            return
        self._frames = self._decode(self._container, stream)

    def _decode(self, container: av.container.InputContainer,
                stream: av.AudioStream) -> Iterator[tuple[int, np.ndarray]]:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        try:
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:
                    continue
                for frame in decoded:
                    if not isinstance(frame, av.AudioFrame):
                        continue
                    time_s = frame.time
                    if (frame.format.name in ("fltp", "flt") and frame.layout.nb_channels == 1
                            and frame.sample_rate == AUDIO_RATE):
                        outs = [frame.to_ndarray()]  # already what the mix takes (Opus, mono)
                    else:
                        outs = [out.to_ndarray() for out in resampler.resample(frame)]
                    for out in outs:
                        samples = out.reshape(-1).astype(np.float32, copy=False)
                        index = (-1 if time_s is None else round(
                            (self.clock.wall_ms(time_s) - self.origin_ms) * AUDIO_RATE / 1000))
                        yield index, samples
                        time_s = None  # further output of the same input follows on
        except av.error.FFmpegError as exc:
            logger.info("vod: audio input ends early: %s", exc)

    def _pull(self) -> None:
        item = next(self._frames, None) if self._frames is not None else None
        if item is None:
            self.close()
            return
        index, samples = item
        if index < 0 or abs(index - self._end) <= self.TOLERANCE:
            index = self._end  # continuous: absorb timestamp jitter
        elif index < self._end:
            samples = samples[self._end - index:]  # overlap: keep what is new
            index = self._end
        if len(samples):
            self._runs.append((index, samples))
            self._end = index + len(samples)

    def close(self) -> None:
        self._done = True
        self._frames = None
        if self._container is not None:
            self._container.close()
            self._container = None


# ----------------------------------------------------------------------------- render


@dataclass
class Mp4Encoder:
    """H.264 + AAC into a fragmented MP4, or, when ``path`` ends in ``.m3u8``, into HLS
    fMP4 segments beside it with an EVENT playlist that grows segment by segment."""

    path: Path
    options: RenderOptions
    has_audio: bool
    container: av.container.OutputContainer = field(init=False)
    video: av.VideoStream = field(init=False)
    audio: av.AudioStream | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        o = self.options
        self.container = (av.open(str(self.path), "w", format="hls",
                                  options=hls_options(self.path.parent, o.segment_seconds,
                                                      "event"))
                          if self.path.suffix == ".m3u8" else
                          av.open(str(self.path), "w", format="mp4",
                                  options={"movflags": FRAGMENTED_MP4}))
        keyint = max(1, round(o.fps * o.keyframe_seconds))
        # No B-frames: presentation time == decode time, so frame i is shown at exactly
        # i / fps (with B-frames the mp4 muxer shifts every frame by the reorder delay,
        # and the vitals would lag the picture by it).
        video = self.container.add_stream("libx264", rate=o.fps, options={
            "preset": o.preset, "crf": str(o.crf), "profile": "high",
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0",
            "threads": str(o.threads)})
        video.width, video.height, video.pix_fmt = o.width, o.height, "yuv420p"
        video.time_base = fractions.Fraction(1, o.fps)
        self.video = video
        if self.has_audio:
            audio = self.container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
            audio.bit_rate = o.audio_bitrate
            self.audio = audio

    def picture_frame(self, index: int, frame: av.VideoFrame) -> None:
        """Encode ``frame`` (yuv420p, the output's size) as picture ``index``."""
        frame.pts = index
        frame.time_base = fractions.Fraction(1, self.options.fps)
        self.container.mux(self.video.encode(frame))

    def sound(self, start: int, samples: np.ndarray) -> None:
        assert self.audio is not None
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = start
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self.container.mux(self.audio.encode(frame))

    def close(self) -> None:
        self.container.mux(self.video.encode(None))
        if self.audio is not None:
            self.container.mux(self.audio.encode(None))
        self.container.close()


class PictureEncoder(Protocol):
    """What ``compose`` hands its pictures and sound to (``Mp4Encoder``, or a stand-in
    that drops them, to measure the composing alone)."""

    def picture_frame(self, index: int, frame: av.VideoFrame) -> None: ...

    def sound(self, start: int, samples: np.ndarray) -> None: ...

    def close(self) -> None: ...


EncoderFactory = Callable[[Path, RenderOptions, bool], PictureEncoder]
"""``make(output, options, has_audio)``."""


Payload = av.VideoFrame | list[tuple[int, np.ndarray]]
"""What the encoder thread is handed: a picture, or sounds with their times."""


class BackgroundEncoder:
    """An ``Mp4Encoder`` in a thread of its own: the next picture is composed while the
    last one is encoded (PyAV releases the GIL while FFmpeg works).

    Each time FFmpeg returns, the encoder thread needs the GIL back; the composing thread
    holds it in Python code and gives it up only every ``sys.getswitchinterval()`` (5 ms
    by default): a few such waits per frame made the render twice slower than the encoder
    alone (measured: 300 frames encoded in 1.3 s alone, 5.3 s beside a busy thread, 1.7 s
    at 0.2 ms). While it runs, the interval is ``switch_interval``, and OpenCV draws
    single-threaded (its idle workers spin: 0.6-1.6 s of CPU per 30 s rendered, on cores
    x264 needs); both are put back at ``close``/``abort``. The render runs in a process
    of its own (``python -m recorder.vod``), so this touches no server thread.
    """

    SWITCH_INTERVAL = 0.0002

    def __init__(self, encoder: PictureEncoder, depth: int = 8,
                 switch_interval: float | None = SWITCH_INTERVAL) -> None:
        self.encoder = encoder
        self._old_interval = sys.getswitchinterval()
        if switch_interval is not None:
            sys.setswitchinterval(min(self._old_interval, switch_interval))
        self._old_cv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        self._queue: queue.Queue[tuple[str, int, Payload] | None] = queue.Queue(depth)
        self._sounds: list[tuple[int, np.ndarray]] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vod-encoder", daemon=True)
        self._thread.start()

    def picture_frame(self, index: int, frame: av.VideoFrame) -> None:
        """Queue a yuv420p frame as it is: the caller must not draw on it again."""
        self._put(("frame", index, frame))

    def sound(self, start: int, samples: np.ndarray) -> None:
        """Queued with the next picture (or at ``close``): one hand-over per picture,
        not one more per 1024 samples. Each carries its time: the order is free."""
        self._sounds.append((start, samples.copy()))

    def close(self) -> None:
        """Flush and close the file; raises what the encoder raised, if anything."""
        self._stop()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._sounds and self._error is None:
            self._queue.put(("audio", 0, self._sounds))
        self._sounds = []
        self._queue.put(None)
        self._thread.join()
        sys.setswitchinterval(self._old_interval)
        cv2.setNumThreads(self._old_cv_threads)

    def _put(self, item: tuple[str, int, Payload]) -> None:
        if self._error is not None:
            raise self._error
        if self._sounds:
            self._queue.put(("audio", 0, self._sounds))
            self._sounds = []
        self._queue.put(item)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # failed: drain until the end marker
            kind, position, data = item
            try:
                if kind == "frame":
                    assert isinstance(data, av.VideoFrame)
                    self.encoder.picture_frame(position, data)
                else:
                    assert isinstance(data, list)
                    for start, samples in data:
                        self.encoder.sound(start, samples)
            except BaseException as exc:  # handed to the composing thread
                self._error = exc
        try:
            self.encoder.close()
        except BaseException as exc:
            self._error = self._error or exc


def vitals_series(recording: Recording, origin_ms: float) -> VitalsSeries:
    return VitalsSeries.from_events(read_timeline(recording.timeline), origin_ms)


def vitals_document(recording: Recording) -> dict[str, Any]:
    """The page's vitals document, ``vod/vitals.json`` (cheap: no media is decoded)."""
    origin_ms, end_ms = media_span(recording)
    return vitals_series(recording, origin_ms).to_json((end_ms - origin_ms) / 1000.0)


def write_vitals_json(recording: Recording, path: Path) -> Path:
    _write_json(path, vitals_document(recording))
    return path


def _write_json(path: Path, document: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, separators=(",", ":"), allow_nan=False),
                   encoding="utf-8")
    tmp.replace(path)


def compose(recording: Recording, output: Path, options: RenderOptions,
            labels: Mapping[str, str] = DEFAULT_LABELS, progress: Progress | None = None,
            make_encoder: EncoderFactory = Mp4Encoder) -> int:
    """Compose and encode into ``output`` (an HLS playlist path, or an MP4's: see
    ``Mp4Encoder``); returns frames written. ``labels``: the overlay's words (see
    recorder.vod_overlay.DEFAULT_LABELS); ``progress``: told after each picture;
    ``make_encoder``: what takes the pictures (``benchmarks.vod_render`` measures the
    composing alone with one that drops them)."""
    origin_ms, end_ms = media_span(recording)
    duration = (end_ms - origin_ms) / 1000.0
    frames = max(1, math.ceil(duration * options.fps - 1e-6))
    layout = plan_layout(recording, options.width, options.height)
    series = vitals_series(recording, origin_ms)
    clocks = media_clocks(recording, read_timeline(recording.timeline))
    slots = [(slot, [VideoCursor(t, clocks.get(t.id)) for t in slot.tracks])
             for slot in (layout.main, *layout.others)]
    audio = [AudioCursor(t, origin_ms, clocks.get(t.id)) for t in recording.audio_tracks]
    total_samples = round(duration * AUDIO_RATE)
    encoder = BackgroundEncoder(make_encoder(output, options, bool(audio)))
    canvas = I420Canvas(options.width, options.height)
    whole = Rect(0, 0, options.width, options.height)
    overlays = Overlays(layout, canvas, TextPainter(), labels)
    # The AAC encoder's first packet is priming (1024 samples before its input). Starting
    # the input at 1024 puts that packet at time 0: no negative timestamps, so the muxer
    # shifts nothing and sound and picture share time 0 (the first 21 ms are silent).
    written = AAC_FRAME

    def composing() -> None:
        nonlocal written
        for index in range(frames):
            t_ms = origin_ms + index * 1000.0 / options.fps
            picture = canvas.next_frame()
            covered = [_paint_slot(canvas, slot, cursors, t_ms) for slot, cursors in slots]
            for rect in rects_minus([whole], covered):
                canvas.fill((BACKGROUND,) * 3, rect)
            for slot, _ in slots:
                if slot is not layout.main:
                    overlays.label(slot).apply(canvas.planes)
            if not series.empty:
                now = (t_ms - origin_ms) / 1000.0
                state = series.state_at(now)
                overlays.strip(state).apply(canvas.planes)
                for points, colour in vitals_traces(layout.vitals, state, now):
                    canvas.polyline(points, colour)
            encoder.picture_frame(index, picture)
            target = min(total_samples, round((index + 1) * AUDIO_RATE / options.fps))
            while audio and written < target and (target - written >= AAC_FRAME
                                                  or index == frames - 1):
                count = min(AAC_FRAME, total_samples - written)
                encoder.sound(written, _mix(audio, written, count))
                written += count
            if progress is not None:
                progress(index + 1, frames)

    try:
        _run_nicer(composing, COMPOSE_NICE)
    except BaseException:
        encoder.abort()
        raise
    else:
        encoder.close()
    finally:
        for _, cursors in slots:
            for cursor in cursors:
                cursor.close()
        for sound in audio:
            sound.close()
    return frames


def _run_nicer(work: Callable[[], None], nice: int) -> None:
    """Run ``work`` in a thread of its own, ``nice`` steps nicer than the caller; raise
    what it raised. On Linux a priority set with a thread's id is that thread's alone:
    the caller (and the encoder's threads, started by the caller) keep theirs."""
    failed: list[BaseException] = []

    def run() -> None:
        if sys.platform == "linux" and nice > 0:
            tid = threading.get_native_id()
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid,
                               os.getpriority(os.PRIO_PROCESS, tid) + nice)
        try:
            work()
        except BaseException as exc:  # handed to the caller
            failed.append(exc)

    thread = threading.Thread(target=run, name="vod-compose")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


def _paint_slot(canvas: I420Canvas, slot: Slot, cursors: Sequence[VideoCursor],
                t_ms: float) -> Rect:
    """Paint the slot's camera picture at ``t_ms`` (or the dark of a camera showing
    nothing); returns the part of the picture painted."""
    shown = None
    for cursor in cursors:  # every cursor advances; the latest-started live one is shown
        found = cursor.frame_at(t_ms)
        if found is not None:
            shown = (cursor, found)
    area = even_box(slot.rect, canvas.width, canvas.height)
    if shown is None:
        canvas.fill((DARK,) * 3, area)
        return area
    cursor, (_, frame) = shown
    return cursor.paint(canvas, frame, area)


class Overlays:
    """The drawings over the picture that change seldom, as ``Overlay``s made once per
    look: each side tile's label, and the vitals strip per ``vitals_look`` (its numbers
    change about once a second; the last few looks are kept)."""

    KEPT = 8

    def __init__(self, layout: Layout, canvas: I420Canvas, painter: TextPainter,
                 labels: Mapping[str, str]) -> None:
        self.layout, self.painter, self.labels = layout, painter, labels
        self.bounds = (canvas.width, canvas.height)
        self._labels: dict[int, Overlay] = {}
        self._strips: collections.OrderedDict[tuple[object, ...], Overlay] = (
            collections.OrderedDict())

    def label(self, slot: Slot) -> Overlay:
        found = self._labels.get(id(slot))
        if found is None:
            found = self._labels[id(slot)] = self._label(slot)
        return found

    def _label(self, slot: Slot) -> Overlay:
        text = slot.caption(self.labels)
        patch = self.painter.patch(text, LABEL_PX, LABEL_OUTLINE)
        mask = patch.outline if patch.outline is not None else patch.fill
        x, y = slot.rect.x + 8 + patch.dx, slot.rect.y + slot.rect.h - 10 + patch.dy
        box = even_cover(Rect(x, y, mask.shape[1], mask.shape[0]), *self.bounds)

        def draw(image: np.ndarray) -> None:
            self.painter.draw(image, text, (x - box.x - patch.dx, y - box.y - patch.dy),
                              LABEL_PX, (255, 255, 255), outline=LABEL_OUTLINE)

        return Overlay.of(box, draw)

    def strip(self, state: VitalsState) -> Overlay:
        look = vitals_look(state)
        found = self._strips.get(look)
        if found is not None:
            self._strips.move_to_end(look)
            return found
        area = self.layout.vitals
        box = even_cover(area, *self.bounds)
        local = Rect(area.x - box.x, area.y - box.y, area.w, area.h)
        made = self._strips[look] = Overlay.of(box, lambda image: draw_vitals(
            image, local, state, 0.0, self.painter, self.labels, traces=False))
        if len(self._strips) > self.KEPT:
            self._strips.popitem(last=False)
        return made


def _mix(cursors: Sequence[AudioCursor], start: int, count: int) -> np.ndarray:
    mixed = np.zeros(count, dtype=np.float32)
    for cursor in cursors:
        samples = cursor.read(start, count)
        if samples is not None:
            mixed += samples
    return np.clip(mixed, -1.0, 1.0, out=mixed)


def hls_options(out_dir: Path, segment_seconds: float, playlist_type: str) -> dict[str, str]:
    """FFmpeg's hls muxer: fMP4 segments in ``out_dir``, every segment listed (no
    sliding window); ``temp_file``: a segment and the playlist are written under a
    temporary name and renamed, so a reader never sees half of either."""
    return {"hls_time": f"{segment_seconds:g}", "hls_playlist_type": playlist_type,
            "hls_list_size": "0", "hls_segment_type": "fmp4",
            "hls_fmp4_init_filename": HLS_INIT,
            "hls_segment_filename": str(out_dir / HLS_SEGMENTS),
            "hls_flags": "independent_segments+temp_file"}


def _remux(source_path: Path, target_path: Path, fmt: str,
           options: dict[str, str]) -> None:
    with av.open(str(source_path)) as source, \
            av.open(str(target_path), "w", format=fmt, options=options) as target:
        mapping = {s.index: target.add_stream_from_template(s) for s in source.streams
                   if s.type in ("video", "audio")}
        for packet in source.demux(*[source.streams[i] for i in mapping]):
            if packet.dts is None:
                continue
            packet.stream = mapping[packet.stream.index]
            target.mux(packet)


def hls_to_mp4(playlist: Path, mp4: Path) -> Path:
    """The segments of a finished playlist as one fragmented MP4 (a remux: cheap).
    Written under a temporary name and renamed."""
    tmp = mp4.with_name(f".{mp4.name}.{os.getpid()}.tmp")
    try:
        _remux(playlist, tmp, "mp4", {"movflags": FRAGMENTED_MP4})
        tmp.replace(mp4)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return mp4


def render(recording_dir: Path, options: RenderOptions | None = None,
           clock: Any = time.perf_counter,
           labels: Mapping[str, str] = DEFAULT_LABELS) -> RenderResult:
    """Render ``<recording_dir>/vod/`` (replacing an older one) and return what it took.
    ``labels``: the overlay's words in the video's language (the composition root passes
    the catalogue's ``vod.*`` entries; the default is English)."""
    options = options or RenderOptions()
    recording = read_recording(recording_dir)
    if not recording.finished:
        raise RenderError(f"recording {recording.id} is not finished ({recording.status})")
    if not recording.tracks:
        raise RenderError(f"recording {recording.id} has no tracks")
    started = clock()
    final = recording_dir / VOD_DIR
    (final / RENDER_JSON).unlink(missing_ok=True)  # from here on: not ready
    shutil.rmtree(final, ignore_errors=True)  # an older render goes entirely
    hls = final / HLS_DIR
    hls.mkdir(parents=True)
    os.chmod(final, 0o755)
    progress_path = final / PROGRESS_JSON
    throttle = ProgressThrottle()

    def progress(done: int, total: int) -> None:
        now = clock()
        if throttle.due(now) or done == total:
            write_progress(progress_path, RenderProgress(done, total, now - started,
                                                         options.fps))

    try:
        progress(0, 1)
        frames = compose(recording, hls / HLS_PLAYLIST, options, labels, progress)
        hls_to_mp4(hls / HLS_PLAYLIST, final / MP4)
        write_vitals_json(recording, final / VITALS_JSON)
        elapsed = clock() - started
        origin_ms, _ = media_span(recording)
        duration = frames / options.fps
        _write_json(final / RENDER_JSON, {
            "version": 1, "recording": recording.id, "fps": options.fps,
            "width": options.width, "height": options.height, "frames": frames,
            "duration": duration, "originMs": origin_ms,
            "layout": plan_layout(recording, options.width, options.height).to_json(),
            "renderSeconds": round(elapsed, 3), "speed": round(duration / elapsed, 2),
            "labels": dict(labels)})
    except BaseException:
        # A half-written playlist would stall a player: a failed render leaves nothing.
        shutil.rmtree(hls, ignore_errors=True)
        (final / MP4).unlink(missing_ok=True)
        raise
    finally:
        progress_path.unlink(missing_ok=True)
    logger.info("vod %s: %d frames (%.1f s) in %.1f s, %.1fx real time", recording.id,
                frames, duration, elapsed, duration / elapsed)
    return RenderResult(final, duration, frames, elapsed)


def is_rendered(recording_dir: Path) -> bool:
    return (recording_dir / VOD_DIR / RENDER_JSON).is_file()


def _labels_argument(text: str) -> dict[str, str]:
    try:
        labels = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise argparse.ArgumentTypeError("expected a JSON object of strings")
    return labels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recorder.vod",
                                     description="Render a recording's teaching video.")
    parser.add_argument("recording", type=Path, help="the recording directory")
    parser.add_argument("--width", type=int, default=RenderOptions.width)
    parser.add_argument("--height", type=int, default=RenderOptions.height)
    parser.add_argument("--fps", type=int, default=RenderOptions.fps, choices=(25, 30))
    parser.add_argument("--preset", default=RenderOptions.preset)
    parser.add_argument("--threads", type=int, default=RenderOptions.threads,
                        help="x264 threads (0: x264 chooses)")
    parser.add_argument("--nice", type=int, default=0, help="lower the CPU priority by this")
    parser.add_argument("--labels", type=_labels_argument, default=None,
                        help='the overlay\'s words as JSON, e.g. \'{"hr": "心率"}\'')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.nice:
        with contextlib.suppress(OSError):
            os.nice(args.nice)
    try:
        result = render(args.recording, RenderOptions(args.width, args.height, args.fps,
                                                      args.preset, threads=args.threads),
                        labels=args.labels if args.labels is not None else DEFAULT_LABELS)
    except (RenderError, ValueError, FileNotFoundError) as exc:
        print(f"cannot render: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"duration": result.duration, "frames": result.frames,
                      "renderSeconds": round(result.render_seconds, 3),
                      "speed": round(result.speed, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
