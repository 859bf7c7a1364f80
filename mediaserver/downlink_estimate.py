"""What one viewer's downlink can carry, from the viewer's own RTCP (sans-I/O, ``now`` passed in).

Inputs are what a browser's receiver reports about the stream a consumer sends it:
REMB (its bandwidth estimate, in bit/s) and loss measured from its receiver reports
over at least a few dozen packets (``receiver_loss.LossMeter``). The output,
``target``, is the bit rate the layer policy may fill with video.

Until the viewer shows congestion the target is None: no limit. Congestion is a REMB
that fell (under ``remb_drop`` times the previous one) to under ``remb_low`` times the
rate sent, or a smoothed loss above ``loss_high``; the target then falls at once and
rises slowly: while the smoothed loss stays under ``loss_low`` it probes up by
``probe_rate`` per second, at most to ``remb_headroom`` times the last REMB.

What is not congestion, learnt in the network lab with Chromium viewers:

- a REMB that falls but stays above the rate sent (the receiver's estimate wanders;
  it limits nothing while the stream fits under it);
- a REMB under the rate sent that is not falling: a receiver's estimate starts low and
  ramps up a few per cent a second from what it receives, at start-up and after a
  switch to a bigger stream (an unshaped viewer read as congested then would be moved
  down and, its REMB trailing what it then receives, never offered the full stream
  again); libwebrtc lowers its REMB only when it sees its link overused, and then to
  0.85 times what it receives. In the first ``startup`` seconds nothing from REMB
  counts until the REMB has once reached the rate sent;
- one measurement with a loss spike: a link with 5 % random loss measures over 10 %
  now and then; the loss is smoothed over measurements (``loss_smoothing``) before it
  is compared, except one over ``loss_collapse``, which counts at once. (Single
  receiver reports were worse: Chromium reports every 200 ms or so, and at a low
  layer one report covering four packets read 25 % lost for one random drop.)

The headroom matters: a receiver's REMB never runs far ahead of what it receives
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
    loss_high: float = 0.12  # smoothed fraction lost above which the target falls
    loss_collapse: float = 0.25  # one report over this falls at once
    loss_low: float = 0.08  # smoothed fraction lost under which the target may rise
    loss_smoothing: float = 0.5  # weight of a new report in the smoothed loss
    probe_rate: float = 0.08  # relative rise per second while probing
    remb_headroom: float = 1.5  # probing may go this far above the last REMB
    remb_drop: float = 0.97  # a REMB under this times the previous one has fallen
    remb_low: float = 0.9  # ... and under this times the rate sent: congestion
    startup: float = 10.0  # seconds from the first REMB in which a low REMB is ramping
    hold: float = 2.0  # seconds without probing after a fall
    max_hold: float = 32.0
    calm: float = 30.0  # seconds without a fall after which the hold is back to ``hold``
    floor: float = 30_000.0  # bit/s: the target never goes below this


class DownlinkEstimate:
    """One consumer's downlink estimate: ``on_remb``/``on_loss`` in, ``target(now)`` out."""

    def __init__(self, settings: EstimateSettings | None = None) -> None:
        self.settings = settings or EstimateSettings()
        self.remb: float | None = None
        self.loss = 0.0  # smoothed
        self._first_remb: float | None = None
        self._ramped = False  # the REMB has reached the rate sent once
        self._target: float | None = None
        self._updated = 0.0  # when the target last moved (or probing last ran)
        self._fell_at: float | None = None
        self._hold = self.settings.hold

    def on_remb(self, bitrate: float, now: float, sending: float | None = None) -> None:
        """The viewer's REMB, ``sending`` the bit rate forwarded to it lately (if known;
        None while the consumer knows its own rate is about to change)."""
        self.target(now)
        settings = self.settings
        previous, self.remb = self.remb, bitrate
        if self._first_remb is None:
            self._first_remb = now
        if sending is not None and bitrate >= sending:
            self._ramped = True
        starting = not self._ramped and now - self._first_remb < settings.startup
        if (sending is not None and not starting and previous is not None
                and bitrate < previous * settings.remb_drop
                and bitrate < sending * settings.remb_low):
            self._fall(bitrate, now)
        else:
            self._bound(bitrate)

    def _bound(self, bitrate: float) -> None:
        """A REMB bounds how far probing may go (once there is a target)."""
        if self._target is not None:
            settings = self.settings
            self._target = min(self._target, max(bitrate * settings.remb_headroom,
                                                 settings.floor))

    def on_loss(self, fraction_lost: float, now: float) -> None:
        """A loss measurement (0 to 1) of the forwarded stream, over enough packets."""
        self.target(now)
        settings = self.settings
        weight = settings.loss_smoothing
        self.loss = self.loss * (1 - weight) + fraction_lost * weight
        if self.loss > settings.loss_high or fraction_lost > settings.loss_collapse:
            # Without a target, from the REMB once it has caught up with the rate sent
            # or start-up is over (before that it is only ramping up and says nothing
            # about the link; after it, a viewer losing this much is not just ramping).
            started = self._first_remb is not None and (
                now - self._first_remb >= settings.startup)
            base = self._target if self._target is not None else (
                self.remb if self._ramped or started else None)
            if base is not None:
                self._fall(base * (1 - max(self.loss, fraction_lost) / 2), now)
                self.loss = 0.0  # judged: the next fall needs new loss

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
