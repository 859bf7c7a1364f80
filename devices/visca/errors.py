"""The VISCA driver's exceptions: one base class, three cases a caller handles differently."""

from __future__ import annotations

from typing import Literal

from devices.visca.codec import ErrorCode, error_text

WaitingFor = Literal["ack", "reply", "completion"]


class ViscaError(Exception):
    """Base class of every error the VISCA driver raises."""


class ViscaTimeout(ViscaError):
    """The camera did not answer in time.

    ``waiting_for`` is "ack" (a command got no ACK), "reply" (an inquiry, cancel or
    broadcast got no answer) or "completion" (a command was accepted but did not finish).
    """

    def __init__(self, waiting_for: WaitingFor, seconds: float) -> None:
        super().__init__(f"no {waiting_for} from the camera within {seconds:g} s")
        self.waiting_for: WaitingFor = waiting_for
        self.seconds = seconds


class ViscaCommandError(ViscaError):
    """The camera answered with an error reply (``y0 6z ee FF``)."""

    def __init__(self, code: int, socket: int | None = None) -> None:
        self.code = code
        self.socket = socket
        super().__init__(f"camera replied {error_text(code)} ({self.code_name})")

    @property
    def code_name(self) -> str:
        """``"SYNTAX"``, ``"NOT_EXECUTABLE"``, ... or the hex byte for a code not in the table."""
        return self.code.name if isinstance(self.code, ErrorCode) else f"0x{self.code:02X}"


class CameraOffline(ViscaError):
    """The camera is not answering (or the driver is closed); nothing was sent."""


class MalformedReply(ViscaError):
    """The camera answered the packet in transit with bytes that are not a VISCA reply."""
