"""One producer's packets to one file: reorder, depacketize, start at a keyframe, remux.

A ``TrackRecorder`` runs on its recording's worker thread, never on the event
loop. It asks for keyframes through a callback (the caller hops to the loop),
and reports what happens as timeline events through ``emit``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from recorder.clock import MediaClock
from recorder.depacketizer import Depacketizer, EncodedFrame, depacketizer_for
from recorder.failure_log import FailureLog
from recorder.manifest import TRACKS_DIR
from recorder.opus import CHANNELS
from recorder.reorder import ReorderBuffer
from recorder.timeline import wall_ms
from recorder.track_writer import ContainerSpec, TrackWriter, container_for

logger = logging.getLogger(__name__)

KEYFRAME_RETRY = 1.0  # seconds between keyframe requests while waiting for one
SYNC_EVENT_INTERVAL = 10.0  # seconds of media between track-sync (drift) events
# An audio track's sender report that places its samples this much later than the file
# does, and arrivals that agree: the publisher lost samples (their RTP timestamps count
# only the samples sent), and what follows is written after a gap of that length.
AUDIO_RESYNC = 0.010

# Packets reach the worker in batches: at most this many, spanning at most this long.
BATCH_PACKETS = 64
BATCH_SECONDS = 0.05
# Batches a recording's worker may hold before new ones are dropped (a slow disk): at
# most 64k packets, or about 50 s of one track's media at 50 ms a batch.
MAX_QUEUED_BATCHES = 1000

Emit = Callable[[dict[str, Any]], None]
Packet = tuple[int, int, bool, bytes, float]  # seq, timestamp, marker, payload, arrival


@dataclass(frozen=True)
class Resolution:
    """The picture size from a media time on (ms from the file's start), read from a keyframe."""

    at_ms: int
    width: int
    height: int


@dataclass(frozen=True)
class TrackSpec:
    id: str
    stream: str
    participant: str
    role: str
    kind: str  # "video" | "audio"
    codec: str


@dataclass
class WriteCounters:
    """Frames and bytes muxed into recordings (summed over tracks; never reset), and the
    recordings disk's last free-space sample (set by the service's disk guard)."""

    frames: int = 0
    bytes: int = 0
    disk_free_bytes: int | None = None
    stopped_for_space: bool | None = None


@dataclass(frozen=True)
class TrackSummary:
    spec: TrackSpec
    container: ContainerSpec
    file: str  # relative to the recording directory
    start_ms: int
    end_ms: int
    clock: str
    duration: float
    frames: int
    width: int | None
    height: int | None
    dropped_frames: int
    lost_packets: int
    resolutions: tuple[Resolution, ...] = ()


def safe_name(track_id: str) -> str:
    """A track id as a file name: letters, digits, '-', '_' and '.' only."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in track_id)
    return cleaned.lstrip(".") or "track"


class TrackRecorder:
    def __init__(self, spec: TrackSpec, directory: Path, emit: Emit,
                 request_keyframe: Callable[[], None],
                 counters: WriteCounters | None = None,
                 failures: FailureLog | None = None) -> None:
        self.spec = spec
        # Failed writes: logged once per kind, then counted (shared by the recording).
        self._failures = failures or FailureLog(logger, spec.id)
        self._counters = counters if counters is not None else WriteCounters()
        self.container = container_for(spec.codec)
        self.file = f"{TRACKS_DIR}/{safe_name(spec.id)}{self.container.extension}"
        self._path = directory / self.file
        self._emit = emit
        self._request_keyframe = request_keyframe
        self._reorder: ReorderBuffer[Packet] = ReorderBuffer()
        self._depacketizer: Depacketizer = depacketizer_for(spec.codec)
        self.clock = MediaClock(self._depacketizer.clock_rate)
        self.writer: TrackWriter | None = None
        self._video = spec.kind == "video"
        self._waiting = self._video  # for a keyframe: at the start and after a loss
        self._last_request = float("-inf")
        self._origin = 0  # extended RTP timestamp of media time 0
        self._gap = 0  # audio: samples the publisher lost, by its sender reports (AUDIO_RESYNC)
        self.start_ms = 0
        self.clock_source = "arrival"
        self._synced = False
        self._next_sync_media = 0.0
        self._size: tuple[int, int] | None = None
        self.resolutions: list[Resolution] = []  # the first size, then every change
        self.dropped_frames = 0
        self.failed = False
        self.closed = False

    # ----------------------------------------------------------------- input

    def packet(self, seq: int, timestamp: int, marker: bool, payload: bytes,
               arrival: float) -> None:
        if self.closed or self.failed:
            return
        self.clock.observe_arrival(timestamp, arrival)
        for item in self._reorder.push(seq, (seq, timestamp, marker, payload, arrival), arrival):
            self._depacketize(item)
        self._maybe_request_keyframe(arrival)

    def packets(self, batch: list[Packet]) -> None:
        """``packet`` for each of a batch, in order (one worker step for many packets)."""
        for seq, timestamp, marker, payload, arrival in batch:
            self.packet(seq, timestamp, marker, payload, arrival)

    def sender_report(self, ntp: int, rtp_timestamp: int) -> None:
        self.clock.observe_sender_report(ntp, rtp_timestamp)
        if self.writer is None:
            return
        if not self._synced:
            wall = self.clock.report_wall(self._origin)
            if wall is not None:
                self._synced = True
                self._next_sync_media = SYNC_EVENT_INTERVAL
                self.start_ms = wall_ms(wall)
                self.clock_source = "sender-report"
                self._emit({"kind": "track-sync", "t": self.start_ms, "track": self.spec.id,
                            "media_time": 0.0, "clock": "sender-report"})
            elif self.clock.report_disagrees:
                self._synced = True
                logger.warning("[%s] the publisher's clock disagrees with arrival times; "
                               "timing the track by arrival", self.spec.id)
            return
        extended = self.clock.relative(rtp_timestamp)
        wall = self.clock.report_wall(extended)
        if wall is not None and not self._video:
            self._follow_report(extended, wall)
        media_time = (extended - self._origin + self._gap) / self.clock.clock_rate
        if wall is not None and media_time >= self._next_sync_media:
            self._next_sync_media = media_time + SYNC_EVENT_INTERVAL
            self._emit({"kind": "track-sync", "t": wall_ms(wall), "track": self.spec.id,
                        "media_time": round(media_time, 4), "clock": "sender-report"})

    def _follow_report(self, extended: int, wall: float) -> None:
        """Audio RTP timestamps count samples: when a publisher loses some (a browser under
        load drops captured audio), its timestamps fall behind the wall clock while its
        sender reports keep to it. The file follows the reports: the samples from here on
        are written after a gap, so the track stays on the wall clock that its start and
        every other track keep (a video timestamp is a capture time and needs none). The
        gap is only what the arrivals confirm (the last second's packets arrive that much
        later for their timestamps): a report stamped late (aiortc stamps its reports when
        it sends, and an event loop can lag) moves nothing."""
        rate = self.clock.clock_rate
        late = wall - (self.start_ms / 1000 + (extended - self._origin + self._gap) / rate)
        lost = min(late, self.clock.recent_delay())
        if lost > AUDIO_RESYNC:
            self._gap += round(lost * rate)
            self.clock.skip(lost)  # the arrival estimate follows: later reports pass its check
            self._next_sync_media = 0.0  # record the new placement in the timeline now
            logger.info("[%s] the publisher's audio lost %.0f ms: written after a gap",
                        self.spec.id, lost * 1000)

    def tick(self, now: float) -> None:
        """Called when idle: release packets held behind a gap, repeat keyframe requests."""
        if self.closed or self.failed:
            return
        for item in self._reorder.poll(now):
            self._depacketize(item)
        self._maybe_request_keyframe(now)

    def sync(self) -> None:
        if self.writer is not None and not self.failed:
            self.writer.sync()

    def close(self) -> TrackSummary | None:
        """Write what is left, finish the file; None if nothing was ever written."""
        if self.closed:
            return None
        self.closed = True
        if not self.failed:
            for item in self._reorder.flush():
                self._depacketize(item)
            for frame in self._depacketizer.flush():
                self._frame(frame)
        writer = self.writer
        if writer is None:
            return None
        try:
            writer.close()
        except (av.FFmpegError, OSError) as exc:
            self._failures.failed(f"finishing {self.file}", exc)
        duration = writer.end_pts / self.clock.clock_rate
        end_ms = self.start_ms + round(duration * 1000)
        self._emit({"kind": "track-end", "t": end_ms, "track": self.spec.id,
                    "duration": round(duration, 4), "frames": writer.frames})
        width, height = self._size if self._size else (None, None)
        logger.info("[%s] %s finished: %d frames, %.1f s, %d dropped, %d packets lost",
                    self.spec.id, self.file, writer.frames, duration,
                    self.dropped_frames + self._depacketizer.dropped_frames, self._reorder.lost)
        return TrackSummary(self.spec, self.container, self.file, self.start_ms, end_ms,
                            self.clock_source, duration, writer.frames, width, height,
                            self.dropped_frames + self._depacketizer.dropped_frames,
                            self._reorder.lost, tuple(self.resolutions))

    # ----------------------------------------------------------------- internals

    def _maybe_request_keyframe(self, now: float) -> None:
        if self._waiting and now - self._last_request >= KEYFRAME_RETRY:
            self._last_request = now
            self._request_keyframe()

    def _depacketize(self, item: Packet) -> None:
        for frame in self._depacketizer.push(*item):
            self._frame(frame)

    def _frame(self, frame: EncodedFrame) -> None:
        if self._video:
            if frame.after_loss and not frame.keyframe and not self._waiting:
                self._waiting = True  # the pictures that follow reference a lost one
                self._last_request = float("-inf")
            if self._waiting:
                if not (frame.keyframe and (self.writer is not None or frame.size)):
                    self.dropped_frames += 1
                    return
                self._waiting = False
        if self.writer is None:
            self._start(frame)
            if self.writer is None:
                return
        pts = self.clock.relative(frame.timestamp) - self._origin + self._gap
        if pts < 0:
            self.dropped_frames += 1  # older than the file's first frame
            return
        if frame.size and frame.size != self._size:
            self._size = frame.size
            self.resolutions.append(Resolution(pts * 1000 // self.clock.clock_rate, *frame.size))
        try:
            self.writer.write(frame.data, pts, frame.keyframe, frame.duration)
        except (av.FFmpegError, OSError, ValueError) as exc:
            self.dropped_frames += 1
            self._failures.failed("muxing a frame", exc)
            return
        self._counters.frames += 1
        self._counters.bytes += len(frame.data)

    def _start(self, frame: EncodedFrame) -> None:
        self._origin = self.clock.relative(frame.timestamp)
        wall = self.clock.report_wall(self._origin)
        if wall is not None:
            self._synced = True
            self._next_sync_media = SYNC_EVENT_INTERVAL
            self.clock_source = "sender-report"
        else:
            wall = self.clock.arrival_wall(self._origin) or frame.arrival
        self.start_ms = wall_ms(wall)
        width, height = frame.size or (0, 0)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # The event goes first: a file on disk always has its track-start in the timeline.
        self._emit({"kind": "track-start", "t": self.start_ms, "track": self.spec.id,
                    "stream": self.spec.stream, "participant": self.spec.participant,
                    "role": self.spec.role, "media": self.spec.kind, "codec": self.spec.codec,
                    "file": self.file, "clock": self.clock_source})
        try:
            self.writer = TrackWriter(self._path, self.spec.codec, width=width, height=height,
                                      channels=CHANNELS)
        except (av.FFmpegError, OSError, ValueError) as exc:
            self.failed = True
            self._failures.failed(f"creating {self.file}", exc)
        logger.info("[%s] recording %s %s to %s", self.spec.id, self.spec.kind,
                    self.spec.codec, self.file)
