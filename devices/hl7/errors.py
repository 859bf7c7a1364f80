"""The exceptions of ``devices.hl7``: what is wrong and where, never patient data.

``MessageError`` is a message that cannot be accepted as sent (acknowledged ``AE``);
``MessageRejected`` is one this receiver does not handle at all (not HL7, another
message type, version or character set: acknowledged ``AR``, the sender stops
resending it). Their text names a segment and field and what is wrong with it; the
only values quoted are protocol codes (message type, version, character set: cut to
24 printable ASCII characters), never a value from PID, OBR or OBX.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar


class ErrorCode(IntEnum):
    """HL7 table 0357 (message error condition codes), for ERR-3."""

    SEGMENT_SEQUENCE = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION = 203
    INTERNAL = 207

    @property
    def text(self) -> str:
        return _ERROR_TEXT[self]


_ERROR_TEXT = {
    ErrorCode.SEGMENT_SEQUENCE: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.DATA_TYPE: "Data type error",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_EVENT: "Unsupported event code",
    ErrorCode.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ErrorCode.UNSUPPORTED_VERSION: "Unsupported version id",
    ErrorCode.INTERNAL: "Application internal error",
}


@dataclass(frozen=True)
class Location:
    """Where in a message: segment id, its occurrence (1-based), field and component."""

    segment: str
    sequence: int = 1
    field: int | None = None
    component: int | None = None

    def __str__(self) -> str:
        """``MSH-18``, ``PID-3.1``, ``OBX-5 of OBX #3``, ``segment OBX #3``."""
        numbered = self.segment in _REPEATING_SEGMENTS or self.sequence > 1
        if self.field is None:
            suffix = f" #{self.sequence}" if numbered else ""
            return f"segment {self.segment}{suffix}"
        where = f"{self.segment}-{self.field}"
        if self.component is not None:
            where += f".{self.component}"
        return f"{where} of {self.segment} #{self.sequence}" if numbered else where


_REPEATING_SEGMENTS = frozenset({"OBR", "OBX", "NTE"})


class HL7Error(Exception):
    """Base of every error raised by ``devices.hl7``."""


class MessageError(HL7Error, ValueError):
    """The message cannot be accepted as sent: acknowledged ``AE``."""

    ack_code: ClassVar[str] = "AE"

    def __init__(self, reason: str, *, location: Location | None = None,
                 code: ErrorCode = ErrorCode.DATA_TYPE) -> None:
        self.reason = reason
        self.location = location
        self.code = code
        super().__init__(f"{location}: {reason}" if location is not None else reason)


class MessageRejected(MessageError):
    """The message is not one this receiver handles: acknowledged ``AR``."""

    ack_code: ClassVar[str] = "AR"


class StorageError(HL7Error):
    """Samples could not be stored durably (the listener acknowledges ``AE``)."""
