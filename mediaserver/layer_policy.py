"""Which video layer fits a viewer's downlink (sans-I/O).

``LayerRates`` measures, in the producer, the bit rate of each temporal layer (TID)
the publisher sends; ``choose_layer`` maps a viewer's target bit rate (from
``DownlinkEstimate``) and those rates to the highest layer that fits. Only video
layers are ever chosen: audio and data channels are not throttled, and the REMB a
viewer sends covers its whole connection, so a small share of it is left for audio.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_TEMPORAL_LAYERS = 4  # VP8 TIDs fit in 2 bits
RTP_VIDEO_CLOCK = 90_000
AUDIO_SHARE = 40_000  # bit/s of the viewer's estimate kept for its audio track (Opus)


class LayerRates:
    """Bit rate per temporal layer of one producer, measured on RTP timestamps.

    ``add`` is on the forwarding path (called for each parsed video packet): it only
    adds bytes to the current window. A window closes when the RTP timestamp has moved
    ``window`` seconds on; each layer's rate is then smoothed (``smoothing`` is the
    weight of the new window). Timestamps, not wall time, so it is pure and cheap.
    """

    __slots__ = ("_bytes", "_start", "highest", "rates", "smoothing", "window_ticks")

    def __init__(self, window: float = 0.5, smoothing: float = 0.5) -> None:
        self.window_ticks = int(window * RTP_VIDEO_CLOCK)
        self.smoothing = smoothing
        self.rates = [0.0] * MAX_TEMPORAL_LAYERS  # bit/s per TID
        self.highest = -1  # the highest TID seen; -1: no temporal layers seen
        self._bytes = [0] * MAX_TEMPORAL_LAYERS
        self._start: int | None = None

    def add(self, temporal_id: int, size: int, timestamp: int) -> None:
        start = self._start
        if start is None:
            self._start = timestamp
        else:
            elapsed = (timestamp - start) & 0xFFFFFFFF
            if self.window_ticks <= elapsed < 0x80000000:
                self._close(elapsed)
                self._start = timestamp
        self._bytes[temporal_id] += size
        if temporal_id > self.highest:
            self.highest = temporal_id

    def _close(self, elapsed: int) -> None:
        seconds = elapsed / RTP_VIDEO_CLOCK
        weight = self.smoothing
        counts, rates = self._bytes, self.rates
        for tid in range(MAX_TEMPORAL_LAYERS):
            measured = counts[tid] * 8 / seconds
            rates[tid] = measured if rates[tid] == 0 else (
                (1 - weight) * rates[tid] + weight * measured)
            counts[tid] = 0

    def cumulative(self) -> list[float]:
        """Bit rate of layers 0..T for each T up to the highest seen."""
        out, total = [], 0.0
        for tid in range(self.highest + 1):
            total += self.rates[tid]
            out.append(total)
        return out


def choose_layer(target: float | None, cumulative: Sequence[float], current: int,
                 up_margin: float = 1.1) -> int:
    """The temporal layer to forward: the highest whose cumulative rate fits ``target``.

    No estimate (None) or no measured rates: the highest layer. The current layer is
    kept while it fits; a higher one is taken only with ``up_margin`` to spare, so a
    target at a boundary does not flip between two layers. Layer 0 is the floor (it is
    the least a viewer gets: the SFU never stops the video, the estimate may be wrong).
    """
    top = len(cumulative) - 1
    if target is None or top < 0 or cumulative[top] <= 0:
        return max(top, current)
    video = target - AUDIO_SHARE
    layer = 0
    for tid in range(top, 0, -1):
        needed = cumulative[tid] if tid <= current else cumulative[tid] * up_margin
        if needed <= video:
            layer = tid
            break
    return layer


class LossCap:
    """The highest temporal layer for a viewer whose link loses packets at random.

    Loss without congestion is not cured by sending less (the downlink estimate rightly
    leaves the target alone), but at full frame rate it shows as stalls: a lost packet
    waits a round trip for its retransmission, two when the NACK or the retransmission
    is lost too, and Chromium counts a freeze when a frame is 183 ms late at 30 fps,
    against 216 ms at 15 fps and 400 ms at 7.5 fps. Fewer frames also means fewer
    packets to lose. Measured in the network lab with 5 % loss each way and 100 ms
    round trip toward the viewer, base-layer copies on (``Consumer._send_base_copy``):
    every layer forwarded, 19.8 to 26.1 frames decoded per second and 0.21 to 0.98 s
    frozen per minute (four runs); at most layer 1, 12.7 to 13.3 fps and 0.00 to 1.04 s
    (seven runs, one over the 1 s a minute the hospitals ask for); layer 0 alone,
    7.5 fps and no freeze. A steady picture serves a clinician better than one that
    stalls every 15 s, so from a smoothed loss of ``enter`` the viewer gets at most
    ``layer`` (the base layer), until the loss has stayed under ``leave`` for ``hold``
    seconds. (Forward error correction would keep a higher rate; there is none yet.)
    """

    __slots__ = ("_lossy_at", "enter", "hold", "layer", "leave")

    def __init__(self, enter: float = 0.03, leave: float = 0.015, hold: float = 10.0,
                 layer: int = 0) -> None:
        self.enter, self.leave, self.hold, self.layer = enter, leave, hold, layer
        self._lossy_at: float | None = None  # the last measurement that kept the cap

    def update(self, loss: float, now: float) -> None:
        """A new smoothed loss, measured at ``now``."""
        if loss >= self.enter or (self.cap(now) is not None and loss >= self.leave):
            self._lossy_at = now

    def cap(self, now: float) -> int | None:
        """The highest temporal layer allowed now (None: no cap)."""
        at = self._lossy_at
        return self.layer if at is not None and now - at < self.hold else None


def choose_simulcast_layer(target: float | None, layers: Sequence[Sequence[float] | None],
                           current: int | None, current_temporal: int,
                           up_margin: float = 1.1) -> tuple[int, int] | None:
    """The (spatial, temporal) layer to forward from a simulcast producer.

    ``layers[i]`` is spatial layer i's cumulative rate per temporal layer (as
    ``LayerRates.cumulative``), or None when that stream is not arriving. The highest
    stream whose full rate fits ``target`` is chosen, with all its temporal layers
    (full frame rate is worth more than resolution to a clinician watching a patient);
    the current one is kept while it fits, a higher one needs ``up_margin`` to spare.
    When none fits, the lowest stream with the temporal layers that fit (``choose_layer``).
    No estimate: the highest stream arriving. None: no stream arrives at all.
    """
    active = [i for i, rates in enumerate(layers) if rates is not None]
    if not active:
        return None
    if target is None:
        rates = layers[active[-1]] or []
        return active[-1], max(len(rates) - 1, 0)
    video = target - AUDIO_SHARE
    for spatial in reversed(active):
        rates = layers[spatial] or []
        if not rates or rates[-1] <= 0:
            continue
        needed = rates[-1] if current is not None and spatial <= current else (
            rates[-1] * up_margin)
        if needed <= video:
            return spatial, len(rates) - 1
    lowest = active[0]
    rates = layers[lowest] or []
    temporal = current_temporal if current == lowest else max(len(rates) - 1, 0)
    return lowest, choose_layer(target, rates, temporal, up_margin)
