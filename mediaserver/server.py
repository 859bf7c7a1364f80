"""MediaServer: the set of live rooms on this node."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mediaserver.errors import ClosedError
from mediaserver.room import Room, RoomLimits
from mediaserver.transport import MediaConfig

logger = logging.getLogger(__name__)


class MediaServer:
    """Creates rooms on first join and drops them when they close."""

    def __init__(self, config: MediaConfig, limits: RoomLimits | None = None) -> None:
        self.config = config
        self.limits = limits or RoomLimits()
        self.rooms: dict[str, Room] = {}
        self.closed = False
        # Closed rooms whose peer connections are still closing. Each task ends by itself
        # and drops its room then: nothing keeps a closed room alive after that.
        self._closing: set[asyncio.Task[None]] = set()
        # Called with each new room (e.g. the recorder joins it).
        self.room_created: list[Callable[[Room], None]] = []

    def room(self, name: str) -> Room:
        """The live room called ``name``, created if needed."""
        if self.closed:
            raise ClosedError("the media server is shutting down")
        room = self.rooms.get(name)
        if room is None or room.closed:
            room = Room(name, self.config, self.limits, on_closed=self._room_closed)
            self.rooms[name] = room
            for callback in list(self.room_created):
                try:
                    callback(room)
                except Exception:
                    logger.exception("[%s] room-created callback failed", name)
        return room

    def close_if_empty(self, room: Room) -> None:
        """Close a room nobody but services (the recorder) is in any more."""
        if room.only_services_left:
            room.close("empty")

    def _room_closed(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        task = asyncio.get_running_loop().create_task(room.wait_closed())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def transports(self) -> int:
        """Publications and subscriptions (one peer connection each) in live rooms."""
        return sum(len(p.publications) + len(p.subscriptions)
                   for room in self.rooms.values() for p in room.participants.values())

    async def close(self) -> None:
        """Close every room and wait for their peer connections to finish closing."""
        self.closed = True
        for room in list(self.rooms.values()):
            room.close("server-shutdown")
        await asyncio.gather(*list(self._closing), return_exceptions=True)
