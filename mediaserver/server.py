"""MediaServer: the rooms this node hosts, opened on first join and dropped when closed."""

from __future__ import annotations

import asyncio
import logging
import time

from mediaserver.admission import LoadAdmission
from mediaserver.directory import LocalRoomDirectory, RoomDirectory
from mediaserver.errors import ClosedError
from mediaserver.room import Room, RoomLimits
from mediaserver.setup_queue import SetupQueue
from mediaserver.stats import ServerStats, server_stats
from mediaserver.transport import MediaConfig

logger = logging.getLogger(__name__)

SAMPLE_INTERVAL = 0.5
"""Seconds between samples of the event loop's CPU clock (``admission``)."""


class MediaServer:
    """Creates rooms on first join and drops them when they close.

    The rooms are registered in ``directory`` (a ``LocalRoomDirectory`` unless the
    composition root passes a shared one): everything outside the media server finds
    rooms there, and reads counters through ``stats()``. ``node_id`` names this node in
    the directory; by default the directory's (see ``directory.default_node_id``).
    """

    def __init__(self, config: MediaConfig, limits: RoomLimits | None = None, *,
                 node_id: str | None = None, directory: RoomDirectory | None = None) -> None:
        if directory is not None and node_id is not None and directory.node_id != node_id:
            raise ValueError("node_id differs from the directory's node id")
        self.config = config
        self.limits = limits or RoomLimits()
        self.directory: RoomDirectory = directory or LocalRoomDirectory(node_id)
        self.closed = False
        # One bound for the whole node: every room's subscriptions queue here.
        self.setup = SetupQueue(config.setup_concurrency)
        # Closed rooms whose peer connections are still closing. Each task ends by itself
        # and drops its room then: nothing keeps a closed room alive after that.
        self._closing: set[asyncio.Task[None]] = set()
        # How busy this node's event loop is, sampled on the loop (from the first room).
        self.admission = LoadAdmission(config.admit_cpu)
        self._sampling: asyncio.TimerHandle | None = None

    @property
    def node_id(self) -> str:
        return self.directory.node_id

    def room(self, name: str, *, origin: str | None = None) -> Room:
        """The live room called ``name``, created if needed; ``origin``: created as a
        relayed room of that node (cascade; see ``Room.origin``)."""
        if self.closed:
            raise ClosedError("the media server is shutting down")
        room = self.directory.local(name)
        if room is None:
            self._start_sampling()
            room = Room(name, self.config, self.limits, on_closed=self._room_closed,
                        setup=self.setup, origin=origin, admission=self.admission)
            self.directory.room_opened(room)
        return room

    def _start_sampling(self) -> None:
        if self._sampling is None and self.config.admit_cpu > 0:
            self._sample()

    def _sample(self) -> None:
        """The loop thread's CPU clock, twice a second (this runs on the loop thread)."""
        self.admission.observe(time.thread_time(), time.monotonic())
        self._sampling = asyncio.get_running_loop().call_later(SAMPLE_INTERVAL, self._sample)

    def _room_closed(self, room: Room) -> None:
        self.directory.room_closed(room)
        task = asyncio.get_running_loop().create_task(room.wait_closed())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _rooms(self) -> list[Room]:
        rooms = (self.directory.local(name) for name in self.directory.local_names())
        return [room for room in rooms if room is not None]

    def stats(self) -> ServerStats:
        """A frozen snapshot of this node's rooms, transports, producers and downstreams."""
        return server_stats(self.node_id, self._rooms(), self.setup.stats())

    def transports(self) -> int:
        """Publications and subscriptions (one peer connection each) in live rooms."""
        return sum(len(participant.transports()) for room in self._rooms()
                   for participant in room.participants.values())

    async def close(self) -> None:
        """Close every room and wait for their peer connections to finish closing."""
        self.closed = True
        if self._sampling is not None:
            self._sampling.cancel()
        for room in self._rooms():
            room.close("server-shutdown")
        await asyncio.gather(*list(self._closing), return_exceptions=True)
