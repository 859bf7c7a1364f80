"""RecorderService: records every room this node hosts and hands the recordings off.

Lifecycle (wire it into the app's cleanup context)::

    service = RecorderService(media_server.directory, recordings_dir, handoff_url)
    await service.start()   # recover interrupted recordings, resume hand-offs, hook rooms
    ...
    await service.stop()    # finish every recording (manifests), stop retrying hand-offs

With a ``DiskPolicy``, the free space of the recordings directory is sampled every
``disk_interval`` seconds (and at once after a write refused for lack of space). Below
the stop threshold every recording stops cleanly (manifest status "stopped", reason
"disk-full", handed off as usual) and each room is told (``recording-state``); when
the space is back above the resume threshold, every room still open is recorded again
under a new recording id. A small reserve file (``.disk-reserve``) is kept in the
recordings directory and deleted when recording stops, so the manifests can be written
even when something else filled the disk to the last byte between two samples; the
resume threshold must leave room for it again (resume >= stop + reserve).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mediaserver.directory import RoomDirectory
from mediaserver.errors import ClosedError
from mediaserver.room import Room
from recorder.disk_guard import MIB, DiskGuard, DiskPolicy, DiskSample, DiskVerdict
from recorder.handoff import HandoffQueue, RetryPolicy
from recorder.manifest import Manifest
from recorder.recovery import recover_all, recover_recording
from recorder.session_recorder import SessionRecorder
from recorder.track_recorder import WriteCounters

logger = logging.getLogger(__name__)

RECORDING_STATE = "recording-state"
"""The room event telling participants whether the room is being recorded."""
DISK_FULL = "disk-full"
RESERVE_FILE = ".disk-reserve"


def make_reserve(directory: Path, size: int) -> bool:
    """Allocate the reserve file (blocking); False when the disk has no room for it."""
    path = directory / RESERVE_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    except OSError:
        path.unlink(missing_ok=True)
        return False
    return True


def disk_sample(directory: Path) -> DiskSample:
    """The free and total bytes of the file system holding ``directory`` (blocking)."""
    stat = os.statvfs(directory)
    return DiskSample(free=stat.f_bavail * stat.f_frsize, total=stat.f_blocks * stat.f_frsize)


class RecorderService:
    """Records each room opened on this node (the directory's ``watch``): a room on
    another node is recorded by that node's service."""

    def __init__(self, directory: RoomDirectory, recordings_dir: Path | str,
                 handoff_url: str = "", *, sync_interval: float = 1.0,
                 retry: RetryPolicy | None = None, handoff_token: str = "",
                 disk: DiskPolicy | None = None, disk_interval: float = 5.0,
                 sample: Callable[[Path], DiskSample] = disk_sample,
                 reserve_bytes: int = 8 * MIB,
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
        self.disk = DiskGuard(disk) if disk is not None else None
        self._disk_interval = disk_interval
        self._sample = sample
        self._reserve_bytes = reserve_bytes if disk is not None else 0
        self._disk_task: asyncio.Task[None] | None = None
        self._sampling: asyncio.Task[None] | None = None
        # Rooms whose recording stopped (or never started) for lack of space.
        self.stopped_rooms: set[str] = set()
        # Recordings whose manifest could not be written: recovered once space is back.
        self._unfinished: list[SessionRecorder] = []
        self._finished_later: list[Path] = []  # finished while stopped for space
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
        if self.disk is not None:
            await self._check_disk()
            if self._reserve_bytes and not self.recording_stopped:
                await asyncio.to_thread(make_reserve, self.recordings_dir, self._reserve_bytes)
            self._disk_task = asyncio.create_task(self._watch_disk(), name="recorder-disk")
        self._unwatch = self.directory.watch(self._room_opened, replay=True)

    async def stop(self) -> None:
        """Finish every recording (writing its manifest) and stop retrying hand-offs."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        for task in (self._disk_task, self._sampling):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._disk_task = self._sampling = None
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

    @property
    def recording_stopped(self) -> bool:
        """True while recording is stopped for lack of space."""
        return self.disk is not None and self.disk.state == "full"

    def health(self) -> dict[str, Any] | None:
        """What ``/api/v1/health`` says of recording: None when all is well."""
        if self.disk is None or self.disk.state == "ok":
            return None
        full = self.disk.state == "full"
        return {"component": "recording", "status": "degraded" if full else "warning",
                "reason": DISK_FULL if full else "disk-low", "freeBytes": self.disk.free,
                "stoppedRooms": sum(1 for name in self.stopped_rooms
                                    if (room := self.directory.local(name)) is not None
                                    and not room.closed)}

    def room_recording_state(self, room_name: str) -> dict[str, str] | None:
        """The ``recording-state`` body for someone joining ``room_name`` while its
        recording is stopped for lack of space; None otherwise."""
        if room_name in self.stopped_rooms:
            return {"state": "stopped", "reason": DISK_FULL}
        return None

    def _room_opened(self, room: Room) -> None:
        # A relayed room (cascade) is recorded on its origin node, once.
        if room.closed or room.origin is not None or self.recorder_for(room.name) is not None:
            return
        if self.recording_stopped:
            self.stopped_rooms.add(room.name)
            return
        recorder = SessionRecorder(room, self.recordings_dir, sync_interval=self.sync_interval,
                                   on_finished=self._finished, counters=self.written,
                                   on_out_of_space=self._out_of_space)
        try:
            recorder.start()
        except ClosedError:
            return
        self.recorders[recorder.id] = recorder

    # ----------------------------------------------------------------- free space

    async def _watch_disk(self) -> None:
        while True:
            await asyncio.sleep(self._disk_interval)
            try:
                await self._check_disk()
            except OSError as exc:  # e.g. the directory vanished: try again next time
                logger.warning("recordings: cannot read free space: %s", exc.strerror)

    async def _check_disk(self) -> None:
        assert self.disk is not None
        sample = await asyncio.to_thread(self._sample, self.recordings_dir)
        self._disk_changed(self.disk.observe(sample, time.monotonic()))

    def _out_of_space(self) -> None:
        """A recording's write failed with ENOSPC/EDQUOT (called on the loop)."""
        if self.disk is None:
            return
        self._disk_changed(self.disk.write_failed(time.monotonic()))
        if self._sampling is None or self._sampling.done():
            # Sample soon, so the log line and health say how much is free.
            self._sampling = asyncio.get_running_loop().create_task(self._check_disk())

    def _disk_changed(self, verdict: DiskVerdict) -> None:
        if self.disk is not None and self.disk.free is not None:
            self.written.disk_free_bytes = self.disk.free
        self.written.stopped_for_space = verdict.state == "full"
        if verdict.log:
            free = verdict.free / MIB
            if verdict.state == "full":
                logger.error("recordings: disk full (%.0f MiB free): recording stopped in "
                             "%d rooms until space is freed", free,
                             len(self.stopped_rooms | {r.room.name for r in
                                                       self.recorders.values()}))
            elif verdict.state == "low":
                logger.warning("recordings: disk space low (%.0f MiB free)", free)
            else:
                logger.info("recordings: disk space back to normal (%.0f MiB free)", free)
        if not verdict.changed:
            return
        if verdict.state == "full":
            self._stop_for_space()
        else:
            self._resume()

    def _stop_for_space(self) -> None:
        if self._reserve_bytes:  # room for the manifests of the recordings now stopping
            (self.recordings_dir / RESERVE_FILE).unlink(missing_ok=True)
        for recorder in list(self.recorders.values()):
            if recorder.finishing:
                continue
            self.stopped_rooms.add(recorder.room.name)
            task = asyncio.get_running_loop().create_task(
                recorder.stop(DISK_FULL, status="stopped"))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            recorder.room.broadcast(RECORDING_STATE, {"state": "stopped", "reason": DISK_FULL})

    def _resume(self) -> None:
        if self._reserve_bytes:
            make_reserve(self.recordings_dir, self._reserve_bytes)  # a few ms: one fallocate
        rooms, self.stopped_rooms = self.stopped_rooms, set()
        for name in sorted(rooms):
            room = self.directory.local(name)
            if room is None or room.closed:
                continue
            self._room_opened(room)
            if self.recorder_for(name) is not None:
                room.broadcast(RECORDING_STATE, {"state": "recording"})
                logger.info("[%s] recording again after a full disk", name)
        later, self._finished_later = self._finished_later, []
        for directory in later:
            self._announce_finished(directory)
        unfinished, self._unfinished = self._unfinished, []
        for recorder in unfinished:
            task = asyncio.get_running_loop().create_task(self._recover(recorder.path))
            self._handoffs.add(task)
            task.add_done_callback(self._handoff_submitted)

    async def _recover(self, directory: Path) -> bool:
        """Finish a recording whose manifest the full disk refused, then hand it off."""
        await asyncio.to_thread(recover_recording, directory)
        self._announce_finished(directory)
        return await self.handoff.submit(directory) if self.handoff.enabled else False

    def _finished(self, recorder: SessionRecorder) -> None:
        self.recorders.pop(recorder.id, None)
        if recorder.manifest is None:
            if self.disk is not None:  # perhaps the disk was full: retried when space is back
                self._unfinished.append(recorder)
            return
        self._announce_finished(recorder.path)
        if not self.handoff.enabled:
            return
        task = asyncio.get_running_loop().create_task(self.handoff.submit(recorder.path))
        self._handoffs.add(task)
        task.add_done_callback(self._handoff_submitted)

    def _announce_finished(self, directory: Path) -> None:
        """Call the finished-recording hook (the teaching video's render), or, while
        recording is stopped for space, once space is back: a render would write into
        what is left for the manifests of the recordings stopping."""
        if self.on_finished is None:
            return
        if self.written.stopped_for_space:
            self._finished_later.append(directory)
            return
        try:
            self.on_finished(directory)
        except Exception:
            logger.exception("[%s] finished-recording hook failed", directory.name)

    def refresh_handoff(self, directory: Path) -> None:
        """Announce a handed-off recording's files again (its teaching video was rendered
        since): the records service asks only for what it lacks."""
        if not self.handoff.enabled or not self.started:
            return
        task = asyncio.get_running_loop().create_task(
            self.handoff.submit(directory, refresh=True))
        self._handoffs.add(task)
        task.add_done_callback(self._handoff_submitted)

    def _handoff_submitted(self, task: asyncio.Task[bool]) -> None:
        self._handoffs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("hand-off could not be queued: %r", task.exception())
