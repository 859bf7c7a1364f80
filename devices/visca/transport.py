"""The one interface every way of reaching a camera implements: serial, Sony UDP, TCP, UDP."""

from __future__ import annotations

import abc
from typing import ClassVar, Protocol

from devices.visca.errors import ViscaError


class PacketSink(Protocol):
    """Where a transport delivers what it hears (the camera driver implements this)."""

    def packet_received(self, packet: bytes) -> None:
        """One VISCA reply packet, ``y0 ... FF`` or a broadcast ``88 ... FF``."""

    def reply_lost(self) -> None:
        """The packet in transit ran in the camera but its reply is gone (Sony UDP only)."""

    def message_rejected(self, error: ViscaError) -> None:
        """The camera refused the packet in transit below the VISCA level (Sony UDP only)."""

    def connection_lost(self, exc: Exception | None) -> None:
        """The port or connection is gone; nothing more will arrive."""


class ViscaTransport(abc.ABC):
    """Carries VISCA packets to one camera and its replies back."""

    broadcast: ClassVar[bool] = False
    """True when broadcasts (Address Set, IF_Clear) make sense: a serial daisy chain."""
    fixed_address: ClassVar[int | None] = None
    """The only camera address the transport reaches, when it fixes one (VISCA over IP: 1)."""

    @abc.abstractmethod
    async def open(self, sink: PacketSink) -> None:
        """Open the port or connection; raises OSError or ViscaError when it cannot."""

    @abc.abstractmethod
    def send(self, packet: bytes) -> None:
        """Send one VISCA packet (never blocks)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the port or socket; idempotent."""

    @property
    @abc.abstractmethod
    def is_open(self) -> bool: ...
