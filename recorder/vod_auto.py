"""Which finished recordings get their teaching video rendered without anyone asking.

A recording is rendered in the background when its room closes, so the video is usually
ready before anybody opens it; renders do not survive a restart, so at start-up the
finished, unrendered recordings that ended in the last ``startup_hours`` are queued
again (older ones are rendered when somebody asks). ``AutoRenderPolicy`` is pure
(``now`` is passed in); ``AutoRenders`` is the thin shell around it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from recorder.http import VodRenderer
from recorder.library import RecordingLibrary, RecordingSummary

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoRenderPolicy:
    enabled: bool = True
    max_seconds: float = 4 * 3600.0
    """Longer recordings are rendered only when asked (0: no limit)."""
    startup_hours: float = 24.0
    """At start-up, queue unrendered recordings that ended this recently (0: none)."""

    def wants(self, duration: float | None) -> bool:
        """Render a just-finished recording of ``duration`` seconds in the background?"""
        if not self.enabled:
            return False
        return self.max_seconds <= 0 or duration is None or duration <= self.max_seconds

    def at_startup(self, summaries: Iterable[RecordingSummary],
                   now: datetime) -> list[str]:
        """Ids to queue at start-up, the most recent first."""
        if not self.enabled or self.startup_hours <= 0:
            return []
        since = now - timedelta(hours=self.startup_hours)
        chosen = [s for s in summaries
                  if s.finished and not s.rendered and (s.ended_at or s.sort_time) >= since
                  and self.wants(s.duration)]
        chosen.sort(key=lambda s: s.sort_time, reverse=True)
        return [s.id for s in chosen]


class AutoRenders:
    """The I/O shell: hands finished recordings to the renderer's queue (``finished``,
    the recorder service's hook) and re-queues recent ones at start-up."""

    def __init__(self, renderer: VodRenderer, library: RecordingLibrary,
                 policy: AutoRenderPolicy) -> None:
        self.renderer = renderer
        self.library = library
        self.policy = policy
        self._tasks: set[asyncio.Task[None]] = set()

    def finished(self, directory: Path) -> None:
        """A recording was finished (its manifest written): queue its render."""
        if self.policy.enabled:
            self._spawn(self._queue(directory.name))

    async def start(self, now: datetime) -> list[str]:
        """Queue the recent unrendered recordings; returns their ids."""
        summaries = await asyncio.to_thread(self.library.summaries)
        ids = self.policy.at_startup(summaries, now)
        for recording_id in ids:
            await self._queue(recording_id)
        if ids:
            logger.info("vod: %d recent recordings queued for rendering", len(ids))
        return ids

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _queue(self, recording_id: str) -> None:
        recording = await asyncio.to_thread(self.library.get, recording_id)
        if recording is None or not recording.finished:
            return
        duration = None
        if recording.started_at and recording.ended_at:
            duration = (recording.ended_at - recording.started_at).total_seconds()
        if not self.policy.wants(duration):
            logger.info("vod %s: %.0f s long, rendered only when asked", recording.id,
                        duration or 0.0)
            return
        self.renderer.background(recording)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("vod: could not queue a render: %r", task.exception())
