"""A synthetic finished recording, in the recorder core's layout (for tests and benchmarks).

Video tracks are encoded to VP8 WebM and tones to Opus WebM with PyAV, exactly as
the recorder would have remuxed a browser's media, plus a manifest and a timeline
with join/leave, track and vitals events. The picture comes from a callable, so the
tests can draw ``huizhen.testpattern.pattern_frame`` (frame number code included)
without this package importing the application.
"""

from __future__ import annotations

import fractions
import hashlib
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import msgpack
import numpy as np

Picture = Callable[[int, int, int], np.ndarray]
"""(frame index, width, height) -> BGR picture."""

VITALS_OFFSET_MS = 500
"""Vitals event k arrives at origin + VITALS_OFFSET_MS + k * 1000 ms."""
PLETH_RATE = 100
AUDIO_RATE = 48000


@dataclass(frozen=True)
class SampleParty:
    participant: str
    role: str
    video_offset: int = 0
    """Added to the frame index drawn (tells the parties' pictures apart)."""
    start_s: float = 0.0
    """When the party's tracks start, from the recording's origin."""
    end_s: float | None = None
    """When they end (None: at the recording's end)."""
    tone_hz: float | None = None
    """A sine tone as the party's audio, or no audio track."""
    camera: str = "video"
    """The video track's id is ``<participant>-<camera>``: two parties with the same
    participant and different cameras are one participant publishing two cameras."""


def sample_vitals(k: int) -> dict[str, float]:
    """The numeric vitals of event ``k`` (NIBP only every 5th event)."""
    values = {"hr": 70.0 + k % 20, "spo2": 94.0 + k % 5, "rr": 14.0 + k % 4,
              "temp": round(36.5 + 0.1 * (k % 5), 1)}
    if k % 5 == 0:
        values |= {"nibp_sys": 120.0 + k % 15, "nibp_dia": 80.0 - k % 7}
    return values


def expected_vitals(t: float) -> dict[str, float]:
    """The latest value of each vital at video time ``t`` seconds (origin = first track)."""
    k = math.floor((t * 1000 - VITALS_OFFSET_MS) / 1000)
    out: dict[str, float] = {}
    for i in range(k + 1):
        out |= sample_vitals(i)
    return out


