"""Producer: one inbound track from a publisher, fanned out to its downstreams."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from mediaserver.codecs import NO_FLAGS, PayloadParser, payload_parser
from mediaserver.errors import ClosedError
from mediaserver.extension_templates import ExtensionTemplates
from mediaserver.keyframe_throttle import KeyframeRequestThrottle
from mediaserver.layer_policy import LayerRates
from mediaserver.nack_scheduler import RecoveryCounters
from mediaserver.ntp import abs_send_time_now

if TYPE_CHECKING:
    from aiortc.rtp import RtpPacket

    from mediaserver.downstream import Downstream

logger = logging.getLogger(__name__)


class PacketSource(Protocol):
    """Where a producer's packets come from (``aiortc_hooks.ReceiverTap``, a fake in tests).

    The source calls ``Producer.on_packet`` and ``Producer.on_sender_report``; the
    producer only ever asks it for a keyframe.
    """

    async def request_keyframe(self) -> None: ...


class Producer:
    """Receives a publisher's RTP and writes each packet, with the flags parsed once
    from its payload, to every downstream: subscribers' consumers, the recorder, ...

    Implements ``Upstream`` for its downstreams. ``close()`` (its publication's) tells
    every downstream ``producer_closed()`` once.
    """

    def __init__(
        self,
        producer_id: str,
        kind: str,
        codec_name: str,
        codec_parameters: dict[str, object],
        source: Callable[[Producer], PacketSource],
        keyframe_interval: float,
    ) -> None:
        self.id = producer_id
        self.kind = kind
        self.codec_name = codec_name
        self.codec_parameters = codec_parameters
        self.closed = False
        self.packets_received = 0
        self.octets_received = 0  # RTP payload bytes
        self.keyframes_seen = 0
        self.keyframe_requests_sent = 0
        # Upstream loss recovery, counted by the packet source (NACKs, retransmissions).
        self.recovery = RecoveryCounters()
        self.templates = ExtensionTemplates()
        # Bit rate per temporal layer, measured while the flags are read (a layer
        # selector reads them): what the consumers' layer policies choose from.
        self.layer_rates = LayerRates()
        # The publisher's latest (ntp, rtp) clock pair, given to each new downstream.
        self.last_sender_report: tuple[int, int] | None = None
        self._downstreams: tuple[Downstream, ...] = ()
        self._parser = payload_parser(codec_name) if kind == "video" else None
        # The parser while someone reads the flags (a keyframe is awaited, or a downstream
        # reads every packet's flags), else None: see ``Downstream.reads_flags``.
        self._parse: PayloadParser | None = None
        # A keyframe was asked for and none has arrived since: the request is repeated.
        self._keyframe_wanted = False
        self._throttle = KeyframeRequestThrottle(keyframe_interval)
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._source = source(self)

    @property
    def downstreams(self) -> tuple[Downstream, ...]:
        return self._downstreams

    # ----------------------------------------------------------------- downstreams

    def add_downstream(self, downstream: Downstream) -> None:
        """Feed ``downstream`` every packet from now on. Raises ClosedError once closed."""
        if self.closed:
            raise ClosedError(f"producer {self.id} is closed")
        self._downstreams = (*self._downstreams, downstream)
        self._update_parsing()
        if self.last_sender_report is not None:
            downstream.sender_report(*self.last_sender_report)

    def remove_downstream(self, downstream: Downstream) -> None:
        self._downstreams = tuple(d for d in self._downstreams if d is not downstream)
        self._update_parsing()

    def _update_parsing(self) -> None:
        wanted = self._keyframe_wanted or any(d.reads_flags for d in self._downstreams)
        self._parse = self._parser if wanted else None

    # ----------------------------------------------------------------- hot path

    def on_packet(self, packet: RtpPacket) -> None:
        """Write one publisher packet to every downstream (called by the packet source)."""
        self.packets_received += 1
        self.octets_received += len(packet.payload)
        flags = NO_FLAGS
        parse = self._parse
        if parse is not None and packet.payload:
            flags = parse(packet.payload)
            if flags.temporal_id is not None:
                self.layer_rates.add(flags.temporal_id, len(packet.payload), packet.timestamp)
            if flags.keyframe:
                self.keyframes_seen += 1
                if self._keyframe_wanted:
                    self._keyframe_wanted = False
                    self._update_parsing()
        self.templates.update(abs_send_time_now(), packet.extensions.audio_level)
        for downstream in self._downstreams:
            try:
                downstream.write(packet, flags)
            except Exception:
                logger.exception("[%s] downstream %s failed; removing it", self.id,
                                 downstream.id)
                self.remove_downstream(downstream)

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self.last_sender_report = (ntp_timestamp, rtp_timestamp)
        for downstream in self._downstreams:
            downstream.sender_report(ntp_timestamp, rtp_timestamp)

    # ----------------------------------------------------------------- keyframes

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per throttle interval.

        A request inside the interval is deferred to the interval's end. Until a
        keyframe arrives (a new subscriber waits for one to start), the request is
        repeated every interval.
        """
        if self.closed or self.kind != "video":
            return
        if not self._keyframe_wanted:
            self._keyframe_wanted = True
            self._update_parsing()
        decision = self._throttle.request(self._loop.time())
        if decision.send_now:
            self._send_keyframe_request()
        elif decision.timer_at is not None and self._timer is None:
            self._timer = self._loop.call_at(decision.timer_at, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        if not self.closed and self._throttle.timer_fired(self._loop.time()):
            self._send_keyframe_request()

    def _send_keyframe_request(self) -> None:
        self.keyframe_requests_sent += 1
        task = self._loop.create_task(self._source.request_keyframe())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._keyframe_wanted and self._timer is None:
            self._timer = self._loop.call_later(self._throttle.interval, self._retry)

    def _retry(self) -> None:
        self._timer = None
        if self._keyframe_wanted and self._downstreams and not self.closed:
            self.request_keyframe()

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the producer (its publication ended); each downstream is told once."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        downstreams, self._downstreams = self._downstreams, ()
        for downstream in downstreams:
            try:
                downstream.producer_closed()
            except Exception:
                logger.exception("[%s] downstream %s failed on close", self.id, downstream.id)
        for task in list(self._tasks):
            task.cancel()
