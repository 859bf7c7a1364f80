"""Consumer: one outbound RTP copy of a producer's track, to one subscriber."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

from mediaserver.codecs import ForwardAll, LayerSelector, PictureIdRewriter, TemporalLayerSelector
from mediaserver.downlink_estimate import DownlinkEstimate
from mediaserver.downstream import DownstreamStats
from mediaserver.layer_policy import LayerRates, choose_layer
from mediaserver.ntp import ntp_now
from mediaserver.retransmission_buffer import RetransmissionBuffer
from mediaserver.rtp_rewriter import (
    PADDING_BIT,
    ExtensionIds,
    RtpRewriter,
    padding_bytes,
    wrap_rtx,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiortc.rtp import RtpPacket

    from mediaserver.codecs import PacketFlags
    from mediaserver.downstream import Upstream
    from mediaserver.extension_templates import ExtensionTemplate, ExtensionTemplates
    from mediaserver.send_port import SendParameters, SendPort

logger = logging.getLogger(__name__)


class Consumer:
    """A ``Downstream`` that rewrites a producer's packets for one subscriber's ``SendPort``.

    Video starts at a keyframe: once the port reports the negotiated parameters, the
    consumer asks upstream for one and drops packets until ``flags.keyframe``. Every
    sent packet is kept in a retransmission buffer that answers the subscriber's
    NACKs (over RTX when the subscriber negotiated it).

    The ``LayerSelector`` is consulted for each new packet before it is rewritten (the
    default forwards everything and is never asked). What it drops is taken out of the
    consumer's sequence space by ``RtpRewriter.skip`` (the subscriber sees no gap and
    NACKs nothing), and out of the VP8 picture ids by ``PictureIdRewriter``; a late
    original or a retransmission of a dropped packet is never forwarded. The selector
    itself decides where switching is safe (a keyframe, a layer-sync point).

    ``write`` after ``close``/``producer_closed`` returns False silently (the hot
    path never raises); ``close`` twice is a no-op.
    """

    def __init__(
        self,
        consumer_id: str,
        kind: str,
        upstream: Upstream,
        templates: ExtensionTemplates,
        port: SendPort,
        buffer_size: int,
        selector: LayerSelector | None = None,
        layer_rates: LayerRates | None = None,
    ) -> None:
        self.id = consumer_id
        self.kind = kind
        self.closed = False
        self.packets_sent = 0
        self.octets_sent = 0
        self.retransmissions = 0  # NACKs answered from the buffer
        self.nacks_received = 0
        self.nacks_unanswerable = 0  # the packet was not in the buffer (yet)
        self.keyframe_requests = 0
        self.waiting_for_keyframe = False
        self._upstream = upstream
        self._templates = templates
        self._port = port
        self._needs_keyframe = kind == "video"
        # ForwardAll is never asked: the common case costs nothing per packet.
        selector = selector or ForwardAll()
        self.selector: LayerSelector = selector
        self._select: Callable[[PacketFlags], bool] | None = (
            None if isinstance(selector, ForwardAll) else selector.select)
        self._pictures = PictureIdRewriter()
        self.packets_skipped = 0
        self.layer_switches = 0
        # The viewer's downlink, from its REMB and receiver reports: only while a temporal
        # selector has layers to choose from (audio is never throttled).
        self.downlink: DownlinkEstimate | None = None
        self._layer_rates = layer_rates
        if isinstance(selector, TemporalLayerSelector) and layer_rates is not None:
            self.downlink = DownlinkEstimate()
        self._target_bitrate: float | None = None
        self._rate_mark: tuple[float | None, int] = (None, 0)
        self._last_rate: float | None = None
        self._history = RetransmissionBuffer(buffer_size)
        self._rewriter: RtpRewriter | None = None
        self._template: ExtensionTemplate | None = None
        self._negotiated: SendParameters | None = None
        self._publisher_report: tuple[int, int] | None = None
        self._rtx_seq = random.getrandbits(15)
        port.listen(self)

    @property
    def started(self) -> bool:
        return self._rewriter is not None and self._rewriter.started

    @property
    def reads_flags(self) -> bool:
        """A layer selector reads every packet's flags; ForwardAll reads none."""
        return self._select is not None

    def stats(self) -> DownstreamStats:
        selector = self.selector
        layer = selector.current if isinstance(selector, TemporalLayerSelector) else None
        target = self._target_bitrate
        return DownstreamStats(self.id, "rtp", self.packets_sent, self.retransmissions,
                               self.keyframe_requests, self.started,
                               nacks_received=self.nacks_received,
                               nacks_unanswerable=self.nacks_unanswerable,
                               nacks_filled_late=self._history.filled_late,
                               octets_sent=self.octets_sent,
                               temporal_layer=layer,
                               target_bitrate=None if target is None else int(target),
                               layer_switches=self.layer_switches)

    # ----------------------------------------------------------------- send port events

    def negotiated(self, parameters: SendParameters) -> None:
        """The subscriber's transport is up: start (video: ask for a keyframe first)."""
        if self.closed or self._negotiated is not None:
            return
        self._negotiated = parameters
        self._rewriter = RtpRewriter(
            ssrc=parameters.ssrc,
            payload_type=parameters.payload_type,
            initial_seq=random.getrandbits(15),
            initial_ts=random.getrandbits(32),
        )
        self._template = self._templates.template_for(
            ExtensionIds.from_uris(parameters.extension_ids), parameters.mid)
        if self._needs_keyframe:
            self.waiting_for_keyframe = True
            self._upstream.request_keyframe()

    def retransmit(self, sequence_number: int) -> None:
        """Answer a subscriber NACK from the retransmission buffer.

        A packet not in the buffer is usually one the server is itself still asking
        the publisher for: it is remembered, and forwarded like any packet when it
        arrives. It is no reason to ask the publisher for a keyframe (the subscriber
        sends a PLI itself if it cannot wait).
        """
        self.nacks_received += 1
        negotiated = self._negotiated
        if negotiated is None or self.closed:
            return
        data = self._history.get(sequence_number)
        if data is None:
            self.nacks_unanswerable += 1
            self._history.awaited(sequence_number)
            return
        if negotiated.rtx_payload_type is not None:
            data = wrap_rtx(data, negotiated.rtx_payload_type, self._rtx_seq, negotiated.rtx_ssrc)
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        if self._port.send(data):
            self.retransmissions += 1

    def keyframe_requested(self) -> None:
        self.keyframe_requests += 1
        self._upstream.request_keyframe()

    def remb_received(self, bitrate: float, now: float) -> None:
        if self.downlink is not None and not self.closed:
            self.downlink.on_remb(bitrate, now, self._sending_rate(now))
            self._choose_layer(now)

    def _sending_rate(self, now: float) -> float | None:
        """The payload bit rate sent lately, smoothed (None until two reports apart)."""
        then, octets = self._rate_mark
        if then is not None and now - then < 0.2:
            return self._last_rate
        self._rate_mark = (now, self.octets_sent)
        if then is not None:
            rate = (self.octets_sent - octets) * 8 / (now - then)
            last = self._last_rate
            self._last_rate = rate if last is None else (last + rate) / 2
        return self._last_rate

    def loss_reported(self, fraction_lost: float, now: float) -> None:
        if self.downlink is not None and not self.closed:
            self.downlink.on_loss(fraction_lost, now)
            self._choose_layer(now)

    def _choose_layer(self, now: float) -> None:
        """Point the temporal selector at the highest layer the downlink carries (it
        switches there at the next safe point)."""
        selector, rates, downlink = self.selector, self._layer_rates, self.downlink
        if not isinstance(selector, TemporalLayerSelector) or rates is None or downlink is None:
            return
        self._target_bitrate = downlink.target(now)
        layer = choose_layer(self._target_bitrate, rates.cumulative(), selector.target)
        if layer != selector.target:
            # Above the highest layer the publisher sends, nothing changes for the viewer.
            if min(layer, rates.highest) != min(selector.target, rates.highest):
                self.layer_switches += 1
            selector.target = layer

    # ----------------------------------------------------------------- hot path

    def write(self, packet: RtpPacket, flags: PacketFlags) -> bool:
        """Send one producer packet to the subscriber; True when a copy was sent."""
        rewriter = self._rewriter
        if rewriter is None:
            return False
        seq_in = packet.sequence_number
        select = self._select
        if not rewriter.started:
            if select is not None and not select(flags):
                return False
            if self._needs_keyframe and not flags.keyframe:
                return False
            rewriter.start(seq_in, packet.timestamp)
            self._first_report(packet.timestamp)
            self.waiting_for_keyframe = False
        elif select is not None and rewriter.is_new(seq_in) and not select(flags):
            # Dropped by the layer selector: out of the sequence (and picture id) space.
            rewriter.skip(seq_in)
            self._pictures.drop(flags)
            self.packets_skipped += 1
            return False
        seq = rewriter.sequence(seq_in, packet.timestamp)
        if seq < 0:
            return False
        payload: bytes | None = packet.payload
        if select is not None and self._pictures.active:
            payload = self._pictures.rewrite(packet.payload, flags)
        template = self._template
        extensions = template.current if template is not None else b""
        if payload is None:  # a late packet of a dropped frame: keep its slot, as padding
            data = rewriter.packet(0, seq, packet.timestamp, extensions, padding_bytes(4))
            data = bytes([data[0] | PADDING_BIT]) + data[1:]
            payload = b""
        elif packet.padding_size and not payload:
            data = rewriter.packet(packet.marker, seq, packet.timestamp, extensions,
                                   padding_bytes(packet.padding_size))
            data = bytes([data[0] | PADDING_BIT]) + data[1:]
        else:
            data = rewriter.packet(packet.marker, seq, packet.timestamp, extensions, payload)
        self._history.put(seq, data)
        if self._port.send(data):
            self.packets_sent += 1
            self.octets_sent += len(payload)
            return True
        return False

    # ----------------------------------------------------------------- sender reports

    def sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """Translate the publisher's NTP/RTP pair into this consumer's timestamp space, so
        the subscriber can synchronise audio and video exactly as the publisher sent them."""
        self._publisher_report = (ntp_timestamp, rtp_timestamp)
        rewriter = self._rewriter
        if rewriter is None or not rewriter.started or self.closed:
            return
        self._port.set_report(
            ntp_timestamp,
            rewriter.out_ts(rtp_timestamp),
            self.packets_sent & 0xFFFFFFFF,
            self.octets_sent & 0xFFFFFFFF,
        )

    def _first_report(self, in_ts: int) -> None:
        """Until the publisher's first sender report, map wall clock to the first packet."""
        if self._publisher_report is not None:
            self.sender_report(*self._publisher_report)
        elif self._rewriter is not None:
            self._port.set_report(ntp_now(), self._rewriter.out_ts(in_ts), 0, 0)

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """The subscription closes this consumer: detach from the producer, stop sending."""
        if self.closed:
            return
        self._release()
        self._upstream.remove_downstream(self)

    def producer_closed(self) -> None:
        """The producer ended: stop sending (the producer is not called back)."""
        if not self.closed:
            self._release()

    def _release(self) -> None:
        self.closed = True
        self._rewriter = None
        self.waiting_for_keyframe = False
        self._port.close()
