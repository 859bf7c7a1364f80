"""What signalling needs to serve a viewer at a node that is not the room's origin.

The composition root provides an ``EdgeRooms`` (huizhen/cascade.py) when cascaded rooms
are on: it joins the origin's room as an edge and keeps a relayed room on this node, whose
streams carry the origin's stream ids. Signalling never speaks to other nodes itself.
"""

from __future__ import annotations

from typing import Protocol

from mediaserver import Room, RoomPlacement


class EdgeRooms(Protocol):
    async def relayed_room(self, placement: RoomPlacement) -> Room | None:
        """This node's relayed room of ``placement`` (a room living on another node),
        opened now if needed, its origin's streams listed; None when it cannot be
        relayed now (the caller redirects the viewer to the origin instead). Raises
        ``DirectoryUnavailableError`` when the origin cannot be reached (try again)."""
