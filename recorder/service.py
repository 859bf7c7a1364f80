"""RecorderService: records every room this node hosts and hands the recordings off.

Lifecycle (wire it into the app's cleanup context)::

    service = RecorderService(media_server.directory, recordings_dir, handoff_url)
    await service.start()   # recover interrupted recordings, resume hand-offs, hook rooms
    ...
    await service.stop()    # finish every recording (manifests), stop retrying hand-offs
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from mediaserver.directory import RoomDirectory
from mediaserver.errors import ClosedError
from mediaserver.room import Room
from recorder.handoff import HandoffQueue, RetryPolicy
from recorder.manifest import Manifest
from recorder.recovery import recover_all
from recorder.session_recorder import SessionRecorder
from recorder.track_recorder import WriteCounters

logger = logging.getLogger(__name__)


class RecorderService:
    """Records each room opened on this node (the directory's ``watch``): a room on
    another node is recorded by that node's service."""

    def __init__(self, directory: RoomDirectory, recordings_dir: Path | str,
                 handoff_url: str = "", *, sync_interval: float = 1.0,
                 retry: RetryPolicy | None = None, handoff_token: str = "",
                 on_finished: Callable[[Path], None] | None = None) -> None:
        self.directory = directory
        self.recordings_dir = Path(recordings_dir)
        self.handoff = HandoffQueue(handoff_url, retry, handoff_token)
        self.sync_interval = sync_interval
        self.recorders: dict[str, SessionRecorder] = {}  # unfinished, by recording id
        self.written = WriteCounters()  # frames/bytes muxed by every recording (metrics)
        self.recovered: list[Manifest] = []
        self.started = False
        self._handoffs: set[asyncio.Task[bool]] = set()
        self._unwatch: Callable[[], None] | None = None
        self.on_finished = on_finished
        """Told each finished recording's directory (the app queues its teaching video)."""

    async def start(self) -> None:
        """Recover interrupted recordings, resume pending hand-offs, record every room."""
        if self.started:
            return
        self.started = True
        await asyncio.to_thread(self.recordings_dir.mkdir, parents=True, exist_ok=True)
        self.recovered = await asyncio.to_thread(recover_all, self.recordings_dir)
        await self.handoff.start()
        await self.handoff.resume(self.recordings_dir)
        self._unwatch = self.directory.watch(self._room_opened, replay=True)

    async def stop(self) -> None:
        """Finish every recording (writing its manifest) and stop retrying hand-offs."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        recorders = list(self.recorders.values())
        results = await asyncio.gather(*(r.stop("stopped") for r in recorders),
                                       return_exceptions=True)
        for recorder, result in zip(recorders, results, strict=True):
            if isinstance(result, BaseException):
                logger.error("[%s] recording did not finish cleanly: %r", recorder.id, result)
        if self._handoffs:
            await asyncio.gather(*self._handoffs, return_exceptions=True)
        await self.handoff.close()
        self.started = False

    def recorder_for(self, room_name: str) -> SessionRecorder | None:
        """The live recording of a room, if any."""
        for recorder in self.recorders.values():
            if recorder.room.name == room_name and not recorder.finishing:
                return recorder
        return None

    def _room_opened(self, room: Room) -> None:
        if room.closed or self.recorder_for(room.name) is not None:
            return
        recorder = SessionRecorder(room, self.recordings_dir, sync_interval=self.sync_interval,
                                   on_finished=self._finished, counters=self.written)
        try:
            recorder.start()
        except ClosedError:
            return
        self.recorders[recorder.id] = recorder

    def _finished(self, recorder: SessionRecorder) -> None:
        self.recorders.pop(recorder.id, None)
        if recorder.manifest is not None and self.on_finished is not None:
            try:
                self.on_finished(recorder.path)
            except Exception:
                logger.exception("[%s] finished-recording hook failed", recorder.id)
        if recorder.manifest is None or not self.handoff.enabled:
            return
        task = asyncio.get_running_loop().create_task(self.handoff.submit(recorder.path))
        self._handoffs.add(task)
        task.add_done_callback(self._handoff_submitted)

    def _handoff_submitted(self, task: asyncio.Task[bool]) -> None:
        self._handoffs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("hand-off could not be queued: %r", task.exception())
