"""Reading a finished recording directory: the manifest and the timeline.

This is the ONE place that knows the recorder core's on-disk layout, so a change of
field names there is a change here only::

    <recordings_dir>/<id>/manifest.json        tracks, wall-clock times, checksums
    <recordings_dir>/<id>/tracks/<track>.webm  media, remuxed without transcoding
    <recordings_dir>/<id>/timeline.msgpack     a sequence of msgpack maps {"t", "kind", ...}

Unknown fields are ignored; a malformed manifest raises ``ValueError`` with a precise
message (never the file's content: it may name a patient).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgpack

MANIFEST = "manifest.json"
FINISHED = frozenset({"complete", "stopped", "recovered"})
"""Manifest states of a recording whose media will not change any more."""
RECORDING = "recording"
"""The state reported for a directory without a manifest: still being written (or crashed
and not yet recovered). Such a recording is never rendered nor deleted."""
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def valid_recording_id(recording_id: str) -> bool:
    """True for an id that is safe as one path component (no '/', '..', NUL, ...)."""
    return bool(_ID.match(recording_id)) and ".." not in recording_id


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time ("...Z" or with an offset) as an aware datetime, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass(frozen=True)
class Track:
    id: str
    kind: str
    """"video" or "audio"."""
    codec: str
    file: Path
    """Absolute path of the media file."""
    start_ms: float
    """Wall-clock Unix ms of media time 0 of the file."""
    duration: float
    """Seconds, as the manifest states it (the render also trusts the media)."""
    participant: str
    role: str

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.duration * 1000.0

    @classmethod
    def parse(cls, data: object, directory: Path, index: int) -> Track:
        if not isinstance(data, Mapping):
            raise ValueError(f"manifest track {index} is not an object")
        kind = data.get("kind")
        if kind not in ("video", "audio"):
            raise ValueError(f"manifest track {index}: kind must be 'video' or 'audio'")
        name = data.get("file")
        if not isinstance(name, str) or not name:
            raise ValueError(f"manifest track {index}: 'file' is missing")
        path = (directory / name).resolve()
        if not path.is_relative_to(directory.resolve()):
            raise ValueError(f"manifest track {index}: 'file' leaves the recording directory")
        start = data.get("start_ms")
        if not isinstance(start, int | float) or isinstance(start, bool):
            raise ValueError(f"manifest track {index}: 'start_ms' must be a number")
        duration = data.get("duration", 0.0)
        if not isinstance(duration, int | float) or duration < 0:
            raise ValueError(f"manifest track {index}: 'duration' must be a number >= 0")
        return cls(id=str(data.get("id", f"track-{index}")), kind=kind,
                   codec=str(data.get("codec", "")), file=path, start_ms=float(start),
                   duration=float(duration), participant=str(data.get("participant", "")),
                   role=str(data.get("role", "")))


@dataclass(frozen=True)
class Recording:
    id: str
    room: str
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    tracks: tuple[Track, ...]
    timeline: Path | None
    directory: Path
    size_bytes: int
    """Sum of the media and timeline byte sizes the manifest states."""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def video_tracks(self) -> tuple[Track, ...]:
        return tuple(t for t in self.tracks if t.kind == "video")

    @property
    def audio_tracks(self) -> tuple[Track, ...]:
        return tuple(t for t in self.tracks if t.kind == "audio")

    @property
    def participants(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.participant for t in self.tracks if t.participant))

    @classmethod
    def parse(cls, data: object, directory: Path) -> Recording:
        if not isinstance(data, Mapping):
            raise ValueError("the manifest is not a JSON object")
        room = data.get("room")
        if not isinstance(room, str) or not room:
            raise ValueError("the manifest names no room")
        raw_tracks = data.get("tracks", [])
        if not isinstance(raw_tracks, list):
            raise ValueError("the manifest's 'tracks' is not a list")
        tracks = tuple(Track.parse(t, directory, i) for i, t in enumerate(raw_tracks))
        timeline: Path | None = None
        size = sum(_int(t.get("bytes")) for t in raw_tracks if isinstance(t, Mapping))
        raw_timeline = data.get("timeline")
        if isinstance(raw_timeline, Mapping) and isinstance(raw_timeline.get("file"), str):
            timeline = (directory / raw_timeline["file"]).resolve()
            if not timeline.is_relative_to(directory.resolve()):
                raise ValueError("the manifest's timeline leaves the recording directory")
            size += _int(raw_timeline.get("bytes"))
        return cls(id=str(data.get("id") or directory.name), room=room,
                   status=str(data.get("status", "")),
                   started_at=parse_time(data.get("started_at")),
                   ended_at=parse_time(data.get("ended_at")), tracks=tracks, timeline=timeline,
                   directory=directory, size_bytes=size)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def read_recording(directory: Path) -> Recording:
    """The manifest of one recording directory.

    Raises FileNotFoundError when there is no manifest (the recording is still being
    written), ValueError when it is malformed.
    """
    text = (directory / MANIFEST).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the manifest is not valid JSON (line {exc.lineno})") from None
    return Recording.parse(data, directory)


def read_timeline(path: Path | None) -> Iterator[dict[str, Any]]:
    """The timeline's events (maps with a numeric "t" and a string "kind"), in file order.

    A truncated last record (the writer was killed) ends the sequence quietly; a
    record that is not such a map is skipped.
    """
    if path is None or not path.exists():
        return
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 16):
            unpacker.feed(chunk)
            try:
                items = list(unpacker)
            except (ValueError, msgpack.UnpackException):
                return  # corrupt bytes (a torn write): keep what came before
            for item in items:
                if (isinstance(item, dict) and isinstance(item.get("kind"), str)
                        and isinstance(item.get("t"), int | float)
                        and not isinstance(item.get("t"), bool)):
                    yield item


@dataclass(frozen=True)
class MediaClock:
    """Where a track's media time lands on the wall clock.

    ``start_ms`` alone (media time 0) when the timeline has nothing more; with the
    recorder's ``track-sync`` events (a sender report every ~10 s: media time ``m`` s
    of the file was wall ms ``t``), piecewise linear between them, so sender clock
    drift over a long session does not move the picture away from the vitals.
    """

    start_ms: float
    points: tuple[tuple[float, float], ...] = ()
    """(media seconds, wall ms), increasing in both."""

    def wall_ms(self, media_s: float) -> float:
        points = self.points
        if not points:
            return self.start_ms + media_s * 1000.0
        i = bisect.bisect_right(points, (media_s, float("inf")))
        if i == 0 or i == len(points):  # outside the synced range: nominal rate
            m, t = points[0] if i == 0 else points[-1]
            return t + (media_s - m) * 1000.0
        (m0, t0), (m1, t1) = points[i - 1], points[i]
        return t0 + (media_s - m0) * (t1 - t0) / (m1 - m0)


def media_clocks(recording: Recording, events: Iterable[Mapping[str, Any]]
                 ) -> dict[str, MediaClock]:
    """A MediaClock per track id, from the manifest and the timeline's ``track-sync``."""
    syncs: dict[str, list[tuple[float, float]]] = {}
    for event in events:
        media = event.get("media_time")
        if (event.get("kind") == "track-sync" and isinstance(event.get("track"), str)
                and isinstance(media, int | float) and not isinstance(media, bool)):
            syncs.setdefault(event["track"], []).append((float(media), float(event["t"])))
    clocks = {}
    for track in recording.tracks:
        raw = sorted(syncs.get(track.id, []), key=lambda point: point[1])  # wall-clock order
        if raw and raw[0][0] > 0.001:
            raw.insert(0, (0.0, track.start_ms))
        points: list[tuple[float, float]] = []
        for media, wall in raw:  # keep it strictly increasing (drop repeats, reversals)
            if not points or (media > points[-1][0] and wall > points[-1][1]):
                points.append((media, wall))
        clocks[track.id] = MediaClock(track.start_ms, tuple(points) if len(points) > 1 else ())
    return clocks
