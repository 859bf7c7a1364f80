"""Serial pulse oximeters: Nonin (ASCII lines) and Contec CMS50D+ (5-byte packets).

``nonin`` and ``cms50d`` are sans-I/O parsers (bytes in, ``VitalSample``s out, ``now``
passed in); ``SerialMonitor`` (``reader``) is the thin asyncio shell that opens the port,
feeds the parser, delivers to a ``SampleSink`` and reconnects when the device comes back.
``simulator`` puts simulated devices on ptys for demos and tests.

Readings are coded in IEEE 11073 MDC (``code_system="MDC"``), like HL7 feeds: SpO2
150456 (``%``, LOINC 59408-5), pulse rate 149530 (``/min``, LOINC 8889-8), pleth 150452.
A vital the device cannot measure now is a sample with ``value=None`` and
``status="X"``, the reason in ``text``. See ``codes``.
"""

from devices.serial_monitors.backoff import Backoff
from devices.serial_monitors.cms50d import CMS50D, CMS50DPacket, CMS50DParser
from devices.serial_monitors.codes import FINGER_OUT, NO_READING, SEARCHING
from devices.serial_monitors.nonin import NONIN, NoninParser
from devices.serial_monitors.protocol import SampleParser, SerialProtocol
from devices.serial_monitors.reader import (
    ConnectionState,
    PortLostError,
    SerialMonitor,
    SerialMonitorError,
)

PROTOCOLS: dict[str, SerialProtocol] = {NONIN.name: NONIN, CMS50D.name: CMS50D}
"""The serial protocols by name, for configuration."""

__all__ = [
    "CMS50D",
    "FINGER_OUT",
    "NONIN",
    "NO_READING",
    "PROTOCOLS",
    "SEARCHING",
    "Backoff",
    "CMS50DPacket",
    "CMS50DParser",
    "ConnectionState",
    "NoninParser",
    "PortLostError",
    "SampleParser",
    "SerialMonitor",
    "SerialMonitorError",
    "SerialProtocol",
]
