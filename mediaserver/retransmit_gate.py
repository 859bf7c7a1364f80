"""Which of a subscriber's NACKs a consumer answers (sans-I/O, ``now`` passed in).

A browser behind a congested link asks again for a packet still missing every round
trip it estimates, and on a full link that estimate lags the queue. Answering every
request sent each lost packet many times: in the network lab a viewer behind a 400 kbit/s
link was sent 15,062 retransmissions in one minute for 682 packets lost, the
retransmissions filled its link, and its picture froze 11.3 s that minute. libwebrtc's own
sender resends a packet at most once per round trip and bounds its retransmission rate;
so does this gate:

- a sequence number answered less than ``min_interval`` ago is not sent again (the
  answer is still on its way);
- retransmissions draw on a byte budget refilled at ``budget_share`` of the bit rate
  the viewer is sent, holding at most ``burst`` seconds of it (and always one full
  packet), so repair never takes over a thin link. Without a known rate, no budget.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_PACKET = 1500  # bytes: the budget always holds one whole packet


@dataclass(frozen=True)
class GateSettings:
    min_interval: float = 0.1  # seconds before one packet is sent again
    budget_share: float = 0.5  # of the rate the viewer is sent
    burst: float = 0.25  # seconds of budget kept at most
    remembered: int = 1024  # sequence numbers remembered (a retransmission buffer's worth)


class RetransmitGate:
    """``allow(seq, size, now, rate)``: answer this NACK now? (Counts what it held back.)"""

    def __init__(self, settings: GateSettings | None = None) -> None:
        self.settings = settings or GateSettings()
        self._sent: OrderedDict[int, float] = OrderedDict()  # seq -> when last answered
        self._tokens = float(MAX_PACKET)
        self._refilled: float | None = None
        self.repeats_held = 0  # asked again within min_interval
        self.budget_held = 0  # over the retransmission budget

    def allow(self, seq: int, size: int, now: float, rate: float | None) -> bool:
        """Whether to resend packet ``seq`` (``size`` bytes) at ``now``; ``rate``: the bit
        rate the viewer is sent (its downlink target when limited), None if unknown."""
        settings = self.settings
        last = self._sent.get(seq)
        if last is not None and now - last < settings.min_interval:
            self.repeats_held += 1
            return False
        if rate is not None and rate > 0:
            per_second = rate * settings.budget_share / 8
            cap = max(per_second * settings.burst, float(MAX_PACKET))
            if self._refilled is not None:
                self._tokens = min(cap, self._tokens + (now - self._refilled) * per_second)
            else:
                self._tokens = cap
            self._refilled = now
            if self._tokens < size:
                self.budget_held += 1
                return False
            self._tokens -= size
        self._sent[seq] = now
        self._sent.move_to_end(seq)
        while len(self._sent) > settings.remembered:
            self._sent.popitem(last=False)
        return True
