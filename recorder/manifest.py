"""The manifest of a finished recording and the small JSON state files beside it.

Layout of one recording, ``<recordings_dir>/<recording id>/``:

- ``recording.json``: ``{"version", "id", "room", "status", "started_at", "start_ms",
  "pid", "host"}``; status is "recording" while it runs, then "complete", "stopped" or
  "recovered".
- ``tracks/<track id>.webm`` (VP8, Opus) or ``.mkv`` (H.264): one file per track.
- ``timeline.msgpack``: the events (see ``recorder.timeline``).
- ``manifest.json``: written last, when the session ends (``Manifest.to_json``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recorder.errors import ManifestError

MANIFEST_FILE = "manifest.json"
STATE_FILE = "recording.json"
TRACKS_DIR = "tracks"
MANIFEST_VERSION = 1


def iso_utc(ms: int) -> str:
    """Wall-clock milliseconds as ISO 8601 UTC with milliseconds, e.g. 2025-01-02T03:04:05.678Z."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def file_digest(path: Path) -> tuple[int, str]:
    """(byte size, SHA-256 hex) of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def write_json_atomic(path: Path, document: Any) -> None:
    """Write JSON to a temporary file, fsync it, and rename it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2, sort_keys=True)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path.name} is missing or unreadable") from exc
    if not isinstance(document, dict):
        raise ManifestError(f"{path.name} is not a JSON object")
    return document


def _from_json(cls: Any, document: Any) -> Any:
    if not isinstance(document, dict):
        raise ManifestError(f"a {cls.__name__} entry is not a JSON object")
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in document.items() if k in names})
    except TypeError as exc:
        raise ManifestError(f"a {cls.__name__} entry lacks required fields") from exc


@dataclass
class TrackEntry:
    """One recorded track (a producer of the room) and its file."""

    id: str  # the producer id, e.g. "s-1a2b3c4d5e6f-0"
    stream: str  # the publication (stream) id
    participant: str  # the publishing participant's id (never a name)
    role: str  # the publishing participant's role, "" if unknown
    kind: str  # "video" | "audio"
    codec: str  # "VP8" | "H264" | "opus", as negotiated
    container: str  # "webm" | "matroska"
    mime_type: str  # "video/webm" | "audio/webm" | "video/x-matroska"
    file: str  # relative to the recording directory, e.g. "tracks/s-1a2b3c4d5e6f-0.webm"
    duration: float  # seconds of media in the file
    bytes: int
    sha256: str
    start_ms: int  # wall-clock Unix ms of media time 0 of the file
    end_ms: int  # start_ms + duration
    clock: str  # "sender-report" | "arrival": how start_ms was established
    frames: int
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    dropped_frames: int | None = None  # incomplete or undecodable frames left out (None: unknown)
    lost_packets: int | None = None  # RTP packets that never arrived (None: unknown)
    # Video: the picture size from the start and at every change, read from keyframe
    # headers (VP8 frame tag, H.264 SPS), e.g. [{"atMs": 0, "width": 640, "height": 480},
    # {"atMs": 5200, "width": 320, "height": 240}]; atMs is media time in the file.
    # None for audio and for manifests written before resolutions were listed.
    resolutions: list[dict[str, int]] | None = None


@dataclass
class FileEntry:
    file: str
    bytes: int
    sha256: str
    events: int | None = None


@dataclass
class Manifest:
    id: str
    room: str
    status: str  # "complete" | "stopped" (ended before its room) | "recovered"
    reason: str  # why it ended: "room-closed", "stopped", "disk-full", "interrupted"
    started_at: str  # ISO 8601 UTC, e.g. "2025-01-02T03:04:05.678Z"
    ended_at: str
    start_ms: int  # the same instants as wall-clock Unix ms
    end_ms: int
    tracks: list[TrackEntry]
    timeline: FileEntry
    version: int = MANIFEST_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Manifest:
        tracks = document.get("tracks")
        if not isinstance(tracks, list):
            raise ManifestError("the manifest has no track list")
        plain = {k: v for k, v in document.items() if k not in ("tracks", "timeline")}
        manifest: Manifest = _from_json(cls, {
            **plain, "tracks": [_from_json(TrackEntry, t) for t in tracks],
            "timeline": _from_json(FileEntry, document.get("timeline"))})
        return manifest

    def write(self, directory: Path) -> Path:
        path = directory / MANIFEST_FILE
        write_json_atomic(path, self.to_json())
        return path


def load_manifest(directory: Path) -> Manifest:
    return Manifest.from_json(read_json(directory / MANIFEST_FILE))
