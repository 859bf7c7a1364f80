"""ORU^R01 (IHE PCD-01), ORF^R04 and ORU^R40 (IHE PCD-04) -> samples and alarms, sans-I/O.

Two steps, so that even a message that fails can be acknowledged:

* ``read_header(raw)`` reads MSH from the raw bytes (MSH-18 decides how to decode the
  rest). It raises ``MessageRejected`` only when the bytes are not an HL7 message.
* ``decode_oru(raw, config, header)`` checks the header (message type, version,
  character set: ``MessageRejected`` -> AR), decodes the bytes by MSH-18, splits
  them with ``segments.split_segments`` (plain string splits: no tree is built) and
  maps every OBX (a malformed value, time or missing field, a control character in
  the text: ``MessageError`` with its location -> AE).

What becomes a sample: every OBX with a value type (OBX-2), including vendor codes
no table knows (kept as sent), with OBX-7 (reference range) and OBX-8 (abnormal
flags). Device/channel grouping rows (no OBX-2 and no value, e.g. ``OBX-11 = X``)
are skipped. Waveforms (``NA``) carry their samples in ``values``; a following
``MDC_ATTR_SAMP_RATE`` (or ``MDC_ATTR_TIME_PD_SAMP``) OBX whose OBX-4 sub-id is the
waveform's (or a child of it) gives ``sample_rate``. ORF^R04 is read like ORU^R01.

What becomes an alarm (``alarms.py``): a measurement whose OBX-8 is abnormal
(source ``obx-8``), and each alarm of an ORU^R40 (source ``pcd-04``; its OBX rows
are facets of alarms, not samples).

Times keep the offset the sender gave (``timezone(offset)``); a time without one is
in the zone configured for the device (``OruConfig``).

python-hl7 is not used here: ``reference.decode_oru_reference`` feeds the same
mapping from ``hl7.parse``, as an independent check of the splitting in the tests
and as the baseline of ``benchmarks/hl7_parse.py``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo

from devices.vitals import VitalAlarm, VitalSample

from . import codes
from .alarms import (
    ALARM_STATE_CODES,
    ALARM_STATE_NAMES,
    EVENT_PHASE_CODES,
    EVENT_PHASE_NAMES,
    INACTIVATION_CODES,
    INACTIVATION_NAMES,
    TEXT_VALUE_TYPES,
    AlarmFacets,
    AlarmGroups,
    flag_priority,
    is_event_code,
    sub_id_parent,
)
from .errors import ErrorCode, Location, MessageError, MessageRejected
from .escape import Separators, unescape
from .segments import control_character_error, has_control_characters, split_segments
from .timestamp import parse_timestamp

SUPPORTED_VERSION = re.compile(r"2\.([3-9])(\.\d+)*")
"""HL7 v2.3 and later (IHE PCD-01 is v2.6; many monitors still send 2.3.1 or 2.4)."""
PROCESSING_IDS = frozenset({"", "P", "D", "T"})
MESSAGE_TYPES = {"ORU": frozenset({"R01", "R40"}), "ORF": frozenset({"R04"})}
"""ORU^R01 (IHE PCD-01), ORU^R40 (IHE PCD-04 alarms) and ORF^R04 (the query response some
Philips monitors send, with the same OBX rows as ORU^R01)."""
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
        if self.separators.escape not in parts[index - 1]:
            return parts[index - 1]
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
    if msh.isascii():  # every supported character set reads ASCII bytes alike
        return naive, codes.codec_for_charset(naive), msh.decode("ascii")
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
    """``MessageRejected`` unless this is a message this receiver can read."""
    if header.codec is None:
        named = " ".join(header.charset.upper().split())
        quoted = repr(named) if named in codes.TABLE_0211 else "(not an HL7 table 0211 name)"
        raise MessageRejected(f"character set {quoted} is not supported",
                              location=Location("MSH", field=18),
                              code=ErrorCode.TABLE_VALUE_NOT_FOUND)
    events = MESSAGE_TYPES.get(header.message_code)
    if events is None:
        raise MessageRejected(
            f"message type {_quoted(header.message_code, _MESSAGE_CODE)} is not supported "
            "(ORU^R01, ORU^R40 and ORF^R04 are)",
            location=Location("MSH", field=9, component=1),
            code=ErrorCode.UNSUPPORTED_MESSAGE_TYPE)
    if header.trigger_event not in events:
        raise MessageRejected(
            f"trigger event {_quoted(header.trigger_event, _TRIGGER_EVENT)} is not supported "
            f"(only {' and '.join(sorted(events))} for {header.message_code})",
            location=Location("MSH", field=9, component=2), code=ErrorCode.UNSUPPORTED_EVENT)
    if not SUPPORTED_VERSION.fullmatch(header.version):
        raise MessageRejected(
            f"HL7 version {_quoted(header.version, _VERSION)} is not supported (2.3 or later)",
            location=Location("MSH", field=12), code=ErrorCode.UNSUPPORTED_VERSION)
    if header.component(header.processing_id, 1) not in PROCESSING_IDS:
        raise MessageRejected("processing id is not P, D or T",
                              location=Location("MSH", field=11),
                              code=ErrorCode.UNSUPPORTED_PROCESSING_ID)
    if not header.control_id:
        raise MessageRejected("message control id is missing",
                              location=Location("MSH", field=10),
                              code=ErrorCode.REQUIRED_FIELD_MISSING)


_MESSAGE_CODE = re.compile(r"[A-Z]{3}")
_TRIGGER_EVENT = re.compile(r"[A-Z][0-9A-Z]{2}")
_VERSION = re.compile(r"\d\.\d+(\.\d+)*|")
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")


def _quoted(text: str, shape: re.Pattern[str]) -> str:
    """A header code quoted in an error only when it has the shape of one: a lost segment
    terminator can run PID's values into MSH, and those must never be quoted."""
    return repr(text) if shape.fullmatch(text) else "(malformed)"


