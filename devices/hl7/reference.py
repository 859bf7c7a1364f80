"""The same ORU mapping fed by python-hl7's ``hl7.parse``: a reference, not the ingest path.

``decode_oru_reference`` checks the header and decodes the bytes like ``decode_oru``,
then lets python-hl7 split the message into segments and fields (``str()`` of each
field is the field as sent) and hands them to the same ``OruReader``. Tests decode
every fixture both ways and compare; ``benchmarks/hl7_parse.py`` uses it as the
baseline (python-hl7 builds an object per field, repetition and component, which
cost most of the ingest's CPU before the reader did its own splitting).
"""

from __future__ import annotations

import hl7

from .errors import ErrorCode, Location, MessageError
from .oru import (
    MessageHeader,
    OruConfig,
    OruMessage,
    OruReader,
    _decode_text,
    check_header,
    read_header,
)
from .segments import control_character_error, has_control_characters


def python_hl7_segments(text: str) -> list[list[str]]:
    """The segments of ``text`` as python-hl7 splits them: ``[id, field 1, field 2, ...]``."""
    try:
        message = hl7.parse(text)
    except Exception:
        raise MessageError("the message cannot be parsed into segments",
                           location=Location("MSH"), code=ErrorCode.SEGMENT_SEQUENCE) from None
    return [[str(field) for field in segment] for segment in message]


def decode_oru_reference(raw: bytes, config: OruConfig | None = None,
                         header: MessageHeader | None = None) -> OruMessage:
    """``decode_oru``, with python-hl7 doing the splitting."""
    header = header if header is not None else read_header(raw)
    check_header(header)
    text = _decode_text(raw, header)
    if has_control_characters(raw):
        raise control_character_error(text, header.separators)
    return OruReader(python_hl7_segments(text), header, config or OruConfig()).read()