def _colour_bars(index: int, width: int, height: int) -> np.ndarray:
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[:, :, 1] = (index * 4) % 256
    img[:, : width // 2, 2] = 200
    return img


UNITS = {"hr": "/min", "spo2": "%", "rr": "/min", "temp": "Cel", "nibp_sys": "mm[Hg]",
         "nibp_dia": "mm[Hg]"}


def write_sample_recording(root: Path, recording_id: str, parties: list[SampleParty], *,
                           duration: float = 8.0, width: int = 320, height: int = 240,
                           fps: int = 30, picture: Picture = _colour_bars,
                           origin_ms: int = 1_767_225_600_000, room: str = "bed-12",
                           vitals: bool = True, status: str = "complete",
                           pleth_chunks: int = 1) -> Path:
    """Write ``root/recording_id`` and return its path. ``pleth_chunks``: each vitals
    event carries its second of pleth as this many waveform samples, each with the
    observation time of its own first sample (as a monitor sends several waveform OBX
    in one message)."""
    directory = root / recording_id
    (directory / "tracks").mkdir(parents=True)
    tracks: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for party in parties:
        start_ms = origin_ms + round(party.start_s * 1000)
        end_s = duration if party.end_s is None else party.end_s
        length = end_s - party.start_s
        events.append({"t": start_ms - 50, "kind": "join", "participant": party.participant,
                       "role": party.role})
        video_id = f"{party.participant}-{party.camera}"
        path = directory / "tracks" / f"{video_id}.webm"
        _encode_video(path, round(length * fps), fps, width, height, picture, party.video_offset)
        tracks.append(_track(directory, path, video_id, "video", "VP8", length, start_ms, party))
        if party.tone_hz is not None:
            audio_id = f"{party.participant}-audio"
            path = directory / "tracks" / f"{audio_id}.webm"
            _encode_tone(path, length, party.tone_hz)
            tracks.append(_track(directory, path, audio_id, "audio", "opus", length, start_ms,
                                 party))
        for track in tracks[-2 if party.tone_hz is not None else -1:]:
            events.append({"t": start_ms, "kind": "track-start", "track": track["id"]})
            events.append({"t": start_ms + round(length * 1000), "kind": "track-end",
                           "track": track["id"]})
        events.append({"t": start_ms + round(length * 1000) + 20, "kind": "leave",
                       "participant": party.participant})
    if vitals:
        events += _vitals_events(origin_ms, duration, pleth_chunks)
    events.sort(key=lambda e: e["t"])
    timeline = directory / "timeline.msgpack"
    with timeline.open("wb") as out:
        for event in events:
            out.write(msgpack.packb(event))
    manifest = {
        "id": recording_id, "room": room, "status": status,
        "started_at": _iso(origin_ms - 50), "ended_at": _iso(origin_ms + round(duration * 1000)),
        "tracks": tracks,
        "timeline": {"file": "timeline.msgpack", "bytes": timeline.stat().st_size,
                     "sha256": _sha256(timeline)},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return directory


def _vitals_events(origin_ms: int, duration: float,
                   pleth_chunks: int = 1) -> list[dict[str, Any]]:
    events = []
    for k in range(int(duration) + 1):
        t = origin_ms + VITALS_OFFSET_MS + k * 1000
        if t > origin_ms + duration * 1000:
            break
        observed = _iso(t - 300)
        samples: list[dict[str, Any]] = [
            {"vital": key, "value": value, "unit": UNITS[key], "observedAt": observed}
            for key, value in sample_vitals(k).items()]
        phase = np.arange(PLETH_RATE) / PLETH_RATE
        pleth = 50 + 40 * np.sin(2 * np.pi * 1.2 * (k + phase)) ** 3
        # The second of pleth before the event: it was observed from t - 1300 ms on.
        bounds = np.linspace(0, PLETH_RATE, pleth_chunks + 1).round().astype(int)
        for lo, hi in itertools.pairwise(bounds):
            values = [round(float(v), 2) for v in pleth[lo:hi]]
            samples.append({"vital": "pleth", "values": values,
                            "sampleRate": PLETH_RATE, "unit": "",
                            "observedAt": _iso(t - 1300 + lo * 1000 / PLETH_RATE)})
        events.append({"t": t, "kind": "vitals", "device": "sim-monitor", "samples": samples})
    return events


def _track(directory: Path, path: Path, track_id: str, kind: str, codec: str, length: float,
           start_ms: int, party: SampleParty) -> dict[str, Any]:
    return {"id": track_id, "kind": kind, "codec": codec, "container": "webm",
            "file": str(path.relative_to(directory)), "duration": round(length, 3),
            "bytes": path.stat().st_size, "sha256": _sha256(path), "start_ms": start_ms,
            "participant": party.participant, "role": party.role}


def _encode_video(path: Path, count: int, fps: int, width: int, height: int,
                  picture: Picture, offset: int) -> None:
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=fps, options={
            "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 600_000
        stream.codec_context.gop_size = fps * 2
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(picture(i + offset, width, height), format="bgr24")
            frame.pts = i
            frame.time_base = fractions.Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _encode_tone(path: Path, length: float, frequency: float) -> None:
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=AUDIO_RATE, layout="mono")
        stream.bit_rate = 32000
        step = 960
        total = round(length * AUDIO_RATE)
        for start in range(0, total, step):
            t = (np.arange(start, min(total, start + step)) / AUDIO_RATE).astype(np.float64)
            wave = (0.3 * np.sin(2 * np.pi * frequency * t) * 32767).astype(np.int16)
            if len(wave) < step:
                wave = np.concatenate([wave, np.zeros(step - len(wave), np.int16)])
            frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = AUDIO_RATE
            frame.pts = start
            frame.time_base = fractions.Fraction(1, AUDIO_RATE)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