def decode_oru(raw: bytes, config: OruConfig | None = None,
               header: MessageHeader | None = None) -> OruMessage:
    """The samples and alarms of one ORU^R01 / ORF^R04 / ORU^R40 message.

    See the module docstring for the errors.
    """
    header = header if header is not None else read_header(raw)
    check_header(header)
    text = _decode_text(raw, header)
    if has_control_characters(raw):
        raise control_character_error(text, header.separators)
    return OruReader(split_segments(text, header.separators), header,
                     config or OruConfig()).read()


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
            f"in segment {segment_number} "
            f"({segment if _SEGMENT_ID.fullmatch(segment) else 'malformed id'})",
            location=Location("MSH", field=18), code=ErrorCode.DATA_TYPE) from None
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    if not text.startswith("MSH"):
        text = text.lstrip(" \t\r")  # as read_header does
    if "\rMSH" + header.separators.field in text:
        raise MessageRejected("more than one MSH segment: batches are not supported",
                              location=Location("MSH"), code=ErrorCode.SEGMENT_SEQUENCE)
    return text


class OruReader:
    """Walks the segments of one message (``split_segments`` output), in order.

    Fields are ``str``s as sent; a field is split into repetitions and components
    only when read, and unescaped only when it holds the escape character.
    """

    def __init__(self, segments: Sequence[Sequence[str]], header: MessageHeader,
                 config: OruConfig) -> None:
        self.segments = segments
        self.header = header
        self.config = config
        seps = header.separators
        self.rep, self.comp, self.sub, self.esc = (
            seps.repetition, seps.component, seps.subcomponent, seps.escape)
        self.separators = seps
        self.codec = header.codec or "ascii"
        self.is_alarm_report = header.trigger_event == "R40"  # ORU^R40 (ORF has no R40)
        self.patient_id: str | None = None
        self.sent_at = ""
        self.obr_time = ""
        self.obr_count = 0
        self.obx_count = 0
        self.samples: list[VitalSample] = []
        self.alarms: list[VitalAlarm] = []
        self.facets = AlarmGroups()
        self.waveforms: list[tuple[str, int]] = []  # (OBX-4 sub-id, index in samples)
        self.skipped = 0
        self._times: dict[tuple[str, tzinfo], datetime] = {}
        self._zones: dict[str, tzinfo] = {}
        self.device_id = header.device_id
        self.segment_name, self.segment_number = "MSH", 1

    def read(self) -> OruMessage:
        if not self.segments or self.segments[0][0] != "MSH":
            raise MessageError("the message does not start with MSH", location=Location("MSH"),
                               code=ErrorCode.SEGMENT_SEQUENCE)
        self.sent_at = self._first(self.segments[0], 7)
        for segment in self.segments:
            name = segment[0]
            if name == "OBX":
                self.obx_count += 1
                self.segment_name, self.segment_number = "OBX", self.obx_count
                self._obx(segment)
            elif name == "OBR":
                self.obr_count += 1
                self.segment_name, self.segment_number = "OBR", self.obr_count
                self.obr_time = self._first(segment, 7)
            elif name == "PID" and self.patient_id is None:
                self.segment_name, self.segment_number = "PID", 1
                self.patient_id = self._first(segment, 3) or None
        for facets in self.facets.alarms:
            if facets.has_event:
                self.alarms.append(facets.alarm(self.patient_id))
            else:
                self.skipped += len(facets.rows)
        return OruMessage(self.header, tuple(self.samples), self.skipped, tuple(self.alarms))

    # Field access: segment[n] is field n as sent; split here into repetitions and
    # components, unescaped with the message's codec (see escape.py).

    def _components(self, segment: Sequence[str], index: int) -> list[str]:
        """The components of the first repetition, unescaped (subcomponents left joined)."""
        raw = segment[index] if index < len(segment) else ""
        if self.rep in raw:
            raw = raw.partition(self.rep)[0]
        parts = raw.split(self.comp)
        if self.esc in raw:
            return [self._unescape(c, index) for c in parts]
        return parts

    def _first(self, segment: Sequence[str], index: int) -> str:
        """The first component of the first repetition, unescaped (subcomponents dropped)."""
        raw = segment[index] if index < len(segment) else ""
        if not raw:
            return ""
        raw = raw.partition(self.rep)[0].partition(self.comp)[0].partition(self.sub)[0]
        return self._unescape(raw, index) if self.esc in raw else raw

    def _repetitions(self, segment: Sequence[str], index: int) -> list[str]:
        """The first component of every non-empty repetition, unescaped (OBX-8)."""
        raw = segment[index] if index < len(segment) else ""
        if not raw:
            return []
        out = []
        for rep in raw.split(self.rep):
            text = rep.partition(self.comp)[0].partition(self.sub)[0]
            if self.esc in text:
                text = self._unescape(text, index)
            text = text.strip()
            if text:
                out.append(text)
        return out

    def _unescape(self, text: str, index: int) -> str:
        """``text`` of field ``index`` of the current segment, escapes resolved."""
        try:
            return unescape(text, self.separators, self.codec)
        except ValueError as exc:
            raise MessageError(str(exc), location=self._at(index)) from None

    def _at(self, field_number: int) -> Location:
        """Field ``field_number`` of the segment being read (built only for errors)."""
        return Location(self.segment_name, self.segment_number, field_number)

    def _obx(self, obx: Sequence[str]) -> None:
        size = len(obx)
        value_type = self._first(obx, 2).strip().upper()
        raw_value = obx[5] if size > 5 else ""
        if not value_type:
            if raw_value == "":
                if self.is_alarm_report and size > 3 and obx[3]:
                    self._alarm_row(obx, "", None)  # e.g. an event row without a value
                    return
                self.skipped += 1  # a device/channel grouping row
                return
            raise MessageError("value type missing for a valued observation",
                               location=self._at(2), code=ErrorCode.REQUIRED_FIELD_MISSING)
        if self.is_alarm_report:
            self._alarm_row(obx, value_type, raw_value)
            return
        raw_ident = obx[3] if size > 3 else ""
        raw_unit = obx[6] if size > 6 else ""
        esc = self.esc
        if esc in raw_ident or esc in raw_unit:
            ident = _pad(self._components(obx, 3), 6)
            code, name, system = ident[0].strip(), ident[1].strip(), ident[2].strip()
            known = codes.lookup_observation(code, system, name)
            loinc = (known.loinc if known else None) or _alternate_loinc(ident, system, code)
            vital = known.vital if known else None
            unit, unit_later = None, True
        else:  # the usual case: what OBX-3 and OBX-6 mean is looked up once per sender
            code, name, system, loinc, vital, unit = _observation(raw_ident, raw_unit,
                                                                  self.rep, self.comp)
            unit_later = False
        if not code and not name:
            raise MessageError("observation identifier missing", location=self._at(3),
                               code=ErrorCode.REQUIRED_FIELD_MISSING)
        sub_id = obx[4].strip() if size > 4 else ""
        if value_type == "NM" and self._is_sample_rate_of_waveform(obx, code, name, sub_id):
            return
        if unit_later:  # read here, as before the lookup was memoised: same errors
            unit = self._unit(obx)
        device_id = self._device_id(obx)
        reference_range = self._unescape(obx[7], 7).strip() if size > 7 and obx[7] else ""
        flags = tuple(self._repetitions(obx, 8)) if size > 8 and obx[8] else ()
        value, values, text = self._value(value_type, raw_value)
        sample = VitalSample(
            device_id=device_id,
            code=code,
            code_system=system,
            name=name,
            observed_at=self._observed_at(obx, device_id),
            status=self._first(obx, 11).strip(),
            unit=unit,
            loinc=loinc,
            vital=vital,
            patient_id=self.patient_id,
            reference_range=reference_range or None,
            abnormal_flags=flags,
            value=value,
            values=values,
            text=text,
        )
        if sample.values is not None:
            self.waveforms.append((sub_id, len(self.samples)))
        self.samples.append(sample)
        if flags:
            priority = flag_priority(flags)
            if priority is not None:
                self.alarms.append(VitalAlarm(
                    device_id=device_id, code=code, name=name, priority=priority,
                    state="active", observed_at=sample.observed_at, source="obx-8",
                    vital=sample.vital, text=None, flags=flags, patient_id=self.patient_id))

    def _alarm_row(self, obx: Sequence[str], value_type: str, raw_value: str | None) -> None:
        """One OBX of an ORU^R40: a facet of one alarm (see alarms.py)."""
        ident = _pad(self._components(obx, 3), 3)
        code, name, system = ident[0].strip(), ident[1].strip(), ident[2].strip()
        if not code and not name:
            raise MessageError("observation identifier missing", location=self._at(3),
                               code=ErrorCode.REQUIRED_FIELD_MISSING)
        parent = sub_id_parent(obx[4].strip() if len(obx) > 4 else "")
        flags = tuple(self._repetitions(obx, 8))
        is_event = is_event_code(code, name, flags)
        facets = self.facets.find(self.obr_count, parent, is_event)
        facets.rows.append(self.obx_count)
        value = self._unescape(raw_value, 5).strip() if raw_value else ""
        if name in EVENT_PHASE_NAMES or code in EVENT_PHASE_CODES:
            facets.phase = value
        elif name in ALARM_STATE_NAMES or code in ALARM_STATE_CODES:
            facets.state = value
        elif name in INACTIVATION_NAMES or code in INACTIVATION_CODES:
            facets.inactivation = value
        elif is_event and not facets.has_event:
            device_id = self._device_id(obx)
            facets.event_code, facets.event_name, facets.flags = code, name, flags
            facets.device_id = device_id
            facets.observed_at = self._observed_at(obx, device_id)
            if value_type in TEXT_VALUE_TYPES or self.comp not in value:
                facets.text = value or None
            else:  # CWE: the source of the alarm
                self._alarm_source(facets, value.split(self.comp))
        else:
            self._alarm_source(facets, [code, name, system])

    def _alarm_source(self, facets: AlarmFacets, ident: list[str]) -> None:
        """The measurement an alarm is about (its source facet, or a CWE event value)."""
        code, name, system = (_pad(ident, 3)[i].strip() for i in range(3))
        known = codes.lookup_observation(code, system, name)
        if known is not None:
            facets.source_vital = known.vital
        facets.source_name = facets.source_name or name

    def _value(self, value_type: str,
               raw: str) -> tuple[float | None, tuple[float, ...] | None, str | None]:
        """(value, values, text) of OBX-5 by its value type."""
        if value_type == "NM":
            text = (self._unescape(raw, 5) if self.esc in raw else raw).strip()
            return (self._number(text, 5, "value type NM") if text else None), None, None
        if value_type == "NA":
            return None, self._numeric_array(raw), None
        # ST, TX, FT, CWE, SN, ...: the value as sent, escapes resolved (components of
        # coded values stay joined by the component separator, e.g. "0^Sinus^MDC").
        text = self._unescape(raw, 5)
        return None, None, (text if text != "" else None)

    def _numeric_array(self, raw: str) -> tuple[float, ...]:
        """NA: numbers separated by components (and repetitions, flattened in order)."""
        if not raw:
            return ()
        seps = self.separators
        if seps.escape not in raw:
            flat = raw.replace(seps.repetition, seps.component)
            if _all_numbers(flat, seps.component):  # the fast path for long waveforms
                numbers = tuple(map(float, flat.split(seps.component)))
                if all(map(math.isfinite, numbers)):
                    return numbers
        values: list[float] = []
        for rep in raw.split(seps.repetition):
            for i, part in enumerate(rep.split(seps.component), len(values) + 1):
                values.append(self._number(self._unescape(part, 5).strip(), 5,
                                           f"waveform sample {i}"))
        return tuple(values)

    def _number(self, text: str, index: int, what: str) -> float:
        if _NM.fullmatch(text):
            number = float(text)
            if math.isfinite(number):
                return number
        return _number(text, self._at(index), what)

    def _device_id(self, obx: Sequence[str]) -> str:
        """OBX-18 (EI): the repetition marked EUI-64, else the first; else MSH-3."""
        raw = obx[18] if len(obx) > 18 else ""
        if not raw:
            return self.device_id
        if self.rep not in raw and self.esc not in raw and self.sub not in raw:
            parts = raw.split(self.comp)  # the usual single EI: no unescaping needed
            ident = parts[0] or (parts[2] if len(parts) > 2 else "")
            return ident or self.device_id
        candidates = []
        for rep in raw.split(self.rep):
            parts = _pad([self._unescape(c, 18) for c in rep.split(self.comp)], 4)
            ident = parts[0] or parts[2]
            if ident:
                candidates.append((parts[1].upper() == "EUI-64" or parts[3].upper() == "EUI-64",
                                   ident))
        marked = [ident for is_eui, ident in candidates if is_eui]
        if marked:
            return marked[0]
        return candidates[0][1] if candidates else self.device_id

    def _unit(self, obx: Sequence[str]) -> str | None:
        if len(obx) <= 6 or not obx[6]:
            return None
        parts = _pad(self._components(obx, 6), 3)
        code, name, system = parts[0].strip(), parts[1].strip(), parts[2].strip()
        return codes.ucum_unit(code, name, system) or name or code or None

    def _observed_at(self, obx: Sequence[str], device_id: str) -> datetime:
        """OBX-14, else OBR-7, else MSH-7: with the sender's offset, else the device's zone."""
        zone = self._zones.get(device_id)
        if zone is None:
            zone = self._zones[device_id] = self.config.zone_for(device_id, self.device_id)
        for text, where in ((self._first(obx, 14), 0), (self.obr_time, 1), (self.sent_at, 2)):
            if text and not text.isspace():
                known = self._times.get((text, zone))
                if known is not None:
                    return known
                try:
                    moment = parse_timestamp(text, zone)
                except ValueError as exc:
                    location = (self._at(14), Location("OBR", max(self.obr_count, 1), 7),
                                Location("MSH", field=7))[where]
                    raise MessageError(str(exc), location=location) from None
                self._times[(text, zone)] = moment
                return moment
        raise MessageError("no observation time (OBX-14, OBR-7 and MSH-7 are empty)",
                           location=self._at(14), code=ErrorCode.REQUIRED_FIELD_MISSING)

    def _is_sample_rate_of_waveform(self, obx: Sequence[str], code: str, name: str,
                                    sub_id: str) -> bool:
        """Attach a sample-rate facet to its waveform; False when it is not one."""
        is_rate = name in codes.SAMPLE_RATE_NAMES
        is_period = name in codes.SAMPLE_PERIOD_NAMES or code in codes.SAMPLE_PERIOD_CODES
        if not (is_rate or is_period) or not self.waveforms:
            return False
        target = next((index for wave_sub_id, index in reversed(self.waveforms)
                       if not sub_id or sub_id == wave_sub_id
                       or sub_id.startswith(wave_sub_id + ".")), None)
        text = self._first(obx, 5).strip()
        if target is None or not text:
            return False
        number = self._number(text, 5, "value type NM")
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


