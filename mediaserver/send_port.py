"""SendPort: where a consumer's packets leave the server, and where its feedback comes from.

The consumer never sees aiortc. Its subscription transport builds a send port for
each forwarded track (``aiortc_hooks.SenderPort`` on a real peer connection, a
capturing fake in tests) and hands it to the consumer, which registers itself as
the port's listener. The port then reports, in this order: the negotiated send
parameters once the subscriber's transport is up (``negotiated``), and afterwards
the subscriber's NACKs (``retransmit``), PLI/FIRs (``keyframe_requested``) and what
it says about its downlink (``remb_received``, ``loss_reported``; ``now`` is the
port's monotonic clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mediaserver.receiver_loss import ReceiverLoss


@dataclass(frozen=True)
class SendParameters:
    """What a subscriber negotiated for one forwarded track."""

    payload_type: int
    ssrc: int
    rtx_payload_type: int | None = None
    rtx_ssrc: int = 0
    extension_ids: dict[str, int] = field(default_factory=dict)  # header extension URI -> id
    mid: str | None = None
    codec_name: str = ""


class SendPortListener(Protocol):
    """What a send port tells its consumer (called on the event loop)."""

    def negotiated(self, parameters: SendParameters) -> None:
        """The subscriber's transport is connected with ``parameters``: sending may start."""

    def retransmit(self, sequence_number: int, now: float) -> None:
        """The subscriber lost the packet sent with ``sequence_number`` (a NACK)."""

    def keyframe_requested(self) -> None:
        """The subscriber asked for a keyframe (PLI or FIR)."""

    def remb_received(self, bitrate: float, now: float) -> None:
        """The subscriber's bandwidth estimate (REMB, bit/s) covering this track."""

    def loss_reported(self, report: ReceiverLoss, now: float) -> None:
        """A receiver report block about this track (what its receiver lost)."""


class SendPort(Protocol):
    """One forwarded track's way out to a subscriber."""

    def listen(self, listener: SendPortListener) -> None:
        """Report to ``listener`` from now on (one listener per port)."""

    def send(self, data: bytes) -> bool:
        """Send one serialised RTP packet; False when it could not go out (not connected,
        closed). Called once per forwarded copy: implementations keep it cheap."""

    def set_report(self, ntp_timestamp: int, rtp_timestamp: int, packets: int,
                   octets: int) -> None:
        """The clock pair and counters the next RTCP sender report carries."""

    def close(self) -> None:
        """Stop sending; later ``send`` calls return False."""
