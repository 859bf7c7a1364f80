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


class SimulcastSelector:
    """Chooses one simulcast stream (spatial layer) and its temporal layers for a consumer.

    ``current`` is the spatial layer forwarded now (None: nothing forwarded yet),
    ``target`` the one wanted. Packets of any other layer are not this consumer's (the
    forwarder ignores them: they are in another sequence space). The switch to the
    target happens at the start of one of its keyframes (nothing before it is needed
    to decode), and sets ``switched`` so the forwarder re-anchors its numbering there
    (``RtpRewriter.switch_source``, ``PictureIdRewriter.switch``) and clears it. Within
    the current layer, ``temporal`` decides as for a single stream (a keyframe lets it
    go straight to its target).
    """

    __slots__ = ("current", "switched", "target", "temporal")

    def __init__(self, target: int, max_temporal_id: int) -> None:
        if target < 0:
            raise ValueError("target must be >= 0")
        self.current: int | None = None
        self.target = target
        self.temporal = TemporalLayerSelector(max_temporal_id, current=max_temporal_id)
        self.switched = False

    def select(self, flags: PacketFlags) -> bool:
        spatial = flags.spatial_id
        if spatial != self.current:
            if spatial != self.target or not flags.keyframe:
                return False
            self.current = spatial
            self.switched = True
        return self.temporal.select(flags)