@functools.lru_cache(maxsize=4096)
def _observation(raw_ident: str, raw_unit: str, rep: str, comp: str
                 ) -> tuple[str, str, str, str | None, str | None, str | None]:
    """(code, name, system, LOINC, vital, unit) of OBX-3 and OBX-6 holding no escape.

    A pure function of its arguments, memoised: a monitor sends the same few
    identifiers in every message, and looking one up costs more than the rest of the
    row. Bounded (least recently used entries go)."""
    ident = _pad(raw_ident.partition(rep)[0].split(comp), 6)
    code, name, system = ident[0].strip(), ident[1].strip(), ident[2].strip()
    known = codes.lookup_observation(code, system, name)
    loinc = (known.loinc if known else None) or _alternate_loinc(ident, system, code)
    unit = None
    if raw_unit:
        parts = _pad(raw_unit.partition(rep)[0].split(comp), 3)
        u_code, u_name, u_system = parts[0].strip(), parts[1].strip(), parts[2].strip()
        unit = codes.ucum_unit(u_code, u_name, u_system) or u_name or u_code or None
    return code, name, system, loinc, known.vital if known else None, unit


def _pad(parts: list[str], count: int) -> list[str]:
    return parts + [""] * (count - len(parts))


def _number(text: str, location: Location, what: str) -> float:
    if not _NM.fullmatch(text):
        raise MessageError(f"not a number ({what})", location=location)
    number = float(text)
    if not math.isfinite(number):
        raise MessageError(f"number out of range ({what})", location=location)
    return number


def _alternate_loinc(ident: list[str], system: str, code: str) -> str | None:
    """A LOINC code given by the sender: OBX-3 in LN, or its alternate identifier."""
    if system.upper() == "LN" and code:
        return code
    if ident[5].strip().upper() == "LN" and ident[3].strip():
        return ident[3].strip()
    return None
