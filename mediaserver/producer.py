"""Producer: one inbound track from a publisher, fanned out to its consumers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from mediaserver.aiortc_hooks import ReceiverTap
from mediaserver.codecs import payload_parser
from mediaserver.errors import ClosedError
from mediaserver.keyframe_throttle import KeyframeRequestThrottle
from mediaserver.rtp_rewriter import ExtensionIds, build_extensions

if TYPE_CHECKING:
    from aiortc.rtp import RtpPacket

    from mediaserver.consumer import Consumer
    from mediaserver.latency_probe import LatencyProbe

logger = logging.getLogger(__name__)

NTP_EPOCH_OFFSET = 2208988800


def abs_send_time_now() -> int:
    """The 24-bit abs-send-time value (6.18 fixed-point seconds of NTP time) for now."""
    return int((time.time() + NTP_EPOCH_OFFSET) * 262144) & 0xFFFFFF


class PacketSink(Protocol):
    """An in-process reader of a producer's packets (a recorder, an analyser).

    ``on_packet`` runs on the forwarding path: it must be quick and must not block
    (queue the work). ``on_producer_closed`` is called once, when the track ends.
    """

    def on_packet(self, packet: RtpPacket) -> None: ...

    def on_producer_closed(self) -> None: ...


class ExtensionTemplate:
    """Extension IDs and mid shared by consumers; the block is built once per packet."""

    __slots__ = ("current", "ids", "mid")

    def __init__(self, ids: ExtensionIds, mid: str | None) -> None:
        self.ids = ids
        self.mid = mid.encode() if mid else None
        self.current = b""

    def update(self, abs_send_time: int | None, audio_level: tuple[bool, int] | None) -> None:
        self.current = build_extensions(self.ids, self.mid, abs_send_time, audio_level)


class Producer:
    """Receives RTP from a publisher's ``RTCRtpReceiver`` and forwards each packet,
    header rewritten and never decoded, to every started consumer."""

    def __init__(
        self,
        producer_id: str,
        kind: str,
        codec_name: str,
        codec_parameters: dict[str, object],
        tap_factory: Callable[[Producer], ReceiverTap],
        keyframe_interval: float,
        probe: LatencyProbe | None = None,
    ) -> None:
        self.id = producer_id
        self.kind = kind
        self.codec_name = codec_name
        self.codec_parameters = codec_parameters
        self.closed = False
        self.packets_received = 0
        self.keyframes_seen = 0
        self.keyframe_requests_sent = 0
        self._consumers: tuple[Consumer, ...] = ()
        self._sinks: tuple[PacketSink, ...] = ()
        self._templates: dict[tuple[ExtensionIds, str | None], ExtensionTemplate] = {}
        self._template_list: tuple[ExtensionTemplate, ...] = ()
        self._waiting = 0
        self._detector = payload_parser(codec_name) if kind == "video" else None
        self._throttle = KeyframeRequestThrottle(keyframe_interval)
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._probe = probe
        self.sender_report: tuple[int, int] | None = None  # (ntp, rtp) from the publisher
        self._tap = tap_factory(self)

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        return self._consumers

    # ----------------------------------------------------------------- consumers

    def template_for(self, ids: ExtensionIds, mid: str | None) -> ExtensionTemplate:
        key = (ids, mid)
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = ExtensionTemplate(ids, mid)
            self._template_list = (*self._template_list, template)
        return template

    def add_consumer(self, consumer: Consumer) -> None:
        if self.closed:
            raise ClosedError(f"producer {self.id} is closed")
        self._consumers = (*self._consumers, consumer)

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self._consumers:
            self._consumers = tuple(c for c in self._consumers if c is not consumer)
            if consumer.waiting_for_keyframe:
                self.keyframe_wait_ended()

    def add_sink(self, sink: PacketSink) -> None:
        """Give ``sink`` every packet from now on (ask for a keyframe to start cleanly)."""
        if self.closed:
            raise ClosedError(f"producer {self.id} is closed")
        self._sinks = (*self._sinks, sink)

    def remove_sink(self, sink: PacketSink) -> None:
        self._sinks = tuple(s for s in self._sinks if s is not sink)

    def keyframe_wait_started(self) -> None:
        self._waiting += 1
        self.request_keyframe()

    def keyframe_wait_ended(self) -> None:
        self._waiting = max(0, self._waiting - 1)

    # ----------------------------------------------------------------- hot path

    def on_packet(self, packet: RtpPacket) -> None:
        """Forward one publisher packet to every consumer (called by the receiver tap)."""
        self.packets_received += 1
        keyframe = False
        if self._waiting and self._detector is not None and packet.payload:
            keyframe = self._detector(packet.payload).keyframe
            if keyframe:
                self.keyframes_seen += 1
        extensions = packet.extensions
        abs_send_time = abs_send_time_now()
        for template in self._template_list:
            template.update(abs_send_time, extensions.audio_level)
        for sink in self._sinks:
            try:
                sink.on_packet(packet)
            except Exception:
                logger.exception("[%s] packet sink failed; removing it", self.id)
                self.remove_sink(sink)
        probe = self._probe
        if probe is None:
            for consumer in self._consumers:
                consumer.forward(packet, keyframe)
        else:
            for consumer in self._consumers:
                if consumer.forward(packet, keyframe):
                    probe.copy_sent()

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self.sender_report = (ntp_timestamp, rtp_timestamp)
        for consumer in self._consumers:
            consumer.publisher_sender_report(ntp_timestamp, rtp_timestamp)

    # ----------------------------------------------------------------- keyframes

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per throttle interval.

        A request inside the interval is deferred to the interval's end. While a
        consumer still waits for its first keyframe, the request is repeated.
        """
        if self.closed or self.kind != "video":
            return
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
        task = self._loop.create_task(self._tap.request_keyframe())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._waiting and self._timer is None:
            # Repeat until every waiting consumer has seen a keyframe.
            self._timer = self._loop.call_later(self._throttle.interval, self._retry_waiting)

    def _retry_waiting(self) -> None:
        self._timer = None
        if self._waiting and not self.closed:
            self.request_keyframe()

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the producer and, once, every consumer fed by it."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        consumers, self._consumers = self._consumers, ()
        for consumer in consumers:
            consumer.close()
        sinks, self._sinks = self._sinks, ()
        for sink in sinks:
            try:
                sink.on_producer_closed()
            except Exception:
                logger.exception("[%s] packet sink failed on close", self.id)
        for task in list(self._tasks):
            task.cancel()
