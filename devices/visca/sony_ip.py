"""Sony VISCA over IP (sans-I/O): the 8-byte header and the controller's sequence numbers.

Each UDP datagram (port 52381) is a big-endian header -- payload type (2 bytes),
payload length (2 bytes, 1..16), sequence number (4 bytes) -- followed by one VISCA
packet or a control payload. The camera echoes the sequence number in its replies.

:class:`SonyIpLink` is the controller's side: it numbers messages, sends RESET first
(and again when the camera says the numbers are out of step), and resends a message
that got no reply with the SAME sequence number. A ``0F 01`` (sequence number error)
answering a resend means the first copy reached the camera and ran: only its reply was
lost, which the link reports as :class:`ReplyLost`.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum

from devices.visca.codec import INQUIRY, MAX_PACKET

DEFAULT_PORT = 52381
HEADER = struct.Struct("!HHI")
SEQUENCE_MODULO = 1 << 32

RESET = b"\x01"
CONTROL_ACK = b"\x01"
SEQUENCE_ERROR = b"\x0f\x01"
MESSAGE_TYPE_ERROR = b"\x0f\x02"


class PayloadType(IntEnum):
    COMMAND = 0x0100
    INQUIRY = 0x0110
    REPLY = 0x0111
    DEVICE_SETTING = 0x0120
    CONTROL = 0x0200
    CONTROL_REPLY = 0x0201


@dataclass(frozen=True)
class SonyIpMessage:
    payload_type: PayloadType
    sequence: int
    payload: bytes

    @classmethod
    def parse(cls, data: bytes) -> SonyIpMessage:
        if len(data) < HEADER.size + 1:
            raise ValueError(
                f"VISCA-over-IP datagram of {len(data)} bytes is shorter than "
                f"the {HEADER.size}-byte header plus a payload"
            )
        raw_type, length, sequence = HEADER.unpack_from(data)
        try:
            payload_type = PayloadType(raw_type)
        except ValueError:
            raise ValueError(f"unknown VISCA-over-IP payload type 0x{raw_type:04X}") from None
        if not 1 <= length <= MAX_PACKET:
            raise ValueError(f"payload length field {length} is outside 1..{MAX_PACKET}")
        if len(data) - HEADER.size != length:
            raise ValueError(
                f"payload length field says {length} bytes but {len(data) - HEADER.size} follow"
            )
        return cls(payload_type, sequence, bytes(data[HEADER.size :]))

    def serialize(self) -> bytes:
        if not 1 <= len(self.payload) <= MAX_PACKET:
            raise ValueError(f"payload of {len(self.payload)} bytes is outside 1..{MAX_PACKET}")
        if not 0 <= self.sequence < SEQUENCE_MODULO:
            raise ValueError(f"sequence number {self.sequence} does not fit in 32 bits")
        return HEADER.pack(self.payload_type, len(self.payload), self.sequence) + self.payload


def payload_type_for(packet: bytes) -> PayloadType:
    """Command (``8x 01 ..`` and cancel ``8x 2z``) or inquiry (``8x 09 ..``)."""
    return PayloadType.INQUIRY if packet[1:2] == bytes((INQUIRY,)) else PayloadType.COMMAND


def reset_message(sequence: int) -> SonyIpMessage:
    """RESET: the camera sets its sequence counter to 0 (the value sent is ignored)."""
    return SonyIpMessage(PayloadType.CONTROL, sequence, RESET)


# -- the controller's link ---------------------------------------------------------------


@dataclass(frozen=True)
class SendDatagram:
    data: bytes


@dataclass(frozen=True)
class ReplyReceived:
    """A VISCA reply packet (``y0 ... FF``) and the sequence number it answered."""

    packet: bytes
    sequence: int


@dataclass(frozen=True)
class ReplyLost:
    """The camera ran message ``sequence`` earlier; its reply never arrived."""

    sequence: int


@dataclass(frozen=True)
class MessageRejected:
    """The camera answered ``0F 02``: it does not take this message type."""

    sequence: int


@dataclass(frozen=True)
class ResetDone:
    pass


@dataclass(frozen=True)
class ResetFailed:
    """No answer to RESET after every resend."""


LinkEvent = SendDatagram | ReplyReceived | ReplyLost | MessageRejected | ResetDone | ResetFailed


@dataclass(eq=False)
class _Outstanding:
    message: SonyIpMessage
    due: float
    sends: int = 1
    datagram: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.datagram = self.message.serialize()


class SonyIpLink:
    """Sequence numbers, RESET and resends for one camera (sans-I/O, ``now`` passed in)."""

    def __init__(self, retransmit_interval: float = 0.25, max_retransmits: int = 3) -> None:
        if retransmit_interval <= 0 or max_retransmits < 0:
            raise ValueError("retransmit interval must be positive, retransmits >= 0")
        self.retransmit_interval = retransmit_interval
        self.max_retransmits = max_retransmits
        self.next_sequence = 1
        self.resends = 0
        self._reset: _Outstanding | None = None
        self._outstanding: dict[int, _Outstanding] = {}
        self._held: deque[bytes] = deque()
        self._events: list[LinkEvent] = []

    @property
    def resetting(self) -> bool:
        return self._reset is not None

    def reset(self, now: float) -> None:
        """Send RESET; VISCA packets wait until the camera acknowledges it."""
        if self._reset is None:
            self._reset = self._emit(reset_message(self.next_sequence), now)

    def send(self, packet: bytes, now: float) -> int | None:
        """Number and send a VISCA packet; returns its sequence (None: held for RESET)."""
        if self._reset is not None:
            self._held.append(packet)
            return None
        sequence = self.next_sequence
        self.next_sequence = (sequence + 1) % SEQUENCE_MODULO
        message = SonyIpMessage(payload_type_for(packet), sequence, packet)
        self._outstanding[sequence] = self._emit(message, now)
        return sequence

    def datagram_received(self, data: bytes, now: float) -> None:
        """A datagram from the camera; ValueError if it is not a reply."""
        message = SonyIpMessage.parse(data)
        if message.payload_type is PayloadType.REPLY:
            self._outstanding.pop(message.sequence, None)
            self._events.append(ReplyReceived(message.payload, message.sequence))
        elif message.payload_type is PayloadType.CONTROL_REPLY:
            self._control_reply(message, now)
        else:
            raise ValueError(f"camera sent payload type {message.payload_type.name}, not a reply")

    def poll(self, now: float) -> list[LinkEvent]:
        """Resend what is overdue; return every event since the last poll."""
        if self._reset is not None and self._reset.due <= now:
            if self._reset.sends > self.max_retransmits:
                self._reset = None
                self._held.clear()
                self._events.append(ResetFailed())
            else:
                self._resend(self._reset, now)
        for sequence, outstanding in list(self._outstanding.items()):
            if outstanding.due <= now:
                if outstanding.sends > self.max_retransmits:
                    del self._outstanding[sequence]  # give up; the session times out
                else:
                    self._resend(outstanding, now)
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        dues = [outstanding.due for outstanding in self._outstanding.values()]
        if self._reset is not None:
            dues.append(self._reset.due)
        return min(dues) if dues else None

    def _emit(self, message: SonyIpMessage, now: float) -> _Outstanding:
        outstanding = _Outstanding(message, now + self.retransmit_interval)
        self._events.append(SendDatagram(outstanding.datagram))
        return outstanding

    def _resend(self, outstanding: _Outstanding, now: float) -> None:
        outstanding.sends += 1
        outstanding.due = now + self.retransmit_interval
        self.resends += 1
        self._events.append(SendDatagram(outstanding.datagram))

    def _control_reply(self, message: SonyIpMessage, now: float) -> None:
        if message.payload == CONTROL_ACK:
            if self._reset is not None:
                self._reset = None
                self.next_sequence = 1
                self._events.append(ResetDone())
                held, self._held = self._held, deque()
                for packet in held:
                    self.send(packet, now)
        elif message.payload == SEQUENCE_ERROR:
            outstanding = self._outstanding.pop(message.sequence, None)
            if outstanding is None:
                return
            if outstanding.sends > 1:
                self._events.append(ReplyLost(message.sequence))
            else:
                # Never sent before, so it did not run: the counters are out of step.
                self._held.appendleft(outstanding.message.payload)
                self.reset(now)
        elif message.payload == MESSAGE_TYPE_ERROR:
            if self._outstanding.pop(message.sequence, None) is not None:
                self._events.append(MessageRejected(message.sequence))
        else:
            raise ValueError(f"unknown control reply {message.payload.hex(' ')}")
