"""The one downstream interface: every reader of a producer's packets implements it.

An RTP consumer (a subscriber's sender), the recorder, and later WHEP and cascade
outputs all receive media the same way: ``write`` for each packet (with the flags the
producer parsed once), ``sender_report`` when the publisher reports its clocks, and
``producer_closed`` when the track ends. Upstream, a downstream asks its producer for
a keyframe through ``Upstream``; it never reaches further up than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aiortc.rtp import RtpPacket

    from mediaserver.codecs import PacketFlags


@dataclass(frozen=True, slots=True)
class DownstreamStats:
    """Counters of one downstream, for the stats snapshot (no names, no patient data)."""

    id: str
    kind: str  # "rtp" (a subscriber), "recorder", ...
    packets_sent: int = 0
    retransmissions: int = 0
    keyframe_requests: int = 0
    started: bool = False
    # Subscriber NACKs: all of them; those the buffer could not answer (``retransmissions``
    # counts the answered ones); of those, the packets sent later all the same (the
    # server was itself missing them and got them from the publisher).
    nacks_received: int = 0
    nacks_unanswerable: int = 0
    nacks_filled_late: int = 0
    octets_sent: int = 0  # RTP payload bytes (what the sender reports count)
    # Layer selection (None: the downstream forwards every layer).
    temporal_layer: int | None = None  # the highest VP8 temporal layer forwarded now
    spatial_layer: int | None = None  # the simulcast stream forwarded now (0: the smallest)
    target_bitrate: int | None = None  # bit/s the viewer's downlink estimate allows
    layer_switches: int = 0  # times the chosen layer changed
    copies_sent: int = 0  # second copies for a viewer on a lossy link (retransmissions, TL0)
    # NACKs the retransmission gate did not answer: asked again within its interval, or
    # over the repair budget (mediaserver.retransmit_gate).
    nacks_held: int = 0


class Upstream(Protocol):
    """What a downstream may ask of its producer."""

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (throttled; repeated until one arrives)."""

    def remove_downstream(self, downstream: Downstream) -> None:
        """Stop feeding ``downstream`` (its own ``close``); unknown ones are ignored."""


class Downstream(Protocol):
    """A reader of one producer's packets.

    ``write`` runs on the forwarding path: quick, never blocking (queue the work),
    and after either close it returns False without raising. ``producer_closed`` is
    the parent's close: the downstream releases what it holds and never calls its
    producer back. ``close`` is the downstream's own close (its owner asked): it
    detaches from the producer (``Upstream.remove_downstream``). Both are idempotent.
    ``sender_report`` carries the publisher's latest (NTP, RTP) clock pair; a new
    downstream gets the last one known as soon as it is added.

    ``reads_flags``: the downstream reads ``flags`` of every packet (a layer selector
    does). Otherwise the producer parses payloads only while a keyframe is awaited, and
    other packets arrive with ``NO_FLAGS``: parsing costs the forwarding path of every
    packet, so it is paid only when someone reads the result.
    """

    @property
    def id(self) -> str: ...

    @property
    def reads_flags(self) -> bool: ...

    @property
    def closed(self) -> bool: ...

    def write(self, packet: RtpPacket, flags: PacketFlags) -> bool:
        """Take one packet; True when a copy went out (or was queued for writing)."""

    def sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None: ...

    def producer_closed(self) -> None: ...

    def close(self) -> None: ...

    def stats(self) -> DownstreamStats: ...
