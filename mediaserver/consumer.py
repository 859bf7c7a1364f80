"""Consumer: one outbound copy of a producer's track, to one subscriber."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from mediaserver.aiortc_hooks import NegotiatedSend, RawRtpSink, SenderHooks
from mediaserver.errors import ClosedError
from mediaserver.producer import NTP_EPOCH_OFFSET, ExtensionTemplate
from mediaserver.retransmission_buffer import RetransmissionBuffer
from mediaserver.rtp_rewriter import (
    PADDING_BIT,
    ExtensionIds,
    RtpRewriter,
    padding_bytes,
    wrap_rtx,
)

if TYPE_CHECKING:
    from aiortc import RTCRtpSender
    from aiortc.rtp import RtpPacket

    from mediaserver.producer import Producer

logger = logging.getLogger(__name__)


def ntp_now() -> int:
    now = time.time() + NTP_EPOCH_OFFSET
    return (int(now) << 32) | int((now % 1) * (1 << 32))


class Consumer:
    """Forwards a producer's packets to one subscriber's ``RTCRtpSender``.

    Video starts at a keyframe: until one arrives the consumer asks the producer
    for one (throttled) and drops packets. Every sent packet is kept in a
    retransmission buffer that answers the subscriber's NACKs (over RTX when the
    subscriber negotiated it).
    """

    def __init__(
        self,
        consumer_id: str,
        producer: Producer,
        sender: RTCRtpSender,
        buffer_size: int,
        on_close: Callable[[Consumer], None] | None = None,
    ) -> None:
        if producer.closed:
            raise ClosedError(f"producer {producer.id} is closed")
        self.id = consumer_id
        self.producer = producer
        self.kind = producer.kind
        self.closed = False
        self.packets_sent = 0
        self.octets_sent = 0
        self.retransmissions = 0
        self.keyframe_requests = 0
        self.waiting_for_keyframe = False
        self._needs_keyframe = producer.kind == "video"
        self._on_close = on_close
        self._history = RetransmissionBuffer(buffer_size)
        self._rewriter: RtpRewriter | None = None
        self._template: ExtensionTemplate | None = None
        self._sink: RawRtpSink | None = None
        self._negotiated: NegotiatedSend | None = None
        self._rtx_seq = random.getrandbits(15)
        self._connected = False
        self._hooks = SenderHooks(
            sender,
            on_negotiated=self._on_negotiated,
            on_nack=self.retransmit,
            on_keyframe_request=self._on_keyframe_request,
        )
        producer.add_consumer(self)

    @property
    def started(self) -> bool:
        return self._rewriter is not None and self._rewriter.started

    # ----------------------------------------------------------------- set-up

    def _on_negotiated(self, negotiated: NegotiatedSend) -> None:
        self._negotiated = negotiated
        self._rewriter = RtpRewriter(
            ssrc=negotiated.ssrc,
            payload_type=negotiated.payload_type,
            initial_seq=random.getrandbits(15),
            initial_ts=random.getrandbits(32),
        )
        self._template = self.producer.template_for(
            ExtensionIds.from_uris(negotiated.extension_ids), negotiated.mid
        )
        self._sink = RawRtpSink(self._hooks.transport)
        # aiortc calls RTCRtpSender.send() only once DTLS is connected.
        self.transport_connected()

    def transport_connected(self) -> None:
        """The subscriber's DTLS transport is up: start (video: ask for a keyframe)."""
        if self.closed or self._connected:
            return
        self._connected = True
        if self._needs_keyframe:
            self.waiting_for_keyframe = True
            self.producer.keyframe_wait_started()

    # ----------------------------------------------------------------- hot path

    def forward(self, packet: RtpPacket, keyframe: bool) -> bool:
        """Send one producer packet to the subscriber; True when a copy was sent."""
        rewriter = self._rewriter
        if rewriter is None:
            return False
        seq_in = packet.sequence_number
        if not rewriter.started:
            if not self._connected or (self._needs_keyframe and not keyframe):
                return False
            rewriter.start(seq_in, packet.timestamp)
            self._first_report(packet.timestamp)
            if self.waiting_for_keyframe:
                self.waiting_for_keyframe = False
                self.producer.keyframe_wait_ended()
        elif not rewriter.accepts(seq_in):
            return False
        payload = packet.payload
        template = self._template
        extensions = template.current if template is not None else b""
        if packet.padding_size and not payload:
            seq, data = rewriter.rewrite(packet.marker, seq_in, packet.timestamp, extensions,
                                         padding_bytes(packet.padding_size))
            data = bytes([data[0] | PADDING_BIT]) + data[1:]
        else:
            seq, data = rewriter.rewrite(packet.marker, seq_in, packet.timestamp, extensions,
                                         payload)
        self._history.put(seq, data)
        if self._sink is not None and self._sink.send(data):
            self.packets_sent += 1
            self.octets_sent += len(payload)
            return True
        return False

    # ----------------------------------------------------------------- feedback

    def retransmit(self, out_seq: int) -> None:
        """Answer a subscriber NACK from the retransmission buffer."""
        data = self._history.get(out_seq)
        negotiated = self._negotiated
        if data is None or negotiated is None or self._sink is None:
            return
        if negotiated.rtx_payload_type is not None:
            data = wrap_rtx(data, negotiated.rtx_payload_type, self._rtx_seq, negotiated.rtx_ssrc)
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        if self._sink.send(data):
            self.retransmissions += 1

    def _on_keyframe_request(self) -> None:
        self.keyframe_requests += 1
        self.producer.request_keyframe()

    def _first_report(self, in_ts: int) -> None:
        """Until the publisher's first sender report, map wall clock to the first packet."""
        report = self.producer.sender_report
        if report is not None:
            self.publisher_sender_report(*report)
        elif self._rewriter is not None:
            self._hooks.set_report(ntp_now(), self._rewriter.out_ts(in_ts), 0, 0)

    def publisher_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """Translate the publisher's NTP/RTP pair into this consumer's timestamp space, so
        the subscriber can synchronise audio and video exactly as the publisher sent them."""
        rewriter = self._rewriter
        if rewriter is None or not rewriter.started or self.closed:
            return
        self._hooks.set_report(
            ntp_timestamp,
            rewriter.out_ts(rtp_timestamp),
            self.packets_sent & 0xFFFFFFFF,
            self.octets_sent & 0xFFFFFFFF,
        )

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.producer.remove_consumer(self)
        if self._sink is not None:
            self._sink.close()
        self._sink = None
        if self._on_close is not None:
            callback, self._on_close = self._on_close, None
            callback(self)
