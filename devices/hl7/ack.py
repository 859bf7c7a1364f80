r"""Original-mode acknowledgements (ACK) for received messages, sans-I/O.

``MSH`` swaps sending and receiving application/facility, carries a new control id,
``now`` as MSH-7 and the message's own MSH-18 (the ACK is encoded in that character
set); ``MSA|<AA/AE/AR>|<MSH-10 of the message>[|reason]``; for AE/AR an ``ERR``
segment with the HL7 table 0357 code and the location (ERR-2..4 from v2.5 on,
ERR-1 before). Reasons are short, fixed texts: never data from the message.

Fields echoed from the message (MSH-3..6, MSH-9, MSH-10, MSH-11, MSH-12, MSH-18) are
made safe first: a control byte in them (0x0B, 0x1C and 0x0D would break the MLLP
frame or the segment structure of the ACK) is written as the HL7 hex escape
``\Xhh\``, so the ACK always frames correctly whatever the sender put there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from .errors import ErrorCode, Location, MessageError
from .escape import DEFAULT_SEPARATORS, Separators, escape
from .oru import MessageHeader
from .timestamp import format_timestamp

AckCode = Literal["AA", "AE", "AR"]
_OLD_ERR = re.compile(r"2\.[34](\.\d+)*")


@dataclass(frozen=True)
class Acknowledgement:
    """What to answer: the code, and for AE/AR why and where."""

    code: AckCode
    reason: str | None = None
    error_code: ErrorCode | None = None
    location: Location | None = None

    @classmethod
    def accept(cls) -> Acknowledgement:
        return cls("AA")

    @classmethod
    def for_error(cls, error: MessageError) -> Acknowledgement:
        code: AckCode = "AR" if error.ack_code == "AR" else "AE"
        return cls(code, error.reason, error.code, error.location)

    @classmethod
    def not_stored(cls) -> Acknowledgement:
        return cls("AE", "not stored", ErrorCode.INTERNAL)


@dataclass(frozen=True)
class Responder:
    """Who answers: MSH-3/MSH-4 of the ACK when the message left MSH-5/MSH-6 empty."""

    application: str = "HUIZHEN"
    facility: str = ""


def build_ack(header: MessageHeader | None, ack: Acknowledgement, *, control_id: str,
              now: datetime, responder: Responder | None = None) -> str:
    """The ACK message text (segments ended by ``\\r``) for a message's ``header``.

    ``header`` is None when the bytes were not an HL7 message: the ACK then has
    empty receiving fields and an empty MSA-2.
    """
    template = AckTemplate.for_header(header, responder)
    return template.render(ack, control_id=control_id, timestamp=format_timestamp(now))


@dataclass(frozen=True)
class AckTemplate:
    """The ACK of messages with one header (but for MSH-7 and MSH-10): the MSH around
    the time and the control id, and the echoed control id, prepared once.

    A listener keeps templates per sender, so an ACK costs a few string joins.
    """

    head: str
    """MSH up to MSH-7."""
    middle: str
    """From after MSH-7 up to MSH-10."""
    tail: str
    """From after MSH-10 to the end of MSH."""
    echoed_control_id: str
    header: MessageHeader | None

    @classmethod
    def for_header(cls, header: MessageHeader | None,
                   responder: Responder | None = None) -> AckTemplate:
        responder = responder or Responder()
        seps = header.separators if header is not None else DEFAULT_SEPARATORS
        if header is not None:
            header = safe_header(header)
        f = seps.field
        msh = [
            "MSH",
            seps.encoding_characters,
            header.receiving_application if header and header.receiving_application
            else escape(responder.application, seps),
            header.receiving_facility if header and header.receiving_facility
            else escape(responder.facility, seps),
            header.sending_application if header else "",
            header.sending_facility if header else "",
        ]
        rest = [
            header.processing_id if header and header.processing_id else "P",
            header.version if header and header.version else "2.6",
        ]
        if header is not None and header.charset:
            rest += [""] * 5 + [header.charset]
        return cls(head=f.join(msh) + f, middle=f + f.join(("", _ack_type(header, seps))) + f,
                   tail=f + f.join(rest), echoed_control_id=header.control_id if header else "",
                   header=header)

    def render(self, ack: Acknowledgement, *, control_id: str, timestamp: str,
               message_control_id: str | None = None) -> str:
        """The ACK text; ``message_control_id`` (MSA-2) replaces the template's own
        (for a template shared by the messages of one sender)."""
        header = self.header
        seps = header.separators if header is not None else DEFAULT_SEPARATORS
        f = seps.field
        msh = self.head + timestamp + self.middle + escape(control_id, seps) + self.tail
        echoed = (self.echoed_control_id if message_control_id is None
                  else safe_field(message_control_id, seps))
        msa = f"MSA{f}{ack.code}{f}{echoed}"
        if ack.reason:
            msa += f + escape(ack.reason, seps)
        if ack.code == "AA":
            return f"{msh}\r{msa}\r"
        return f"{msh}\r{msa}\r{_err(ack, header, seps)}\r"


def safe_field(text: str, seps: Separators) -> str:
    """``text`` with every control character (and DEL) as ``\\Xhh\\``: safe to echo."""
    if text.isprintable():  # the common case: nothing to do
        return text
    e = seps.escape
    return "".join(f"{e}X{ord(c):02X}{e}" if ord(c) < 0x20 or ord(c) == 0x7F else c
                   for c in text)


def safe_header(header: MessageHeader) -> MessageHeader:
    """The header with every field an ACK echoes made safe (``safe_field``)."""
    seps = header.separators
    return replace(
        header,
        sending_application=safe_field(header.sending_application, seps),
        sending_facility=safe_field(header.sending_facility, seps),
        receiving_application=safe_field(header.receiving_application, seps),
        receiving_facility=safe_field(header.receiving_facility, seps),
        message_type=safe_field(header.message_type, seps),
        control_id=safe_field(header.control_id, seps),
        processing_id=safe_field(header.processing_id, seps),
        version=safe_field(header.version, seps),
        charset=safe_field(header.charset, seps),
    )


def encode_ack(text: str, header: MessageHeader | None) -> bytes:
    """The ACK text in the message's character set (ASCII when it has none we know)."""
    codec = header.codec if header is not None and header.codec else "ascii"
    return text.encode(codec, "replace")


def _ack_type(header: MessageHeader | None, seps: Separators) -> str:
    event = header.trigger_event if header is not None else ""
    if not event:
        return "ACK"
    return seps.component.join(("ACK", escape(event, seps), "ACK"))


def _err(ack: Acknowledgement, header: MessageHeader | None, seps: Separators) -> str:
    code = ack.error_code or ErrorCode.INTERNAL
    location = ack.location
    c, s = seps.component, seps.subcomponent
    place = [location.segment, str(location.sequence), str(location.field or "")] \
        if location is not None else []
    if header is not None and _OLD_ERR.fullmatch(header.version):
        # v2.3/2.4: ERR-1 (ELD) = segment^sequence^field^code&text&HL70357
        eld = (place or ["", "", ""]) + [s.join((str(int(code)), code.text, "HL70357"))]
        return seps.field.join(("ERR", c.join(eld)))
    severity = "E"
    return seps.field.join(("ERR", "", c.join(place),
                            c.join((str(int(code)), code.text, "HL70357")), severity))
