"""The media server's exceptions: user errors carry a code; internal ones never reach clients."""

from __future__ import annotations


class MediaServerError(Exception):
    """Base class. ``code`` is a stable, machine-readable identifier for clients."""

    code = "media-error"

    def details(self) -> dict[str, str]:
        """Fields a client may read beside the code (none by default)."""
        return {}


class ClosedError(MediaServerError):
    """An operation was attempted on a room, transport, producer or consumer after close()."""

    code = "closed"


class NotFoundError(MediaServerError):
    code = "not-found"


class NegotiationError(MediaServerError):
    """An SDP offer or answer was malformed or could not be negotiated."""

    code = "negotiation-failed"


class LimitError(MediaServerError):
    """A per-room or per-participant limit was reached."""

    code = "limit-reached"


class RoomFullError(LimitError):
    """Every seat of one kind is taken; ``limit`` says which (``publishers``, ``viewers``)."""

    code = "room-full"

    def __init__(self, limit: str, seats: int) -> None:
        super().__init__(f"the room is full: it admits {seats} {limit}")
        self.limit = limit

    def details(self) -> dict[str, str]:
        return {"limit": self.limit}


class BadSdpError(NegotiationError):
    """An offer or answer failed validation before any peer connection used it."""

    code = "bad-sdp"


class TooManyPublicationsError(LimitError):
    code = "too-many-publications"


class ServerBusyError(LimitError):
    """This node's event loop is too busy to take another viewer (``admission``)."""

    code = "server-busy"


class TooManySubscriptionsError(LimitError):
    code = "too-many-subscriptions"


class TooManyPendingError(LimitError):
    """Too many subscriptions of one participant are waiting for their answer."""

    code = "too-many-pending"


class DirectoryUnavailableError(MediaServerError):
    """The shared room directory cannot be reached, or no node can take a new room: a
    join of a room this node does not host cannot be placed now (try again)."""

    code = "unavailable"
