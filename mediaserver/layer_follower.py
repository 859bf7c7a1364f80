"""LayerFollower: an in-process reader of a simulcast producer follows its highest active stream.

A simulcast publisher (Chromium) pauses its top stream when its uplink estimate is
low. A reader fed only that stream (the recorder) would then get no video at all. So
a reader of a simulcast producer subscribes like a viewer with an unlimited downlink:
a ``Consumer`` with a ``SimulcastSelector`` whose ``SendPort`` is a ``LocalPort``
(the rewritten bytes back to ``RtpPacket`` for the reader). The consumer already
switches streams only at a keyframe of the new one and renumbers so that its output
is one continuous stream (sequence numbers, timestamps, VP8 picture ids and
TL0PICIDX; sender reports translated); the follower only points it at the highest
stream that is arriving, and asks the publisher for a keyframe there.

Going down: the current stream is taken as stopped once no packet of it arrived for
``stale_after`` seconds while another stream's packets still arrive; until the lower
stream's keyframe comes the reader gets nothing (that wait is the only gap). Going
up: as soon as a higher stream's packets arrive again, at its next keyframe.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from mediaserver.codecs import SimulcastSelector, payload_parser
from mediaserver.consumer import FRAME_TICKS, Consumer
from mediaserver.downstream import Downstream, DownstreamStats
from mediaserver.layer_policy import MAX_TEMPORAL_LAYERS, RTP_VIDEO_CLOCK
from mediaserver.local_port import LocalPort
from mediaserver.send_port import SendParameters

if TYPE_CHECKING:
    from aiortc.rtp import RtpPacket

    from mediaserver.codecs import PacketFlags
    from mediaserver.producer import Producer

# Seconds without a packet after which a stream counts as stopped (a paused simulcast
# stream sends nothing at all; a live one sends a frame every 33-200 ms).
STALE_AFTER = 0.5
# Sender reports are trusted for a switch's timestamp advance while they agree with
# the arrival times within this many clock ticks (one second).
REPORT_TOLERANCE = RTP_VIDEO_CLOCK
LOCAL_PAYLOAD_TYPE = 96  # what the in-process reader sees; nothing negotiates it


def highest_active(seen: Sequence[float | None], now: float, within: float) -> int | None:
    """The highest layer whose last packet (``seen``: a time per layer, None: never)
    arrived at most ``within`` seconds before ``now``; None when none did."""
    for layer in range(len(seen) - 1, -1, -1):
        at = seen[layer]
        if at is not None and now - at <= within:
            return layer
    return None


def _signed32(value: int) -> int:
    return (value + 0x80000000) % 2**32 - 0x80000000


def switch_advance(last_in_ts: int, old_report: tuple[int, int] | None,
                   new_report: tuple[int, int] | None, new_ts: int,
                   arrival_gap: float | None) -> int:
    """Clock ticks from the last frame forwarded (``last_in_ts``, old stream) to the new
    stream's first frame (``new_ts``), however long the reader waited in between: the
    recording keeps real time across the switch, so audio stays in sync.

    From both streams' sender reports (one capture clock) while they agree with the
    arrival times (``arrival_gap``: seconds between the two packets' arrivals); else
    from the arrival times; else one frame. Never less than one tick (a new frame
    needs a new timestamp).
    """
    by_arrival = None if arrival_gap is None else round(arrival_gap * RTP_VIDEO_CLOCK)
    if old_report is not None and new_report is not None:
        new_ntp, new_rtp = new_report
        old_ntp, old_rtp = old_report
        wall = new_ntp / 2**32 + _signed32(new_ts - new_rtp) / RTP_VIDEO_CLOCK
        in_old = old_rtp + round((wall - old_ntp / 2**32) * RTP_VIDEO_CLOCK)
        advance = _signed32(in_old - last_in_ts)
        if by_arrival is None or abs(advance - by_arrival) <= REPORT_TOLERANCE:
            return max(advance, 1)
    if by_arrival is not None:
        return max(by_arrival, 1)
    return FRAME_TICKS


class FollowedTrack:
    """A simulcast track as its in-process reader sees it: the producer's identity, while
    the reader's keyframe requests and its own close go through the follower (so a
    keyframe is asked for on the stream the reader gets, not on a paused one)."""

    __slots__ = ("_follower", "codec_name", "codec_parameters", "id", "kind")

    def __init__(self, producer: Producer, follower: LayerFollower) -> None:
        self.id = producer.id
        self.kind = producer.kind
        self.codec_name = producer.codec_name
        self.codec_parameters = producer.codec_parameters
        self._follower = follower

    def request_keyframe(self) -> None:
        self._follower.keyframe_requested()

    def remove_downstream(self, downstream: Downstream) -> None:
        """The reader closed itself: the follower detaches from the producer."""
        if downstream is self._follower.reader:
            self._follower.close()


class LayerFollower(Consumer):
    """The producer's downstream on behalf of one in-process reader (see the module).

    Its stats are the reader's, with the stream switches in ``layer_switches``.
    """

    def __init__(self, producer: Producer, port: LocalPort,
                 stale_after: float = STALE_AFTER) -> None:
        selector = SimulcastSelector(producer.primary_layer, MAX_TEMPORAL_LAYERS - 1)
        super().__init__(f"{producer.id}/follow", producer.kind, producer, producer.templates,
                         port, 1, selector, producer.layer_rates, producer)
        self.track = FollowedTrack(producer, self)
        self._producer = producer
        self._port_in = port
        self._follow = selector
        self._stale_after = stale_after
        self._reports: dict[int, tuple[int, int]] = {}
        self._arrived_at = 0.0  # loop time of the packet being written
        self._sent_at: float | None = None  # loop time of the last packet forwarded

    @property
    def reader(self) -> Downstream | None:
        return self._port_in.reader

    @property
    def target_layer(self) -> int:
        """The stream the follower wants (it switches there at that stream's keyframe)."""
        return self._follow.target

    def stats(self) -> DownstreamStats:
        reader = self.reader
        if reader is None:
            return super().stats()
        return replace(reader.stats(), layer_switches=self.spatial_switches)

    def write(self, packet: RtpPacket, flags: PacketFlags) -> bool:
        # The producer stamped this packet's layer with the loop time just now.
        seen = self._producer.layer_seen
        now = seen[flags.spatial_id] if flags.spatial_id < len(seen) else None
        if now is not None:
            self._arrived_at = now
            if flags.start:
                self._retarget(now)
        sent = super().write(packet, flags)
        if sent:
            self._sent_at = self._arrived_at
        return sent

    def _retarget(self, now: float) -> None:
        """Point the selector at the highest stream arriving; ask it for a keyframe."""
        layer = highest_active(self._producer.layer_seen, now, self._stale_after)
        selector = self._follow
        if layer is None or layer == selector.target:
            return
        selector.target = layer
        if layer != selector.current:
            self._producer.request_keyframe(layer)  # throttled; repeated until it comes

    def layer_sender_report(self, layer: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self._reports[layer] = (ntp_timestamp, rtp_timestamp)
        super().layer_sender_report(layer, ntp_timestamp, rtp_timestamp)

    def _ts_advance(self, previous: int | None, layer: int, in_ts: int) -> int:
        """The consumer's hook at a switch: real time, however long the wait (a viewer's
        consumer caps it at one second; a recording must not lose the gap)."""
        rewriter = self._rewriter
        if rewriter is None:
            return FRAME_TICKS
        gap = None if self._sent_at is None else self._arrived_at - self._sent_at
        old = self._reports.get(previous) if previous is not None else None
        return switch_advance(rewriter.last_in_ts, old, self._reports.get(layer), in_ts, gap)


ReaderOfTrack = Callable[[FollowedTrack], Downstream | None]


def follow_layers(producer: Producer, make_reader: ReaderOfTrack,
                  stale_after: float | None = None) -> Downstream | None:
    """Attach the reader ``make_reader`` builds (None: none) to a simulcast ``producer``
    through a ``LayerFollower``; returns the reader. Raises ClosedError once the
    producer is closed. ``stale_after``: default ``STALE_AFTER``."""
    port = LocalPort(payload_parser(producer.codec_name))
    follower = LayerFollower(producer, port,
                             STALE_AFTER if stale_after is None else stale_after)
    reader = make_reader(follower.track)
    if reader is None:
        return None
    port.bind(reader)
    producer.add_downstream(follower)
    port.connect(SendParameters(payload_type=LOCAL_PAYLOAD_TYPE, ssrc=random.getrandbits(32),
                                codec_name=producer.codec_name))
    return reader
