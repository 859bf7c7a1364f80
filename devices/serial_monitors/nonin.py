"""Nonin pulse oximeters' ASCII output (sans-I/O): ``SPO2=XXX HR=YYY`` once per second.

9600 baud 8N1. ``XXX`` and ``YYY`` are three digits, or three dashes when the device has
no reading. Lines end in CR, LF, CR LF or LF CR; all four are accepted.

What comes out of one line:
- an SpO2 sample (``vital="spo2"``, MDC 150456, ``%``, LOINC 59408-5) and a pulse-rate
  sample (``vital="pr"``, MDC 149530, ``/min``, LOINC 8889-8), observed at the ``now``
  of the ``feed`` that completed the line;
- dashes give a sample with ``value=None``, ``status="X"`` and ``text="no-reading"``,
  so a display drops the last number as soon as the device does.

A corrupted line must never become a wrong number: a line is used only when it carries
exactly one ``SPO2=`` and one ``HR=`` field, each exactly three digits or three dashes
followed by a space or the end of the line, and the numbers are possible (SpO2 0..100,
pulse rate 0..400). Anything else (line noise, the partial line caught when the port
opens mid-line, a line longer than ``max_line``) is counted in ``discarded_lines``.
"""

from __future__ import annotations

import re
from datetime import datetime

from devices.serial_monitors.codes import PULSE_RATE, SPO2, as_utc, reading
from devices.serial_monitors.protocol import SerialProtocol
from devices.vitals import VitalSample

MAX_SPO2 = 100
MAX_PULSE_RATE = 400

_FIELD = re.compile(rb"(?<![A-Za-z0-9])(SPO2|HR)=(\d{3}|---)(?=\s|$)")
_TERMINATOR = re.compile(rb"[\r\n]")


def format_line(spo2: int | None, pulse_rate: int | None) -> bytes:
    """One line as a Nonin sends it (``None`` as dashes), for simulators and tests."""

    def field(value: int | None) -> str:
        return "---" if value is None else f"{value:03d}"

    return f"SPO2={field(spo2)} HR={field(pulse_rate)}\r\n".encode("ascii")


class NoninParser:
    def __init__(self, device_id: str, *, max_line: int = 128) -> None:
        self.device_id = device_id
        self.max_line = max_line
        self.discarded_lines = 0
        self._buffer = b""
        self._skipping = False  # inside the rest of an overlong line

    def feed(self, data: bytes, now: datetime) -> list[VitalSample]:
        at = as_utc(now)
        samples: list[VitalSample] = []
        for line in self._lines(data):
            samples.extend(self._parse_line(line, at))
        return samples

    def flush(self) -> list[VitalSample]:
        """A partial line at the end of a stream is dropped: it is not a reading."""
        if self._buffer.strip():
            self.discarded_lines += 1
        self._buffer = b""
        self._skipping = False
        return []

    def _lines(self, data: bytes) -> list[bytes]:
        parts = _TERMINATOR.split(self._buffer + data)
        self._buffer = parts.pop()
        lines: list[bytes] = []
        for part in parts:
            if self._skipping:
                self._skipping = False
            elif part:
                lines.append(part)
        if len(self._buffer) > self.max_line:
            if not self._skipping:
                self.discarded_lines += 1
            self._buffer = b""
            self._skipping = True
        return lines

    def _parse_line(self, line: bytes, at: datetime) -> list[VitalSample]:
        fields = _FIELD.findall(line)
        names = [name for name, _ in fields]
        if sorted(names) != [b"HR", b"SPO2"]:
            self.discarded_lines += 1
            return []
        values = {name: None if text == b"---" else int(text) for name, text in fields}
        spo2, pulse_rate = values[b"SPO2"], values[b"HR"]
        if (spo2 is not None and spo2 > MAX_SPO2) or (
                pulse_rate is not None and pulse_rate > MAX_PULSE_RATE):
            self.discarded_lines += 1
            return []
        return [reading(SPO2, self.device_id, at, spo2),
                reading(PULSE_RATE, self.device_id, at, pulse_rate)]


NONIN = SerialProtocol(name="nonin", baudrate=9600, parity="N", parser_factory=NoninParser)
