"""RoomMember: what a room tells each of its members.

A signalling session (a browser), the recorder and, later, a WHIP session all
implement it; the room knows nothing else about them.
"""

from __future__ import annotations

from typing import Protocol

from mediaserver.events import RoomEvent


class RoomMember(Protocol):
    @property
    def service(self) -> bool:
        """A service member (the recorder) does not keep a room open on its own."""

    def on_room_event(self, event: RoomEvent) -> None:
        """An event of the room (called on the event loop; must not block)."""
