"""Audio/video offset of a recording: a flash and a click captured at the same instant.

A real aiortc publisher sends, once a second, a white picture and an audio click that
start at the same instant of one shared capture clock; the room is recorded through the
real server. Each track's file plus its manifest start time gives the wall-clock time of
every flash and every click, and the two must agree within 20 ms.

``AV_SYNC_PICTURE=640,480,8`` (width, height, random low bits) makes the picture as
costly to encode as a camera's, to see the publisher's share: aiortc stamps a sender
report with the time its last packet was SENT, after encoding, so a video track is
placed later than it was captured by its encode time (and by any lag of an overloaded
publisher). The default picture is cheap to encode, so the offset measured is the
recorder's own.
"""

from __future__ import annotations

import asyncio
import fractions
import os
import statistics
import time
from pathlib import Path

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from mediaserver import MediaConfig, MediaServer
from recorder.manifest import Manifest
from recorder.session_recorder import SessionRecorder
from tests.fakes import Member
from tests.peers import wait_for

FPS = 30
RATE = 48000
SAMPLES = 960  # 20 ms audio frames
FLASHES = 5  # one a second, from the second second on
MAX_OFFSET_MS = 20.0
WIDTH, HEIGHT, GRAIN = (int(v) for v in os.environ.get("AV_SYNC_PICTURE", "320,240,0").split(","))


class SharedClock:
    """The capture clock both tracks are paced by (their media time 0 is one instant)."""

    def __init__(self) -> None:
        self.start: float | None = None

    async def until(self, media_time: float) -> None:
        if self.start is None:
            self.start = time.monotonic()
        delay = self.start + media_time - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class FlashTrack(MediaStreamTrack):
    """Dark grey pictures; the one at each whole second is white."""

    kind = "video"

    def __init__(self, clock: SharedClock) -> None:
        super().__init__()
        self._clock = clock
        self._rng = np.random.default_rng(1)
        self.index = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._clock.until(self.index / FPS)
        white = self.index % FPS == 0 and self.index > 0
        image = np.full((HEIGHT, WIDTH, 3), 250 if white else 40, dtype=np.uint8)
        if GRAIN:  # random low bits: a picture as costly to encode as a camera's
            image += self._rng.integers(0, GRAIN, image.shape, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = self.index * 90000 // FPS
        frame.time_base = fractions.Fraction(1, 90000)
        self.index += 1
        return frame


class ClickTrack(MediaStreamTrack):
    """Silence; a 10 ms 1 kHz burst starting at each whole second."""

    kind = "audio"

    def __init__(self, clock: SharedClock) -> None:
        super().__init__()
        self._clock = clock
        self._samples = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._clock.until(self._samples / RATE)
        n = np.arange(SAMPLES) + self._samples
        into_second = n % RATE
        burst = (into_second < RATE // 100) & (n >= RATE)
        wave = np.where(burst, np.sin(2 * np.pi * 1000 * n / RATE) * 0.8 * 32767, 0)
        frame = av.AudioFrame.from_ndarray(wave.astype(np.int16).reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, RATE)
        self._samples += SAMPLES
        return frame


def flash_times(path: Path) -> list[float]:
    """Media times (s) of the pictures that turn white."""
    times: list[float] = []
    previous = False
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            white = float(frame.to_ndarray(format="gray").mean()) > 145
            if white and not previous:
                times.append(frame.time or 0.0)
            previous = white
    return times


def click_times(path: Path) -> list[float]:
    """Media times (s) of the samples at which each click starts (silence before it). Each
    decoded frame is placed at its own time: a gap in the file is silence."""
    frames: list[tuple[float, np.ndarray]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            frames.append((frame.time or 0.0, np.abs(frame.to_ndarray()).max(axis=0)))
    first = frames[0][0] if frames else 0.0
    level = np.zeros(max((round((t - first) * RATE) + len(f) for t, f in frames), default=0))
    for t, f in frames:
        start = round((t - first) * RATE)
        level[start:start + len(f)] = f
    loud = level > 0.1
    starts = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    onsets = [s for s in starts if not loud[max(0, s - RATE // 5):s].any()]
    return [first + s / RATE for s in onsets]


def nearest(times: list[float], to: float) -> float:
    return min(times, key=lambda t: abs(t - to))


def wall_ms(start_ms: int, times: list[float]) -> list[float]:
    return [start_ms + t * 1000 for t in times]


async def record(directory: Path) -> tuple[Manifest, Path]:
    server = MediaServer(MediaConfig(ice_addresses=("127.0.0.1",)))
    room = server.room("bed-av-sync")
    recorder = SessionRecorder(room, directory)
    recorder.start()
    participant = room.join("Ward Nurse Li", "ward", Member())
    clock = SharedClock()
    pc = RTCPeerConnection()
    video = FlashTrack(clock)
    pc.addTrack(video)
    pc.addTrack(ClickTrack(clock))
    await pc.setLocalDescription(await pc.createOffer())
    _, answer = await room.publish(participant, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await wait_for(lambda: video.index > FPS * (FLASHES + 1) + 10, 60)
    manifest = await recorder.stop()
    await pc.close()
    await server.close()
    return manifest, recorder.path


async def test_a_flash_and_a_click_at_one_instant_are_recorded_within_20_ms(tmp_path: Path
                                                                              ) -> None:
    manifest, path = await record(tmp_path)
    video = next(t for t in manifest.tracks if t.kind == "video")
    audio = next(t for t in manifest.tracks if t.kind == "audio")
    flashes = wall_ms(video.start_ms, await asyncio.to_thread(flash_times, path / video.file))
    clicks = wall_ms(audio.start_ms, await asyncio.to_thread(click_times, path / audio.file))
    assert len(flashes) >= FLASHES - 1 and len(clicks) >= FLASHES - 1, (flashes, clicks)
    # Pair each flash with the click nearest to it (they are a second apart).
    offsets = [nearest(clicks, f) - f for f in flashes]
    assert all(abs(o) < 500 for o in offsets), offsets
    median = statistics.median(offsets)
    print(f"click - flash (negative: audio leads video): "
          f"{', '.join(f'{o:.1f}' for o in offsets)} ms; median {median:.1f} ms "
          f"(clocks: video {video.clock}, audio {audio.clock})")
    assert abs(median) <= MAX_OFFSET_MS, offsets
