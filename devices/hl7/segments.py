"""Splitting a decoded HL7 v2 message into segments and fields: plain ``str.split``.

The reader of the ingest path needs a handful of fields of a few segments, so it does
not build a tree (python-hl7 builds one object per field, repetition and component
of every segment, which cost most of the ingest's CPU). ``split_segments`` returns
one ``list[str]`` per segment, the fields as sent (escapes not resolved); the caller
splits the few fields it reads into repetitions and components.

Numbering follows the standard (and python-hl7): ``segment[n]`` is field n, the
segment id is ``segment[0]``; for MSH, ``segment[1]`` is the field separator and
``segment[2]`` the encoding characters, so MSH-7 is ``segment[7]`` too.

What is refused (``MessageError`` with the segment and field): control characters
other than tab inside the text (MLLP's 0x0B/0x1C, NUL, ...: HL7 text must escape
them; ``has_control_characters`` checks the raw bytes, ``control_character_error``
locates the first one) and segments with more than ``MAX_FIELDS`` fields.
"""

from __future__ import annotations

import re

from .errors import ErrorCode, Location, MessageError
from .escape import Separators

MAX_FIELDS = 256
"""No standard segment has more than ~50 fields; this bounds hostile input early."""

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_BYTES = bytes(c for c in [*range(0x20), 0x7F] if c not in (0x09, 0x0A, 0x0D))
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")

Segment = list[str]


def has_control_characters(raw: bytes) -> bool:
    """Whether the raw message holds a control byte other than tab, CR and LF.

    Valid on the raw bytes for every supported character set: none of them uses bytes
    below 0x20 or 0x7F inside a multi-byte character.
    """
    return len(raw.translate(None, _CONTROL_BYTES)) != len(raw)


def control_character_error(text: str, separators: Separators) -> MessageError:
    """The error for the first control character of ``text`` (segment and field)."""
    control = _CONTROL.search(text)
    if control is None:
        return MessageError("control character inside the message text",
                            location=Location("MSH"), code=ErrorCode.DATA_TYPE)
    return MessageError(
        f"control character 0x{ord(control.group()):02X} inside the message text "
        "(it must be escaped)",
        location=_location_of(text, control.start(), separators), code=ErrorCode.DATA_TYPE)


def split_segments(text: str, separators: Separators) -> list[Segment]:
    """The segments of ``text`` (segments ended by ``\\r``; empty lines skipped).

    The caller checks for control characters first (``has_control_characters``).
    """
    field = separators.field
    segments: list[Segment] = []
    for line in text.split("\r"):
        if not line:
            continue
        fields = line.split(field)
        if len(fields) > MAX_FIELDS:
            raise MessageError(f"segment has {len(fields) - 1} fields (at most "
                               f"{MAX_FIELDS - 1} are read)",
                               location=Location(_segment_name(fields[0]),
                                                 _occurrence(segments, fields[0]) + 1),
                               code=ErrorCode.SEGMENT_SEQUENCE)
        if fields[0] == "MSH":
            fields.insert(1, field)
        segments.append(fields)
    return segments


def _segment_name(name: str) -> str:
    """A segment id safe to quote in an error: three letters/digits, else ``???``."""
    return name if _SEGMENT_ID.fullmatch(name) else "???"


def _occurrence(segments: list[Segment], name: str) -> int:
    return sum(1 for segment in segments if segment[0] == name)


def _location_of(text: str, position: int, separators: Separators) -> Location:
    """The segment (and its occurrence) and field number at ``position`` of ``text``."""
    start = text.rfind("\r", 0, position) + 1
    line = text[start:position]
    name = line.split(separators.field, 1)[0] if separators.field in line else line
    before = text[:start].split("\r")
    occurrence = sum(1 for other in before if other.split(separators.field, 1)[0] == name)
    field_number = line.count(separators.field)
    if name == "MSH":
        field_number += 1
    if separators.field not in line:
        return Location(_segment_name(name[:3]), occurrence + 1)
    return Location(_segment_name(name), occurrence + 1, field_number)
