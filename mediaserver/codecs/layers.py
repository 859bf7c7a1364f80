"""Layer selectors: which packets one consumer receives.

The seam where temporal (and later simulcast) layer selection plugs into forwarding.
Selectors are pure: flags in, a decision out, state kept per consumer.
"""

from __future__ import annotations

from typing import Protocol

from mediaserver.codecs.flags import PacketFlags


class LayerSelector(Protocol):
    """Which packets one consumer receives (temporal and simulcast layers plug in here)."""

    def select(self, flags: PacketFlags) -> bool: ...


class ForwardAll:
    """The default selector: every packet."""

    __slots__ = ()

    def select(self, flags: PacketFlags) -> bool:
        return True


class TemporalLayerSelector:
    """Forwards the VP8 temporal layers up to ``target`` (RFC 7741 TID), switching safely.

    ``current`` is the highest layer forwarded now. It drops to the target at the
    start of any frame (a lower layer never references a higher one). It rises to
    layer T only where a decoder can follow: at the start of a frame of layer T
    whose Y bit says it references only TL0 frames (which are always forwarded), or
    at a keyframe start (which references nothing), there straight to the target.
    Packets without a TID (no temporal layering) are always forwarded. The
    forwarder must renumber what it skips; this class only decides.
    """

    __slots__ = ("current", "target")

    def __init__(self, max_temporal_id: int, current: int = 0) -> None:
        if max_temporal_id < 0:
            raise ValueError("max_temporal_id must be >= 0")
        self.target = max_temporal_id
        self.current = min(current, max_temporal_id)

    def select(self, flags: PacketFlags) -> bool:
        tid = flags.temporal_id
        if tid is None:
            return True
        if flags.start:
            if flags.keyframe or self.target < self.current:
                self.current = self.target
            elif flags.layer_sync and self.current < tid <= self.target:
                self.current = tid
        return tid <= self.current
