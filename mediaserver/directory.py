"""RoomDirectory: which node hosts each room, and the rooms this node hosts.

Everything outside the media server that needs a room by name (the device hub, the
recorder, the operators' routes) asks the directory instead of walking the server's
rooms, so that several nodes can share one directory. On one node, or when no shared
store is configured, ``LocalRoomDirectory`` is the whole answer; with Redis configured
the composition root wires ``redis_directory.RedisRoomDirectory``, which keeps the
placements (room -> node) in Redis.

Which methods are async follows from that: a question about *any* room
(``placement``, ``names``) may need a round trip to the shared store, so it is async
now; a question about *this node's* rooms (``local``, ``local_names``, ``watch``)
never does, so it stays synchronous and may be asked on the forwarding path.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mediaserver.room import Room

logger = logging.getLogger(__name__)

RoomWatcher = Callable[["Room"], None]


def default_node_id() -> str:
    """``host-pid-random``: operators can tell which process a node is from the host
    name and pid; the random suffix makes a restarted process a new node even when the
    operating system gives it the old pid (a stale placement never looks alive)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class RoomPlacement:
    """Where a room lives: the node hosting it, whether that node is this one, and that
    node's public signalling base URL (empty from the single-node directory)."""

    name: str
    node_id: str
    local: bool
    url: str = ""


class RoomDirectory(Protocol):
    """The rooms of every node, as seen from this one.

    ``room_opened`` and ``room_closed`` are the media server's side: it alone calls
    them, synchronously, as rooms open and close on this node (a networked directory
    records the placement in the background; ``local`` answers at once either way).
    """

    @property
    def node_id(self) -> str: ...

    async def placement(self, name: str) -> RoomPlacement:
        """The node hosting ``name``; when no live node does, the room is placed now (a
        networked directory writes that atomically, so every node gets the same answer).
        Raises ``DirectoryUnavailableError`` when that cannot be decided now."""

    async def names(self) -> tuple[str, ...]:
        """The open rooms, wherever they live."""

    def local(self, name: str) -> Room | None:
        """The open room called ``name`` if this node hosts it."""

    def local_names(self) -> tuple[str, ...]:
        """The open rooms this node hosts."""

    def watch(self, callback: RoomWatcher, *, replay: bool = True) -> Callable[[], None]:
        """Call ``callback`` with each room opened on this node from now on (and, with
        ``replay``, at once with each one already open); returns the unsubscribe."""

    def room_opened(self, room: Room) -> None: ...

    def room_closed(self, room: Room) -> None: ...


class LocalRoomDirectory:
    """The directory of a single node: every room lives here."""

    def __init__(self, node_id: str | None = None) -> None:
        self._node_id = node_id or default_node_id()
        self._rooms: dict[str, Room] = {}
        # (token, callback): the token tells two subscriptions of one callback apart.
        self._watchers: tuple[tuple[object, RoomWatcher], ...] = ()

    @property
    def node_id(self) -> str:
        return self._node_id

    async def placement(self, name: str) -> RoomPlacement:
        return RoomPlacement(name, self._node_id, local=True)

    async def names(self) -> tuple[str, ...]:
        return self.local_names()

    def local(self, name: str) -> Room | None:
        room = self._rooms.get(name)
        return None if room is None or room.closed else room

    def local_names(self) -> tuple[str, ...]:
        return tuple(name for name, room in self._rooms.items() if not room.closed)

    def watch(self, callback: RoomWatcher, *, replay: bool = True) -> Callable[[], None]:
        token = object()
        self._watchers = (*self._watchers, (token, callback))
        if replay:
            for room in list(self._rooms.values()):
                if not room.closed:
                    self._notify(callback, room)

        def unsubscribe() -> None:
            self._watchers = tuple(w for w in self._watchers if w[0] is not token)

        return unsubscribe

    def room_opened(self, room: Room) -> None:
        self._rooms[room.name] = room
        for _token, callback in self._watchers:
            self._notify(callback, room)

    def room_closed(self, room: Room) -> None:
        if self._rooms.get(room.name) is room:
            del self._rooms[room.name]

    @staticmethod
    def _notify(callback: RoomWatcher, room: Room) -> None:
        try:
            callback(room)
        except Exception:
            logger.exception("[%s] room watcher failed", room.name)
