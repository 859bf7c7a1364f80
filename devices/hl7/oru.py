"""ORU^R01 (IHE PCD-01) -> ``VitalSample``s, sans-I/O.

Two steps, so that even a message that fails can be acknowledged:

* ``read_header(raw)`` reads MSH from the raw bytes (MSH-18 decides how to decode the
  rest). It raises ``MessageRejected`` only when the bytes are not an HL7 message.
* ``decode_oru(raw, header, config)`` checks the header (message type, version,
  character set: ``MessageRejected`` -> AR), decodes the bytes by MSH-18, parses
  them with python-hl7 and maps every OBX to a sample (a malformed value, time or
  missing field: ``MessageError`` -> AE).

What becomes a sample: every OBX with a value type (OBX-2), including vendor codes
no table knows (kept as sent). Device/channel grouping rows (no OBX-2 and no value,
e.g. ``OBX-11 = X``) are skipped. Waveforms (``NA``) carry their samples in
``values``; a following ``MDC_ATTR_SAMP_RATE`` (or ``MDC_ATTR_TIME_PD_SAMP``) OBX
whose OBX-4 sub-id is the waveform's (or a child of it) gives ``sample_rate``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any

import hl7

from devices.vitals import VitalAlarm, VitalSample

from . import codes
from .errors import ErrorCode, Location, MessageError, MessageRejected
from .escape import Separators, unescape
from .timestamp import parse_timestamp

SUPPORTED_VERSION = re.compile(r"2\.([3-9])(\.\d+)*")
"""HL7 v2.3 and later (IHE PCD-01 is v2.6; many monitors still send 2.3.1 or 2.4)."""
PROCESSING_IDS = frozenset({"", "P", "D", "T"})
_WHITESPACE = b" \t\r\n"
_NM = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


@dataclass(frozen=True)
class MessageHeader:
    """MSH, read from the raw bytes. Text fields are as sent (escapes not resolved)."""

    separators: Separators
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    sent_at: str
    message_type: str
    control_id: str
    processing_id: str
    version: str
    charset: str
    """MSH-18 (first repetition) as sent; "" means ASCII."""
    codec: str | None
    """The Python codec for ``charset``; None when it is not supported."""

    def component(self, text: str, index: int) -> str:
        """Component ``index`` (1-based) of a header field, unescaped."""
        parts = text.split(self.separators.repetition, 1)[0].split(self.separators.component)
        if index > len(parts):
            return ""
        try:
            return unescape(parts[index - 1], self.separators, self.codec or "ascii")
        except ValueError:
            return parts[index - 1]

    @property
    def message_code(self) -> str:
        return self.component(self.message_type, 1)

    @property
    def trigger_event(self) -> str:
        return self.component(self.message_type, 2)

    @property
    def device_id(self) -> str:
        """The sender from MSH-3 (HD): its universal id (an EUI-64) or its namespace id."""
        return (self.component(self.sending_application, 2)
                or self.component(self.sending_application, 1))


@dataclass(frozen=True)
class OruConfig:
    """How to read messages: the time zone of senders that give times without one."""

    default_zone: tzinfo = UTC
    device_zones: Mapping[str, tzinfo] = field(default_factory=dict)
    """Zone per device id (the OBX-18 EUI-64, or the MSH-3 device id of a gateway)."""

    def zone_for(self, *device_ids: str) -> tzinfo:
        for device_id in device_ids:
            if device_id in self.device_zones:
                return self.device_zones[device_id]
        return self.default_zone


@dataclass(frozen=True)
class OruMessage:
    header: MessageHeader
    samples: tuple[VitalSample, ...]
    skipped: int
    """OBX rows that are not measurements (grouping rows)."""
    alarms: tuple[VitalAlarm, ...] = ()
    """Alarms of an ORU^R40 message, and measurements whose OBX-8 flags are abnormal."""


def read_header(raw: bytes) -> MessageHeader:
    """MSH of a raw message; ``MessageRejected`` if the bytes are not an HL7 message."""
    data = raw.lstrip(_WHITESPACE)
    if not data.startswith(b"MSH"):
        if data[:3] in (b"FHS", b"BHS"):
            raise MessageRejected("HL7 batches and files are not supported",
                                  location=Location("MSH"), code=ErrorCode.SEGMENT_SEQUENCE)
        raise MessageRejected("not an HL7 message (it does not start with MSH)",
                              location=Location("MSH"), code=ErrorCode.SEGMENT_SEQUENCE)
    end = min((i for i in (data.find(b"\r"), data.find(b"\n")) if i >= 0), default=len(data))
    msh = data[:end]
    if len(msh) < 8:
        raise MessageRejected("MSH segment is too short", location=Location("MSH"),
                              code=ErrorCode.SEGMENT_SEQUENCE)
    fields = msh.split(msh[3:4])
    try:
        separators = Separators.from_msh(chr(msh[3]), fields[1].decode("ascii"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageRejected(str(exc) if isinstance(exc, ValueError) else
                              "MSH-2 encoding characters are not ASCII",
                              location=Location("MSH", field=2),
                              code=ErrorCode.DATA_TYPE) from None
    charset, codec, decoded = _sniff_charset(msh, separators)
    text = _pad(decoded.split(separators.field) if decoded is not None
                else [_ascii(f) for f in fields], 18)
    return MessageHeader(
        separators=separators,
        sending_application=text[2],
        sending_facility=text[3],
        receiving_application=text[4],
        receiving_facility=text[5],
        sent_at=text[6],
        message_type=text[8],
        control_id=text[9].strip(),
        processing_id=text[10].strip(),
        version=text[11].split(separators.component, 1)[0].strip(),
        charset=charset,
        codec=codec,
    )


def _ascii(data: bytes) -> str:
    return data.decode("ascii", "replace")


_MULTIBYTE_CODECS = ("utf-8", "gb18030", "big5", "euc_kr")


def _sniff_charset(msh: bytes, separators: Separators) -> tuple[str, str | None, str | None]:
    """MSH-18 of the raw MSH segment: (charset as sent, its codec, MSH decoded by it).

    The bytes are split at ``|`` first; but in GB 18030 or Big5 a character's second
    byte may be ``|`` (東 is 0x96 0x7C), so the guess counts only if the MSH segment,
    decoded with that guess, names the same character set in MSH-18. Otherwise each
    multi-byte codec is tried the same way.
    """
    raw_charset = msh.split(separators.field.encode())[17:18] or [b""]
    naive = _charset_field(_ascii(raw_charset[0]), separators)
    guesses = [codes.codec_for_charset(naive), *_MULTIBYTE_CODECS]
    for codec in dict.fromkeys(g for g in guesses if g is not None):
        try:
            decoded = msh.decode(codec)
        except UnicodeDecodeError:
            continue
        charset = _charset_field((decoded.split(separators.field)[17:18] or [""])[0],
                                 separators)
        if codes.codec_for_charset(charset) == codec:
            return charset, codec, decoded
    return naive, codes.codec_for_charset(naive), None


def _charset_field(text: str, separators: Separators) -> str:
    """The first repetition of MSH-18 (later ones name code extensions)."""
    return text.split(separators.repetition, 1)[0].strip()


def check_header(header: MessageHeader) -> None:
    """``MessageRejected`` unless this is an ORU^R01 this receiver can read."""
    if header.codec is None:
        raise MessageRejected(f"character set {_printable(header.charset)!r} is not supported",
                              location=Location("MSH", field=18),
                              code=ErrorCode.TABLE_VALUE_NOT_FOUND)
    if header.message_code != "ORU":
        raise MessageRejected(
            f"message type {_printable(header.message_code)!r} is not supported (only ORU^R01)",
            location=Location("MSH", field=9, component=1),
            code=ErrorCode.UNSUPPORTED_MESSAGE_TYPE)
    if header.trigger_event != "R01":
        raise MessageRejected(
            f"trigger event {_printable(header.trigger_event)!r} is not supported (only R01)",
            location=Location("MSH", field=9, component=2), code=ErrorCode.UNSUPPORTED_EVENT)
    if not SUPPORTED_VERSION.fullmatch(header.version):
        raise MessageRejected(
            f"HL7 version {_printable(header.version)!r} is not supported (2.3 or later)",
            location=Location("MSH", field=12), code=ErrorCode.UNSUPPORTED_VERSION)
    if header.component(header.processing_id, 1) not in PROCESSING_IDS:
        raise MessageRejected("processing id is not P, D or T",
                              location=Location("MSH", field=11),
                              code=ErrorCode.UNSUPPORTED_PROCESSING_ID)
    if not header.control_id:
        raise MessageRejected("message control id is missing",
                              location=Location("MSH", field=10),
                              code=ErrorCode.REQUIRED_FIELD_MISSING)


def _printable(text: str, limit: int = 24) -> str:
    """A header value made safe to quote in an error (header codes are not patient data)."""
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text[:limit])


def decode_oru(raw: bytes, config: OruConfig | None = None,
               header: MessageHeader | None = None) -> OruMessage:
    """The samples of one ORU^R01 message (see the module docstring for the errors)."""
    header = header if header is not None else read_header(raw)
    check_header(header)
    assert header.codec is not None
    text = _decode_text(raw, header)
    try:
        message = hl7.parse(text)
    except Exception:
        raise MessageError("the message cannot be parsed into segments",
                           code=ErrorCode.SEGMENT_SEQUENCE) from None
    return _Reader(message, header, config or OruConfig()).read()


def _decode_text(raw: bytes, header: MessageHeader) -> str:
    codec = header.codec or "ascii"
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        segment_number = raw.count(b"\r", 0, exc.start) + 1
        line_start = raw.rfind(b"\r", 0, exc.start) + 1
        segment = _ascii(raw[line_start:line_start + 3])
        raise MessageError(
            f"bytes that are not valid {header.charset or 'ASCII'} (MSH-18) "
            f"in segment {segment_number} ({_printable(segment, 3)})",
            location=Location("MSH", field=18), code=ErrorCode.DATA_TYPE) from None
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    if text.count("\rMSH" + header.separators.field) > 0:
        raise MessageRejected("more than one MSH segment: batches are not supported",
                              location=Location("MSH"), code=ErrorCode.SEGMENT_SEQUENCE)
    return text


class _Reader:
    """Walks the segments of one parsed message, in order."""

    def __init__(self, message: Any, header: MessageHeader, config: OruConfig) -> None:
        self.message = message
        self.header = header
        self.config = config
        self.separators = header.separators
        self.codec = header.codec or "ascii"
        self.patient_id: str | None = None
        self.sent_at = ""
        self.obr_time = ""
        self.obr_count = 0
        self.obx_count = 0
        self.samples: list[VitalSample] = []
        self.waveforms: list[tuple[str, int]] = []  # (OBX-4 sub-id, index in samples)
        self.skipped = 0

    def read(self) -> OruMessage:
        msh = self.message[0]
        self.sent_at = self._first(msh, 7, Location("MSH", field=7))
        for segment in self.message:
            name = str(segment[0])
            if name == "PID" and self.patient_id is None:
                self.patient_id = self._first(segment, 3, Location("PID", field=3)) or None
            elif name == "OBR":
                self.obr_count += 1
                self.obr_time = self._first(segment, 7, Location("OBR", self.obr_count, 7))
            elif name == "OBX":
                self.obx_count += 1
                self._obx(segment)
        return OruMessage(self.header, tuple(self.samples), self.skipped)

    # Field access: python-hl7 splits the segments and fields (segment[n] is field n,
    # MSH-n too); str() of a field is the field as sent, which is split into repetitions
    # and components here and unescaped with the message's codec (see escape.py).

    def _raw(self, segment: Any, index: int) -> str:
        return str(segment[index]) if index < len(segment) else ""

    def _raw_components(self, segment: Any, index: int, repetition: int = 0) -> list[str]:
        reps = self._raw(segment, index).split(self.separators.repetition)
        if repetition >= len(reps):
            return []
        return reps[repetition].split(self.separators.component)

    def _components(self, segment: Any, index: int, location: Location,
                    repetition: int = 0) -> list[str]:
        """The components of one repetition, unescaped (subcomponents left joined)."""
        return [self._unescape(c, location)
                for c in self._raw_components(segment, index, repetition)]

    def _first(self, segment: Any, index: int, location: Location) -> str:
        """The first component of the first repetition, unescaped (subcomponents dropped)."""
        parts = self._raw_components(segment, index)
        if not parts:
            return ""
        return self._unescape(parts[0].split(self.separators.subcomponent, 1)[0], location)

    def _unescape(self, text: str, location: Location) -> str:
        try:
            return unescape(text, self.separators, self.codec)
        except ValueError as exc:
            raise MessageError(str(exc), location=location) from None

    def _at(self, field_number: int) -> Location:
        return Location("OBX", self.obx_count, field_number)

    def _obx(self, obx: Any) -> None:
        value_type = self._first(obx, 2, self._at(2)).strip().upper()
        raw_value = self._raw(obx, 5)
        if not value_type:
            if raw_value == "":
                self.skipped += 1  # a device/channel grouping row
                return
            raise MessageError("value type missing for a valued observation",
                               location=self._at(2), code=ErrorCode.REQUIRED_FIELD_MISSING)
        ident = _pad(self._components(obx, 3, self._at(3)), 6)
        code, name, system = ident[0].strip(), ident[1].strip(), ident[2].strip()
        if not code and not name:
            raise MessageError("observation identifier missing", location=self._at(3),
                               code=ErrorCode.REQUIRED_FIELD_MISSING)
        sub_id = self._raw(obx, 4).strip()
        if value_type == "NM" and self._is_sample_rate_of_waveform(obx, code, name, sub_id):
            return
        known = codes.lookup_observation(code, system, name)
        device_id = self._device_id(obx)
        sample = VitalSample(
            device_id=device_id,
            code=code,
            code_system=system,
            name=name,
            observed_at=self._observed_at(obx, device_id),
            status=self._first(obx, 11, self._at(11)).strip(),
            unit=self._unit(obx),
            loinc=(known.loinc if known else None) or _alternate_loinc(ident, system, code),
            vital=known.vital if known else None,
            patient_id=self.patient_id,
            **self._value(value_type, raw_value),
        )
        if sample.values is not None:
            self.waveforms.append((sub_id, len(self.samples)))
        self.samples.append(sample)

    def _value(self, value_type: str, raw: str) -> dict[str, Any]:
        location = self._at(5)
        if value_type == "NM":
            text = self._unescape(raw, location).strip()
            return {"value": _number(text, location, "value type NM") if text else None}
        if value_type == "NA":
            return {"values": self._numeric_array(raw, location)}
        # ST, TX, FT, CWE, SN, ...: the value as sent, escapes resolved (components of
        # coded values stay joined by the component separator, e.g. "0^Sinus^MDC").
        text = self._unescape(raw, location)
        return {"text": text if text != "" else None}

    def _numeric_array(self, raw: str, location: Location) -> tuple[float, ...]:
        """NA: numbers separated by components (and repetitions, flattened in order)."""
        if not raw:
            return ()
        seps = self.separators
        if seps.escape not in raw:
            flat = raw.replace(seps.repetition, seps.component)
            if _all_numbers(flat, seps.component):  # the fast path for long waveforms
                return tuple(map(float, flat.split(seps.component)))
        values: list[float] = []
        for rep in raw.split(seps.repetition):
            for i, part in enumerate(rep.split(seps.component), len(values) + 1):
                values.append(_number(self._unescape(part, location).strip(), location,
                                      f"waveform sample {i}"))
        return tuple(values)

    def _device_id(self, obx: Any) -> str:
        """OBX-18 (EI): the repetition marked EUI-64, else the first; else MSH-3."""
        candidates = []
        raw = self._raw(obx, 18)
        for rep in range(raw.count(self.separators.repetition) + 1 if raw else 0):
            parts = _pad(self._components(obx, 18, self._at(18), rep), 4)
            ident = parts[0] or parts[2]
            if ident:
                candidates.append((parts[1].upper() == "EUI-64" or parts[3].upper() == "EUI-64",
                                   ident))
        marked = [ident for is_eui, ident in candidates if is_eui]
        if marked:
            return marked[0]
        return candidates[0][1] if candidates else self.header.device_id

    def _unit(self, obx: Any) -> str | None:
        parts = _pad(self._components(obx, 6, self._at(6)), 3)
        code, name, system = parts[0].strip(), parts[1].strip(), parts[2].strip()
        return codes.ucum_unit(code, name, system) or name or code or None

    def _observed_at(self, obx: Any, device_id: str) -> datetime:
        zone = self.config.zone_for(device_id, self.header.device_id)
        choices = ((self._first(obx, 14, self._at(14)), self._at(14)),
                   (self.obr_time, Location("OBR", max(self.obr_count, 1), 7)),
                   (self.sent_at, Location("MSH", field=7)))
        for text, location in choices:
            if text.strip():
                try:
                    return parse_timestamp(text, zone)
                except ValueError as exc:
                    raise MessageError(str(exc), location=location) from None
        raise MessageError("no observation time (OBX-14, OBR-7 and MSH-7 are empty)",
                           location=self._at(14), code=ErrorCode.REQUIRED_FIELD_MISSING)

    def _is_sample_rate_of_waveform(self, obx: Any, code: str, name: str, sub_id: str) -> bool:
        """Attach a sample-rate facet to its waveform; False when it is not one."""
        is_rate = name in codes.SAMPLE_RATE_NAMES
        is_period = name in codes.SAMPLE_PERIOD_NAMES or code in codes.SAMPLE_PERIOD_CODES
        if not (is_rate or is_period) or not self.waveforms:
            return False
        target = next((index for wave_sub_id, index in reversed(self.waveforms)
                       if not sub_id or sub_id == wave_sub_id
                       or sub_id.startswith(wave_sub_id + ".")), None)
        text = self._first(obx, 5, self._at(5)).strip()
        if target is None or not text:
            return False
        number = _number(text, self._at(5), "value type NM")
        unit = self._unit(obx)
        if is_rate:
            scale = codes.RATE_UNITS_PER_SECOND.get(unit or "/s")
            rate = None if scale is None else number * scale
        else:
            scale = codes.PERIOD_UNITS_SECONDS.get(unit or "s")
            rate = None if scale is None or number == 0 else 1.0 / (number * scale)
        if rate is None:
            return False
        if not rate > 0:
            raise MessageError("sample rate must be positive", location=self._at(5))
        self.samples[target] = replace(self.samples[target], sample_rate=rate)
        return True


_NM_TEXT = r"[+-]?(?:\d+\.?\d*|\.\d+)"
_NUMBER_LISTS: dict[str, re.Pattern[str]] = {}


def _all_numbers(text: str, separator: str) -> bool:
    pattern = _NUMBER_LISTS.get(separator)
    if pattern is None:
        pattern = re.compile(f"{_NM_TEXT}(?:{re.escape(separator)}{_NM_TEXT})*")
        _NUMBER_LISTS[separator] = pattern
    return pattern.fullmatch(text) is not None


def _pad(parts: list[str], count: int) -> list[str]:
    return parts + [""] * (count - len(parts))


def _number(text: str, location: Location, what: str) -> float:
    if not _NM.fullmatch(text):
        raise MessageError(f"not a number ({what})", location=location)
    return float(text)


def _alternate_loinc(ident: list[str], system: str, code: str) -> str | None:
    """A LOINC code given by the sender: OBX-3 in LN, or its alternate identifier."""
    if system.upper() == "LN" and code:
        return code
    if ident[5].strip().upper() == "LN" and ident[3].strip():
        return ident[3].strip()
    return None
