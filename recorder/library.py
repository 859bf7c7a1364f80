"""The recordings on disk: listing with summaries, and the retention policy.

``RetentionPolicy.expired`` decides (pure: ``now`` is passed in), ``apply_retention``
deletes. A recording still being written (no manifest, or a state other than
"complete"/"recovered") is never deleted, however old its directory is.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from recorder.vod import VOD_DIR, is_rendered
from recorder.vod_input import RECORDING, Recording, read_recording, valid_recording_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordingSummary:
    id: str
    room: str
    status: str
    """"complete", "recovered", "recording" (no manifest yet) or "invalid"."""
    started_at: datetime | None
    ended_at: datetime | None
    duration: float | None
    """Seconds between start and end, when both are known."""
    tracks: int
    participants: int
    size_bytes: int
    rendered: bool
    modified: datetime
    """Last change of the directory (orders recordings without a manifest)."""

    @property
    def finished(self) -> bool:
        return self.status in ("complete", "recovered")

    @property
    def sort_time(self) -> datetime:
        return self.started_at or self.modified

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            if value is None:
                return None
            return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {"id": self.id, "room": self.room, "status": self.status,
                "startedAt": iso(self.started_at), "endedAt": iso(self.ended_at),
                "duration": self.duration, "tracks": self.tracks,
                "participants": self.participants, "bytes": self.size_bytes,
                "rendered": self.rendered}

    @classmethod
    def of(cls, recording: Recording, modified: datetime) -> RecordingSummary:
        duration = None
        if recording.started_at and recording.ended_at:
            duration = round((recording.ended_at - recording.started_at).total_seconds(), 3)
        return cls(recording.id, recording.room, recording.status, recording.started_at,
                   recording.ended_at, duration, len(recording.tracks),
                   len(recording.participants), recording.size_bytes,
                   is_rendered(recording.directory), modified)


class RecordingLibrary:
    """The recording directories under one root, by id."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, recording_id: str) -> Path | None:
        """The directory of ``recording_id``, or None if the id is unsafe or unknown."""
        if not valid_recording_id(recording_id):
            return None
        path = self.root / recording_id
        return path if path.is_dir() else None

    def get(self, recording_id: str) -> Recording | None:
        """The finished-or-not recording with a readable manifest, or None."""
        path = self.path(recording_id)
        if path is None:
            return None
        try:
            return read_recording(path)
        except (FileNotFoundError, ValueError):
            return None

    def summary(self, recording_id: str) -> RecordingSummary | None:
        path = self.path(recording_id)
        return self._summary(path) if path is not None else None

    def summaries(self) -> list[RecordingSummary]:
        """Every recording directory, newest first."""
        found = [s for s in map(self._summary, self._directories()) if s is not None]
        return sorted(found, key=lambda s: s.sort_time, reverse=True)

    def _directories(self) -> Iterable[Path]:
        if not self.root.is_dir():
            return ()
        return (p for p in self.root.iterdir()
                if p.is_dir() and not p.is_symlink() and valid_recording_id(p.name))

    def _summary(self, path: Path) -> RecordingSummary | None:
        try:
            modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except OSError:
            return None  # deleted meanwhile
        try:
            return RecordingSummary.of(read_recording(path), modified)
        except FileNotFoundError:
            status = RECORDING
        except ValueError as exc:
            logger.warning("recording %s: unreadable manifest: %s", path.name, exc)
            status = "invalid"
        return RecordingSummary(path.name, "", status, None, None, None, 0, 0, 0, False,
                                modified)


@dataclass(frozen=True)
class RetentionPolicy:
    keep_days: float
    """Finished recordings older than this (by their end time) are deleted."""
    keep_invalid_days: float | None = None
    """Directories whose manifest cannot be read: deleted after this many days since
    their last change (None: never; a human should look at them)."""

    def __post_init__(self) -> None:
        if self.keep_days <= 0:
            raise ValueError("retention keep_days must be > 0")

    def expired(self, summaries: Iterable[RecordingSummary], now: datetime) -> list[str]:
        """Ids of the recordings to delete at ``now`` (never one still recording)."""
        limit = now - timedelta(days=self.keep_days)
        out = []
        for summary in summaries:
            if summary.finished:
                if (summary.ended_at or summary.sort_time) < limit:
                    out.append(summary.id)
            elif (summary.status == "invalid" and self.keep_invalid_days is not None
                  and summary.modified < now - timedelta(days=self.keep_invalid_days)):
                out.append(summary.id)
        return out


def apply_retention(library: RecordingLibrary, policy: RetentionPolicy,
                    now: datetime | None = None) -> list[str]:
    """Delete the expired recordings; returns their ids."""
    now = now or datetime.now(UTC)
    deleted = []
    for recording_id in policy.expired(library.summaries(), now):
        path = library.path(recording_id)
        if path is None:
            continue
        # The rendered video first: a reader racing the deletion loses the media
        # before the manifest, never the other way round.
        shutil.rmtree(path / VOD_DIR, ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
        logger.info("recording %s: deleted by retention (older than %g days)",
                    recording_id, policy.keep_days)
        deleted.append(recording_id)
    return deleted


def retention_context(library: RecordingLibrary, policy: RetentionPolicy,
                      interval: float = 3600.0,
                      now: Callable[[], datetime] = lambda: datetime.now(UTC),
                      ) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp ``cleanup_ctx`` that applies ``policy`` at start-up and every ``interval`` s."""

    async def run() -> None:
        while True:
            try:
                await asyncio.to_thread(apply_retention, library, policy, now())
            except Exception:  # a full disk must not stop the next round
                logger.exception("recordings: retention round failed")
            await asyncio.sleep(interval)

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run(), name="recordings-retention")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return context
