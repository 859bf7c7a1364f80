"""RoomBus: application events (vitals, alarms, camera state) to a room, wherever it lives.

``publish`` is synchronous on purpose: its callers are device callbacks that must not
wait, and events to one room must arrive in the order they were published. A networked
bus delivers to a room on this node at once, as ``LocalRoomBus`` does, and puts an
event for a room on another node on an ordered outbound queue (the count it returns is
then the participants reached on this node: 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mediaserver.directory import RoomDirectory


class RoomBus(Protocol):
    def publish(self, room_name: str, kind: str, body: Mapping[str, Any],
                exclude: str | None = None) -> int:
        """Send an application event to every participant of ``room_name`` but
        ``exclude``; returns how many got it (0 when no such room is open)."""


class LocalRoomBus:
    """Delivers to the rooms this node hosts, found through the directory."""

    def __init__(self, directory: RoomDirectory) -> None:
        self._directory = directory

    def publish(self, room_name: str, kind: str, body: Mapping[str, Any],
                exclude: str | None = None) -> int:
        room = self._directory.local(room_name)
        return 0 if room is None else room.broadcast(kind, body, exclude)
