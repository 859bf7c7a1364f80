"""Producer: one inbound track from a publisher, fanned out to its downstreams."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from mediaserver.codecs import NO_FLAGS, PacketFlags, PayloadParser, payload_parser
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
    producer only ever asks it for a keyframe. A simulcast source also passes each
    packet's (and report's) spatial layer, and is asked for a keyframe of one layer.
    """

    async def request_keyframe(self) -> None: ...


class _KeyframeWish:
    """One layer's keyframe requests: throttled, and repeated until a keyframe arrives."""

    __slots__ = ("throttle", "timer", "wanted")

    def __init__(self, interval: float) -> None:
        self.throttle = KeyframeRequestThrottle(interval)
        self.timer: asyncio.TimerHandle | None = None
        self.wanted = False


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
        spatial_layers: int = 0,
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
        # Simulcast: the number of spatial layers (0: one stream). Downstreams that do
        # not select spatial layers (``selects_spatial``: the recorder, a consumer
        # without a simulcast selector) get the primary, highest, layer only, never a mix.
        self.spatial_layers = spatial_layers
        self.primary_layer = max(spatial_layers - 1, 0)
        self.spatial_rates = [LayerRates() for _ in range(spatial_layers)]
        self.layer_seen: list[float | None] = [None] * spatial_layers  # loop time, per layer
        self.layer_reports: dict[int, tuple[int, int]] = {}
        self._spatial: tuple[Downstream, ...] = ()
        self._downstreams: tuple[Downstream, ...] = ()
        self._parser = payload_parser(codec_name) if kind == "video" else None
        # The parser while someone reads the flags (a keyframe is awaited, or a downstream
        # reads every packet's flags), else None: see ``Downstream.reads_flags``.
        self._parse: PayloadParser | None = None
        # Per layer: a keyframe was asked for and none has arrived since (repeated).
        self._keyframe_interval = keyframe_interval
        self._wishes: dict[int, _KeyframeWish] = {}
        self._keyframe_wanted = False  # any layer's
        self._loop = asyncio.get_running_loop()
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
        if self.spatial_layers and getattr(downstream, "selects_spatial", False):
            self._spatial = (*self._spatial, downstream)
            for layer, report in self.layer_reports.items():
                downstream.layer_sender_report(layer, *report)  # type: ignore[attr-defined]
        self._update_parsing()
        if self.last_sender_report is not None:
            downstream.sender_report(*self.last_sender_report)

    def remove_downstream(self, downstream: Downstream) -> None:
        self._downstreams = tuple(d for d in self._downstreams if d is not downstream)
        self._spatial = tuple(d for d in self._spatial if d is not downstream)
        self._update_parsing()

    def active_layers(self, now: float | None = None, within: float = 1.0) -> list[int]:
        """The spatial layers a packet arrived on in the last ``within`` seconds."""
        now = self._loop.time() if now is None else now
        return [layer for layer, seen in enumerate(self.layer_seen)
                if seen is not None and now - seen <= within]

    def _update_parsing(self) -> None:
        self._keyframe_wanted = any(wish.wanted for wish in self._wishes.values())
        wanted = self._keyframe_wanted or any(d.reads_flags for d in self._downstreams)
        self._parse = self._parser if wanted else None

    # ----------------------------------------------------------------- hot path

    def on_packet(self, packet: RtpPacket, layer: int = 0) -> None:
        """Write one publisher packet to every downstream (called by the packet source);
        ``layer``: its spatial layer (simulcast)."""
        self.packets_received += 1
        self.octets_received += len(packet.payload)
        flags = NO_FLAGS
        parse = self._parse
        if parse is not None and packet.payload:
            flags = parse(packet.payload)
            if not self.spatial_layers and flags.temporal_id is not None:
                self.layer_rates.add(flags.temporal_id, len(packet.payload), packet.timestamp)
            if flags.keyframe:
                self.keyframes_seen += 1
                wish = self._wishes.get(layer)
                if wish is not None and wish.wanted:
                    wish.wanted = False
                    self._update_parsing()
        if self.spatial_layers:
            flags = self._spatial_flags(flags, layer, len(packet.payload), packet.timestamp)
        self.templates.update(abs_send_time_now(), packet.extensions.audio_level)
        downstreams = self._downstreams if layer == self.primary_layer else self._spatial
        for downstream in downstreams:
            try:
                downstream.write(packet, flags)
            except Exception:
                logger.exception("[%s] downstream %s failed; removing it", self.id,
                                 downstream.id)
                self.remove_downstream(downstream)

    def _spatial_flags(self, flags: PacketFlags, layer: int, size: int,
                       timestamp: int) -> PacketFlags:
        """Measure the layer's rates and mark ``flags`` with the spatial layer."""
        self.layer_seen[layer] = self._loop.time()
        if self._parse is not None:  # rates are measured while someone reads them
            self.spatial_rates[layer].add(flags.temporal_id or 0, size, timestamp)
            if flags.temporal_id is not None and layer == self.primary_layer:
                self.layer_rates.add(flags.temporal_id, size, timestamp)
        if not layer or not self._spatial:
            return flags
        return PacketFlags(flags.keyframe, flags.start, flags.temporal_id, flags.layer_sync,
                           flags.tl0_pic_idx, flags.picture_id, flags.size, layer)

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int,
                         layer: int = 0) -> None:
        """The publisher's clocks for one stream (simulcast: of spatial ``layer``)."""
        if self.spatial_layers:
            self.layer_reports[layer] = (ntp_timestamp, rtp_timestamp)
            for downstream in self._spatial:
                downstream.layer_sender_report(  # type: ignore[attr-defined]
                    layer, ntp_timestamp, rtp_timestamp)
            if layer != self.primary_layer:
                return
        self.last_sender_report = (ntp_timestamp, rtp_timestamp)
        for downstream in self._downstreams:
            if downstream not in self._spatial:
                downstream.sender_report(ntp_timestamp, rtp_timestamp)

    # ----------------------------------------------------------------- keyframes

    def request_keyframe(self, layer: int | None = None) -> None:
        """Ask the publisher for a keyframe, at most once per throttle interval.

        A request inside the interval is deferred to the interval's end. Until a
        keyframe arrives (a new subscriber waits for one to start), the request is
        repeated every interval. ``layer``: the spatial layer (simulcast; None: the
        primary one). Each layer has its own stream, so its own throttle and PLIs.
        """
        if self.closed or self.kind != "video":
            return
        layer = self.primary_layer if layer is None else layer
        if not 0 <= layer <= self.primary_layer:
            return
        wish = self._wishes.get(layer)
        if wish is None:
            wish = self._wishes[layer] = _KeyframeWish(self._keyframe_interval)
        if not wish.wanted:
            wish.wanted = True
            self._update_parsing()
        decision = wish.throttle.request(self._loop.time())
        if decision.send_now:
            self._send_keyframe_request(layer, wish)
        elif decision.timer_at is not None and wish.timer is None:
            wish.timer = self._loop.call_at(decision.timer_at, self._timer_fired, layer, wish)

    def _timer_fired(self, layer: int, wish: _KeyframeWish) -> None:
        wish.timer = None
        if not self.closed and wish.throttle.timer_fired(self._loop.time()):
            self._send_keyframe_request(layer, wish)

    def _send_keyframe_request(self, layer: int, wish: _KeyframeWish) -> None:
        self.keyframe_requests_sent += 1
        source: Any = self._source
        request = source.request_keyframe(layer) if self.spatial_layers else (
            source.request_keyframe())
        task = self._loop.create_task(request)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if wish.wanted and wish.timer is None:
            wish.timer = self._loop.call_later(wish.throttle.interval, self._retry, layer, wish)

    def _retry(self, layer: int, wish: _KeyframeWish) -> None:
        wish.timer = None
        if wish.wanted and self._downstreams and not self.closed:
            self.request_keyframe(layer)

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the producer (its publication ended); each downstream is told once."""
        if self.closed:
            return
        self.closed = True
        for wish in self._wishes.values():
            if wish.timer is not None:
                wish.timer.cancel()
                wish.timer = None
        downstreams, self._downstreams, self._spatial = self._downstreams, (), ()
        for downstream in downstreams:
            try:
                downstream.producer_closed()
            except Exception:
                logger.exception("[%s] downstream %s failed on close", self.id, downstream.id)
        for task in list(self._tasks):
            task.cancel()
