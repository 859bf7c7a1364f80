"""Recovery of recordings interrupted by a crash (``kill -9``, power loss).

A recording whose ``recording.json`` still says "recording" when the service
starts, and whose writer process is gone, is recovered from what is on disk:

- the timeline is cut after its last complete event;
- each track file (a Matroska prefix: complete clusters, maybe a torn last one) is
  remuxed, packet by packet without decoding, into a finished file with duration
  and cues, which replaces it;
- ``manifest.json`` is written with status "recovered", then ``recording.json``.

Every step is idempotent: recovery interrupted in turn is simply run again.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from recorder.errors import ManifestError
from recorder.manifest import (
    MANIFEST_FILE,
    STATE_FILE,
    FileEntry,
    Manifest,
    TrackEntry,
    file_digest,
    iso_utc,
    load_manifest,
    read_json,
    write_json_atomic,
)
from recorder.opus import CHANNELS
from recorder.timeline import TIMELINE_FILE, TimelineWriter, read_timeline
from recorder.track_writer import container_for

logger = logging.getLogger(__name__)

REPAIR_SUFFIX = ".repair"


@dataclass(frozen=True)
class RemuxResult:
    frames: int
    duration: float  # seconds, from media time 0 to the end of the last packet
    width: int | None
    height: int | None


def _writer_alive(state: dict[str, Any]) -> bool:
    """True if the process that wrote this recording may still be writing it."""
    pid = state.get("pid")
    if state.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def interrupted_recordings(recordings_dir: Path) -> list[Path]:
    """Recording directories left in state "recording" by a writer that is gone."""
    found: list[Path] = []
    if not recordings_dir.is_dir():
        return found
    for directory in sorted(recordings_dir.iterdir()):
        state_path = directory / STATE_FILE
        if not state_path.is_file():
            continue
        try:
            state = read_json(state_path)
        except ManifestError:
            logger.warning("recording %s: unreadable %s", directory.name, STATE_FILE)
            continue
        if state.get("status") == "recording" and not _writer_alive(state):
            found.append(directory)
    return found


def remux_file(path: Path) -> RemuxResult:
    """Rewrite a possibly truncated Matroska/WebM file as a finished one (no decoding).

    Packets are copied until the first unreadable one; the result replaces ``path``
    only if it holds at least one packet.
    """
    tmp = path.with_name(path.name + REPAIR_SUFFIX)
    frames = 0
    end = Fraction(0)
    width = height = None
    source: Any = av.open(str(path))
    try:
        in_stream = source.streams[0]
        if in_stream.type == "video":
            width, height = in_stream.codec_context.width, in_stream.codec_context.height
        target: Any = av.open(str(tmp), "w", format=source.format.name.split(",")[0])
        try:
            out_stream = target.add_stream_from_template(in_stream, opaque=True)
            try:
                for packet in source.demux(in_stream):
                    if packet.dts is None or packet.pts is None or packet.is_corrupt:
                        continue
                    packet_end = (packet.pts + (packet.duration or 0)) * packet.time_base
                    packet.stream = out_stream
                    target.mux(packet)
                    frames += 1
                    end = max(end, packet_end)
            except (av.FFmpegError, EOFError) as exc:  # the torn end of the file
                logger.info("%s: stopped at a damaged packet (%s)", path.name, type(exc).__name__)
        finally:
            target.close()
    finally:
        source.close()
    if frames:
        with open(tmp, "rb") as file:
            os.fsync(file.fileno())
        os.replace(tmp, path)
    else:
        tmp.unlink(missing_ok=True)
    return RemuxResult(frames, float(end), width, height)


def _track_entries(directory: Path, events: list[dict[str, Any]]) -> list[TrackEntry]:
    starts: dict[str, dict[str, Any]] = {}
    for event in events:
        kind, track = event.get("kind"), event.get("track")
        if kind == "track-start" and isinstance(track, str):
            starts[track] = dict(event)
        elif (kind == "track-sync" and track in starts and event.get("media_time") == 0
              and isinstance(event.get("t"), int)):
            starts[track]["t"] = event["t"]
            starts[track]["clock"] = event.get("clock", "sender-report")
    entries = []
    for track_id, start in starts.items():
        file = str(start.get("file", ""))
        path = (directory / file).resolve()
        if not file or not path.is_relative_to(directory.resolve()) or not path.is_file():
            continue
        try:
            spec = container_for(str(start.get("codec", "")))
            result = remux_file(path)
        except Exception:
            logger.exception("recording %s: track %s cannot be repaired", directory.name,
                             track_id)
            continue
        if not result.frames:
            logger.warning("recording %s: track %s holds no readable media", directory.name,
                           track_id)
            continue
        size, digest = file_digest(path)
        audio = start.get("media") == "audio"
        start_ms = int(start["t"])
        entries.append(TrackEntry(
            id=track_id, stream=str(start.get("stream", "")),
            participant=str(start.get("participant", "")), role=str(start.get("role", "")),
            kind="audio" if audio else "video", codec=str(start.get("codec")),
            container=spec.format, mime_type=spec.mime_type, file=file,
            duration=round(result.duration, 4), bytes=size, sha256=digest,
            start_ms=start_ms, end_ms=start_ms + round(result.duration * 1000),
            clock=str(start.get("clock", "arrival")), frames=result.frames,
            width=result.width, height=result.height,
            sample_rate=spec.clock_rate if audio else None, channels=CHANNELS if audio else None))
    return sorted(entries, key=lambda t: (t.start_ms, t.id))


def recover_recording(directory: Path) -> Manifest:
    """Finish an interrupted recording from what is on disk; returns its manifest."""
    state = read_json(directory / STATE_FILE)
    if (directory / MANIFEST_FILE).is_file():
        # It crashed after the manifest and before the state: the manifest is complete.
        manifest = load_manifest(directory)
        write_json_atomic(directory / STATE_FILE, {**state, "status": manifest.status})
        return manifest
    for leftover in directory.glob(f"tracks/*{REPAIR_SUFFIX}"):
        leftover.unlink()
    timeline_path = directory / TIMELINE_FILE
    events, good = read_timeline(timeline_path)
    if timeline_path.exists() and timeline_path.stat().st_size > good:
        with open(timeline_path, "r+b") as file:
            file.truncate(good)
    tracks = _track_entries(directory, events)
    start_ms = int(state.get("start_ms") or min((t.start_ms for t in tracks), default=0))
    times = [int(e["t"]) for e in events if isinstance(e.get("t"), int)]
    end_ms = max([start_ms, *times, *(t.end_ms for t in tracks)])
    timeline = TimelineWriter(timeline_path)
    timeline.append({"kind": "recording-end", "t": end_ms, "reason": "interrupted"})
    timeline.close()
    size, digest = file_digest(timeline_path)
    manifest = Manifest(
        id=str(state.get("id") or directory.name), room=str(state.get("room", "")),
        status="recovered", reason="interrupted", started_at=iso_utc(start_ms),
        ended_at=iso_utc(end_ms), start_ms=start_ms, end_ms=end_ms, tracks=tracks,
        timeline=FileEntry(TIMELINE_FILE, size, digest, len(events) + 1))
    manifest.write(directory)
    write_json_atomic(directory / STATE_FILE, {**state, "status": "recovered"})
    logger.info("recording %s recovered: %d tracks", directory.name, len(tracks))
    return manifest


def recover_all(recordings_dir: Path) -> list[Manifest]:
    """Recover every interrupted recording under ``recordings_dir``."""
    manifests = []
    for directory in interrupted_recordings(recordings_dir):
        try:
            manifests.append(recover_recording(directory))
        except Exception:
            logger.exception("recording %s could not be recovered", directory.name)
    return manifests
