"""What signalling needs from the room's devices, as an interface the app wires in.

Signalling parses and authorises PTZ requests; the composition root provides a
``RoomServices`` that drives the cameras and feeds vitals. Signalling never imports
the device drivers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from contracts.ptz import PtzRequest


@dataclass(frozen=True)
class Caller:
    """Who asks: the room member, as the token and the room know them."""

    room: str
    participant_id: str
    name: str
    role: str
    subject: str


class ServiceError(Exception):
    """A refused device request; ``code`` and ``message`` are safe to send to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RoomServices(Protocol):
    def room_state(self, room: str) -> dict[str, Any]:
        """Extra state for the `joined` reply (e.g. {"ptz": {...}, "vitals": [...]})."""

    async def ptz(self, caller: Caller, request: PtzRequest) -> None:
        """Run a PTZ request for the caller; return once the camera acknowledged it (not
        when a move ends), or raise ServiceError (``ptz-denied``, ``ptz-unavailable``,
        ``camera-offline``, ``camera-error``). The session runs each call as its own task,
        so it may take a while without holding up the connection; cancelling the call
        does not withdraw what was sent to the camera."""

    def participant_left(self, room: str, participant_id: str) -> None:
        """The participant is gone (left, disconnected): stop anything it was driving."""


class NoRoomServices:
    """The default when no device is configured."""

    def room_state(self, room: str) -> dict[str, Any]:
        return {}

    async def ptz(self, caller: Caller, request: PtzRequest) -> None:
        raise ServiceError("ptz-unavailable", "no PTZ camera is bound to this room")

    def participant_left(self, room: str, participant_id: str) -> None:
        return None
