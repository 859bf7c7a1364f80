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
        self._closed_rooms: list[Room] = []
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
        self._closed_rooms.append(room)

    async def close(self) -> None:
        """Close every room and wait for their peer connections to finish closing."""
        self.closed = True
        for room in list(self.rooms.values()):
            room.close("server-shutdown")
        rooms, self._closed_rooms = self._closed_rooms, []
        await asyncio.gather(*(room.wait_closed() for room in rooms), return_exceptions=True)
