"""What the reader needs to know about a serial monitor protocol (pure)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from devices.vitals import VitalSample


class SampleParser(Protocol):
    """A sans-I/O protocol core: bytes in, samples out, ``now`` passed in."""

    def feed(self, data: bytes, now: datetime) -> list[VitalSample]:
        """Bytes as read from the port at ``now`` (timezone-aware); samples in time order."""
        ...

    def flush(self) -> list[VitalSample]:
        """The stream ended (port lost): whatever is pending that is still worth delivering."""
        ...


@dataclass(frozen=True)
class SerialProtocol:
    """A serial protocol: line settings (pyserial's values) and a parser factory."""

    name: str
    baudrate: int
    parity: str
    """pyserial parity letter: "N", "E", "O", "M", "S"."""
    parser_factory: Callable[[str], SampleParser]
    """Called with the device id once per connection: a fresh parser, no stale partial data."""
    bytesize: int = 8
    stopbits: float = 1

    def new_parser(self, device_id: str) -> SampleParser:
        return self.parser_factory(device_id)
