"""The recordings on disk: listing with summaries, and the retention policy.

``RetentionPolicy.to_delete`` decides (pure: ``now`` is passed in), ``apply_retention``
deletes. Two limits: age (``keep_days``, by the recording's end) and the total size of
the recordings (``max_total_bytes``: the oldest go first until the rest fit).
A recording still being written (no manifest, or a state other than
"complete"/"stopped"/"recovered") is never deleted, however old its directory is.
The size budget never deletes a recording the records service has not got: with
``require_handoff``, only recordings whose hand-off was ``delivered``, or ``unclaimed``
for longer than ``keep_unclaimed_days`` (an admin had that long to attach them).
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

from recorder.handoff import HANDOFF_STATE_FILE
from recorder.manifest import read_json
from recorder.vod import VOD_DIR, is_rendered
from recorder.vod_input import FINISHED, RECORDING, Recording, read_recording, valid_recording_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordingSummary:
    id: str
    room: str
    status: str
    """"complete", "stopped" (ended before its room: see the reason), "recovered",
    "recording" (no manifest yet) or "invalid"."""
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
    handoff: str | None = None
    """The hand-off's state (``handoff.json``): "pending", "delivered", "unclaimed",
    "rejected"; None when it was never handed off."""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

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
    def of(cls, recording: Recording, modified: datetime,
           handoff: str | None = None) -> RecordingSummary:
        duration = None
        if recording.started_at and recording.ended_at:
            duration = round((recording.ended_at - recording.started_at).total_seconds(), 3)
        return cls(recording.id, recording.room, recording.status, recording.started_at,
                   recording.ended_at, duration, len(recording.tracks),
                   len(recording.participants), recording.size_bytes,
                   is_rendered(recording.directory), modified, handoff)


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
            return RecordingSummary.of(read_recording(path), modified, handoff_state(path))
        except FileNotFoundError:
            status = RECORDING
        except ValueError as exc:
            logger.warning("recording %s: unreadable manifest: %s", path.name, exc)
            status = "invalid"
        return RecordingSummary(path.name, "", status, None, None, None, 0, 0, 0, False,
                                modified)


def handoff_state(directory: Path) -> str | None:
    """The ``status`` of a recording's ``handoff.json``, None if it has none (or unreadable)."""
    path = directory / HANDOFF_STATE_FILE
    if not path.is_file():
        return None
    try:
        status = read_json(path).get("status")
    except ValueError:
        return None
    return status if isinstance(status, str) else None


@dataclass(frozen=True)
class RetentionPolicy:
    keep_days: float | None
    """Finished recordings older than this (by their end time) are deleted (None: no age
    limit)."""
    keep_invalid_days: float | None = None
    """Directories whose manifest cannot be read: deleted after this many days since
    their last change (None: never; a human should look at them)."""
    max_total_bytes: int = 0
    """Budget for the recordings' total size (tracks and timelines, as their manifests
    say); over it, the oldest deletable recordings go first. 0: no budget."""
    require_handoff: bool = False
    """Recordings are handed off to the records service: the budget only deletes those
    delivered, or unclaimed for longer than ``keep_unclaimed_days``."""
    keep_unclaimed_days: float = 7.0

    def __post_init__(self) -> None:
        if self.keep_days is not None and self.keep_days <= 0:
            raise ValueError("retention keep_days must be > 0")
        if self.max_total_bytes < 0:
            raise ValueError("retention max_total_bytes must be >= 0")

    def to_delete(self, summaries: Iterable[RecordingSummary], now: datetime
                  ) -> list[tuple[str, str]]:
        """(id, why) of the recordings to delete at ``now``: "age", "invalid" or "size"."""
        summaries = list(summaries)
        out = [(i, "age" if self._finished(i, summaries) else "invalid")
               for i in self.expired(summaries, now)]
        if not self.max_total_bytes:
            return out
        gone = {i for i, _ in out}
        kept = [s for s in summaries if s.id not in gone]
        total = sum(s.size_bytes for s in kept)
        for summary in sorted(kept, key=lambda s: s.ended_at or s.sort_time):
            if total <= self.max_total_bytes:
                break
            if self._may_go_for_size(summary, now):
                out.append((summary.id, "size"))
                total -= summary.size_bytes
        return out

    @staticmethod
    def _finished(recording_id: str, summaries: list[RecordingSummary]) -> bool:
        return any(s.id == recording_id and s.finished for s in summaries)

    def _may_go_for_size(self, summary: RecordingSummary, now: datetime) -> bool:
        if not summary.finished:
            return False
        if not self.require_handoff or summary.handoff == "delivered":
            return True
        ended = summary.ended_at or summary.sort_time
        return (summary.handoff == "unclaimed"
                and ended < now - timedelta(days=self.keep_unclaimed_days))

    def expired(self, summaries: Iterable[RecordingSummary], now: datetime) -> list[str]:
        """Ids of the recordings past their age at ``now`` (never one still recording)."""
        limit = None if self.keep_days is None else now - timedelta(days=self.keep_days)
        out = []
        for summary in summaries:
            if summary.finished:
                if limit is not None and (summary.ended_at or summary.sort_time) < limit:
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
    for recording_id, why in policy.to_delete(library.summaries(), now):
        path = library.path(recording_id)
        if path is None:
            continue
        # The rendered video first: a reader racing the deletion loses the media
        # before the manifest, never the other way round.
        shutil.rmtree(path / VOD_DIR, ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
        if why == "size":
            logger.info("recording %s: deleted by retention (recordings over %d MiB)",
                        recording_id, policy.max_total_bytes // (1024 * 1024))
        else:
            logger.info("recording %s: deleted by retention (%s)", recording_id,
                        f"older than {policy.keep_days:g} days" if why == "age"
                        else "unreadable manifest")
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
