"""What one viewer's downlink can carry, from the viewer's own RTCP (sans-I/O, ``now`` passed in).

Inputs are what a browser's receiver reports about the stream a consumer sends it:
REMB (its bandwidth estimate, in bit/s) and receiver reports (the fraction of packets
lost since the last one). The output, ``target``, is the bit rate the layer policy
may fill with video.

Until the viewer shows congestion the target is None: no limit. It falls at once on
congestion (a REMB that drops, a REMB far under the rate sent, more than ``loss_high``
lost) and rises slowly: while loss stays under ``loss_low`` it probes up by
``probe_rate`` per second, at most to ``remb_headroom`` times the last REMB. The
headroom matters: a receiver's REMB never runs far ahead of what it receives
(libwebrtc and aiortc both cap it near 1.5 times the incoming rate), so a viewer moved
down to a lower layer would never be offered the next one if REMB were a hard ceiling.
After each fall the probe waits ``hold`` seconds, doubled (up to ``max_hold``) when
it falls again soon after, so a viewer on a link that cannot take the next layer is
not pushed over the edge every few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EstimateSettings:
    loss_high: float = 0.10  # fraction lost above which the target falls
    loss_low: float = 0.02  # fraction lost under which the target may rise
    probe_rate: float = 0.08  # relative rise per second while probing
    remb_headroom: float = 1.5  # probing may go this far above the last REMB
    remb_drop: float = 0.85  # a REMB under this times the previous one is congestion
    remb_low: float = 0.5  # a REMB under this times the rate sent is congestion
    hold: float = 2.0  # seconds without probing after a fall
    max_hold: float = 32.0
    calm: float = 30.0  # seconds without a fall after which the hold is back to ``hold``
    floor: float = 30_000.0  # bit/s: the target never goes below this


class DownlinkEstimate:
    """One consumer's downlink estimate: ``on_remb``/``on_loss`` in, ``target(now)`` out."""

    def __init__(self, settings: EstimateSettings | None = None) -> None:
        self.settings = settings or EstimateSettings()
        self.remb: float | None = None
        self.loss = 0.0
        self._target: float | None = None
        self._updated = 0.0  # when the target last moved (or probing last ran)
        self._fell_at: float | None = None
        self._hold = self.settings.hold

    def on_remb(self, bitrate: float, now: float, sending: float | None = None) -> None:
        """The viewer's REMB, ``sending`` the bit rate forwarded to it lately (if known).

        A receiver's REMB starts low and trails what it receives (libwebrtc's and
        aiortc's grow a few per cent a second from the incoming rate), so a REMB under
        the rate sent is not in itself a sign of a thin link. Congestion is: a REMB
        that drops (under ``remb_drop`` times the previous one), or one under
        ``remb_low`` times the rate sent. Either is a fall to the REMB. Otherwise the
        REMB only bounds how far probing may go.
        """
        self.target(now)
        settings = self.settings
        previous, self.remb = self.remb, bitrate
        if (previous is not None and bitrate < previous * settings.remb_drop) or (
                sending is not None and bitrate < sending * settings.remb_low):
            self._fall(bitrate, now)
        elif self._target is not None:
            self._target = min(self._target, max(bitrate * settings.remb_headroom,
                                                 settings.floor))

    def on_loss(self, fraction_lost: float, now: float) -> None:
        """A receiver report's fraction lost (0 to 1) for the forwarded stream."""
        self.target(now)
        self.loss = fraction_lost
        if fraction_lost > self.settings.loss_high and self._target is not None:
            self._fall(self._target * (1 - fraction_lost / 2), now)

    def target(self, now: float) -> float | None:
        """The bit rate video may use now (None: no report yet, no limit)."""
        target = self._target
        if target is None:
            return None
        settings = self.settings
        elapsed = now - self._updated
        if elapsed <= 0:
            return target
        self._updated = now
        if self._fell_at is not None and now - self._fell_at < self._hold:
            return target
        if self.loss >= settings.loss_low or self.remb is None:
            return target
        ceiling = self.remb * settings.remb_headroom
        if target < ceiling:
            target = min(ceiling, target * (1 + settings.probe_rate * min(elapsed, 1.0)))
            self._target = target
        return target

    def _fall(self, bitrate: float, now: float) -> None:
        settings = self.settings
        if self._fell_at is not None:
            since = now - self._fell_at
            if since < self._hold + 10.0:
                self._hold = min(self._hold * 2, settings.max_hold)
            elif since > settings.calm:
                self._hold = settings.hold
        self._fell_at = now
        self._updated = now
        self._target = max(bitrate, settings.floor)
