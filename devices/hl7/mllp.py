"""MLLP (Minimal Lower Layer Protocol) framing, sans-I/O: bytes in, events out.

A frame is ``0x0B`` + message + ``0x1C 0x0D``. ``MLLPFramer.feed`` returns, in order,
``Frame`` (a complete message), ``BytesDiscarded`` (bytes outside any frame, or an
unfinished frame cut short by a new start byte) and ``FrameTooLarge`` (a frame longer
than ``max_message_size``: dropped, and the framer resynchronises on the next frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
HEAD_SIZE = 4096
"""How much of a dropped, too-large frame ``FrameTooLarge.head`` keeps (enough for MSH)."""


@dataclass(frozen=True)
class Frame:
    payload: bytes


@dataclass(frozen=True)
class BytesDiscarded:
    count: int


@dataclass(frozen=True)
class FrameTooLarge:
    size: int
    """Bytes of the frame seen when it was dropped (at least ``max_message_size + 1``)."""
    head: bytes
    """The frame's first bytes, to read its MSH for an error acknowledgement."""


FramerEvent = Frame | BytesDiscarded | FrameTooLarge


class _State(Enum):
    BETWEEN = "between frames"
    IN_FRAME = "in a frame"
    SKIPPING = "skipping a frame that is too large"


class MLLPFramer:
    """Splits a byte stream into MLLP frames."""

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 1:
            raise ValueError(f"max_message_size must be positive, got {max_message_size}")
        self.max_message_size = max_message_size
        self.discarded_bytes = 0
        """Bytes outside frames (and of unfinished frames cut by a new start byte)."""
        self.oversized_frames = 0
        self._state = _State.BETWEEN
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already searched for the end of the frame

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame held (at most ``max_message_size + 1``)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[FramerEvent]:
        self._buffer += data
        events: list[FramerEvent] = []
        while self._step(events):
            pass
        return events

    def _step(self, events: list[FramerEvent]) -> bool:
        """Consume what it can from the buffer; True while there may be more to do."""
        if self._state is _State.BETWEEN:
            return self._between(events)
        if self._state is _State.IN_FRAME:
            return self._in_frame(events)
        return self._skipping()

    def _between(self, events: list[FramerEvent]) -> bool:
        start = self._buffer.find(START_BLOCK)
        garbage = len(self._buffer) if start < 0 else start
        if garbage:
            self._discard(garbage, events)
        if start < 0:
            return False
        del self._buffer[:1]
        self._state, self._scanned = _State.IN_FRAME, 0
        return True

    def _in_frame(self, events: list[FramerEvent]) -> bool:
        buffer = self._buffer
        end = buffer.find(END_BLOCK, self._scanned)
        restart = buffer.find(START_BLOCK, self._scanned, None if end < 0 else end)
        if restart >= 0:  # a new frame starts before this one ended: drop the unfinished one
            self._discard(restart, events)
            del buffer[:1]
            self._scanned = 0
            return True
        if end < 0:
            if len(buffer) > self.max_message_size:
                self._too_large(len(buffer), events)
                self._state = _State.SKIPPING
                self._keep_possible_end()
                return True
            self._scanned = max(len(buffer) - 1, 0)
            return False
        if end > self.max_message_size:
            self._too_large(end, events)
            del buffer[:end + len(END_BLOCK)]
        else:
            events.append(Frame(bytes(buffer[:end])))
            del buffer[:end + len(END_BLOCK)]
        self._state = _State.BETWEEN
        return True

    def _skipping(self) -> bool:
        buffer = self._buffer
        end = buffer.find(END_BLOCK)
        restart = buffer.find(START_BLOCK, 0, None if end < 0 else end)
        if restart >= 0:
            del buffer[:restart + 1]
            self._state, self._scanned = _State.IN_FRAME, 0
            return True
        if end >= 0:
            del buffer[:end + len(END_BLOCK)]
            self._state = _State.BETWEEN
            return True
        self._keep_possible_end()
        return False

    def _keep_possible_end(self) -> None:
        """Drop the buffer but a trailing 0x1C, which may begin the end-of-frame mark."""
        keep = 1 if self._buffer.endswith(END_BLOCK[:1]) else 0
        del self._buffer[:len(self._buffer) - keep]

    def _discard(self, count: int, events: list[FramerEvent]) -> None:
        del self._buffer[:count]
        self.discarded_bytes += count
        events.append(BytesDiscarded(count))

    def _too_large(self, size: int, events: list[FramerEvent]) -> None:
        self.oversized_frames += 1
        events.append(FrameTooLarge(size, bytes(self._buffer[:HEAD_SIZE])))


def encode_frame(payload: bytes) -> bytes:
    """``payload`` wrapped in an MLLP frame; ValueError if it holds a framing byte."""
    if START_BLOCK in payload:
        raise ValueError("MLLP payload contains the start-of-block byte 0x0B")
    if END_BLOCK[:1] in payload:
        raise ValueError("MLLP payload contains the end-of-block byte 0x1C")
    return START_BLOCK + payload + END_BLOCK
