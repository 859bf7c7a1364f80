"""Queue-style fakes for testing Room, Producer and Consumer without peer connections.

``FakeTransports`` is a ``TransportFactory``: its publications make one producer
per media section of the offer, fed by a ``FakeSource`` (the test feeds it
``RtpPacket`` objects); its subscriptions give each consumer a ``FakeSendPort``
that captures the serialised packets and sender-report values the consumer hands
it. Nothing here opens a socket or creates an RTCPeerConnection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiortc.rtp import RtpPacket

from mediaserver.codecs import PacketFlags
from mediaserver.consumer import Consumer
from mediaserver.datagrams import PortCounters
from mediaserver.downstream import DownstreamStats, Upstream
from mediaserver.errors import ClosedError, NegotiationError
from mediaserver.events import RoomEvent, StreamInfo, TrackInfo
from mediaserver.producer import Producer
from mediaserver.receiver_loss import ReceiverLoss
from mediaserver.send_port import SendParameters, SendPortListener
from mediaserver.transport_factory import StateListener

FINGERPRINT = ":".join(["AB"] * 32)


def sdp(*kinds: str, setup: str = "actpass") -> str:
    """A minimal SDP the server's checks accept: one DTLS-SRTP section per kind."""
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0",
             f"a=fingerprint:sha-256 {FINGERPRINT}", "a=ice-ufrag:abcd",
             "a=ice-pwd:abcdefghijklmnopqrstuvwx"]
    for index, kind in enumerate(kinds):
        pt, codec = (96, "VP8/90000") if kind == "video" else (111, "opus/48000/2")
        lines += [f"m={kind} 9 UDP/TLS/RTP/SAVPF {pt}", "c=IN IP4 0.0.0.0",
                  f"a=mid:{index}", f"a=rtpmap:{pt} {codec}", f"a=setup:{setup}"]
    return "\r\n".join(lines) + "\r\n"


OFFER = sdp("video", "audio")
VIDEO_OFFER = sdp("video")
ANSWER = sdp("video", "audio", setup="active")

VP8_KEYFRAME = b"\x10\x00\x9d\x01\x2a" + bytes(20)  # S=1, partition 0; frame tag P=0
VP8_DELTA = b"\x10\x01" + bytes(20)  # S=1; frame tag P=1
VP8_CONTINUATION = b"\x00" + bytes(20)  # not the start of a frame


def rtp(seq: int, timestamp: int = 0, payload: bytes = VP8_DELTA, marker: int = 0,
        ssrc: int = 0x1234, payload_type: int = 96) -> RtpPacket:
    return RtpPacket(payload_type=payload_type, marker=marker, sequence_number=seq,
                     timestamp=timestamp, ssrc=ssrc, payload=payload)


class Member:
    """A room member that keeps every event it is told."""

    def __init__(self, service: bool = False) -> None:
        self.service = service
        self.events: list[RoomEvent] = []

    def on_room_event(self, event: RoomEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]


# --------------------------------------------------------------------------- producer side


class FakeSource:
    """A producer's packet source: the test feeds packets; keyframe requests are counted."""

    def __init__(self) -> None:
        self.producer: Producer | None = None
        self.keyframe_requests = 0

    def bind(self, producer: Producer) -> FakeSource:
        self.producer = producer
        return self

    async def request_keyframe(self) -> None:
        self.keyframe_requests += 1

    def feed(self, packet: RtpPacket) -> None:
        assert self.producer is not None
        self.producer.on_packet(packet)

    def report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        assert self.producer is not None
        self.producer.on_sender_report(0x1234, ntp_timestamp, rtp_timestamp)


def fake_producer(producer_id: str = "s-1-0", kind: str = "video", codec: str = "VP8",
                  keyframe_interval: float = 0.5) -> tuple[Producer, FakeSource]:
    source = FakeSource()
    return Producer(producer_id, kind, codec, {}, source.bind, keyframe_interval), source


class QueueReader:
    """A recorder-style downstream: queues every packet (with its flags) it is given."""

    def __init__(self, reader_id: str, upstream: Upstream, reads_flags: bool = False) -> None:
        self.id = reader_id
        self.reads_flags = reads_flags
        self.closed = False
        self.queue: asyncio.Queue[tuple[RtpPacket, PacketFlags]] = asyncio.Queue()
        self.reports: list[tuple[int, int]] = []
        self.ended = 0
        self._upstream = upstream

    def write(self, packet: RtpPacket, flags: PacketFlags) -> bool:
        if self.closed:
            return False
        self.queue.put_nowait((packet, flags))
        return True

    def sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self.reports.append((ntp_timestamp, rtp_timestamp))

    def producer_closed(self) -> None:
        if not self.closed:
            self.closed = True
            self.ended += 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._upstream.remove_downstream(self)

    def stats(self) -> DownstreamStats:
        return DownstreamStats(self.id, "reader", packets_sent=self.queue.qsize())

    def packets(self) -> list[RtpPacket]:
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait()[0])
        return out


# --------------------------------------------------------------------------- subscriber side


class FakeSendPort:
    """Captures what a consumer sends; the test plays the subscriber's side."""

    def __init__(self) -> None:
        self.listener: SendPortListener | None = None
        self.sent: list[bytes] = []
        self.reports: list[tuple[int, int, int, int]] = []
        self.closed = False
        self.connected = False

    def listen(self, listener: SendPortListener) -> None:
        self.listener = listener

    def send(self, data: bytes) -> bool:
        if self.closed or not self.connected:
            return False
        self.sent.append(data)
        return True

    def set_report(self, ntp_timestamp: int, rtp_timestamp: int, packets: int,
                   octets: int) -> None:
        self.reports.append((ntp_timestamp, rtp_timestamp, packets, octets))

    def close(self) -> None:
        self.closed = True

    # The subscriber's side.

    def negotiate(self, parameters: SendParameters) -> None:
        assert self.listener is not None
        self.connected = True
        self.listener.negotiated(parameters)

    def nack(self, sequence_number: int) -> None:
        assert self.listener is not None
        self.listener.retransmit(sequence_number, time.monotonic())

    def pli(self) -> None:
        assert self.listener is not None
        self.listener.keyframe_requested()

    def receiver_report(self, packets_lost: int, highest_sequence: int, now: float,
                        fraction_lost: float = 0.0) -> None:
        assert self.listener is not None
        self.listener.loss_reported(
            ReceiverLoss(fraction_lost, packets_lost, highest_sequence), now)

    def remb(self, bitrate: float, now: float) -> None:
        assert self.listener is not None
        self.listener.remb_received(bitrate, now)


def send_parameters(kind: str = "video", ssrc: int = 0xABCDEF01,
                    rtx: bool = True) -> SendParameters:
    if kind == "video":
        return SendParameters(payload_type=100, ssrc=ssrc, rtx_payload_type=101 if rtx else None,
                              rtx_ssrc=ssrc + 1, codec_name="VP8")
    return SendParameters(payload_type=109, ssrc=ssrc, codec_name="opus")


# --------------------------------------------------------------------------- transports


class FakeTransport:
    direction = "none"

    def __init__(self, transport_id: str, participant_id: str, on_state: StateListener) -> None:
        self.id = transport_id
        self.participant_id = participant_id
        self.state = "new"
        self.closed = False
        self.port_counters = PortCounters()
        self.remote_candidates: list[tuple[str, str | None]] = []
        self._on_state = on_state

    def connection_state(self, state: str) -> None:
        """The network changed the connection's state (what aiortc would report)."""
        if self.closed:
            return
        self.state = state
        self._on_state(self, state)
        if state in ("failed", "closed"):
            self.close()

    async def add_remote_candidate(self, candidate: str, mid: str | None) -> None:
        self.remote_candidates.append((candidate, mid))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.state = "closed"
        self._close_media()

    def _close_media(self) -> None:
        pass

    async def wait_closed(self) -> None:
        await asyncio.sleep(0)


class FakePublication(FakeTransport):
    direction = "publish"

    def __init__(self, transport_id: str, participant_id: str, on_state: StateListener,
                 keyframe_interval: float) -> None:
        super().__init__(transport_id, participant_id, on_state)
        self.producers: list[Producer] = []
        self.sources: list[FakeSource] = []
        self._keyframe_interval = keyframe_interval

    async def negotiate(self, offer_sdp: str) -> str:
        if self.closed:
            raise ClosedError(f"publication {self.id} is closed")
        kinds = [line[2:].split()[0] for line in offer_sdp.splitlines() if line.startswith("m=")]
        for index, kind in enumerate(kinds):
            source = FakeSource()
            codec = "VP8" if kind == "video" else "opus"
            self.producers.append(Producer(f"{self.id}-{index}", kind, codec, {}, source.bind,
                                           self._keyframe_interval))
            self.sources.append(source)
        await asyncio.sleep(0)
        return sdp(*kinds, setup="active")

    def info(self) -> StreamInfo:
        return StreamInfo(self.id, self.participant_id,
                          tuple(TrackInfo(p.id, p.kind, p.codec_name) for p in self.producers),
                          self.state)

    def _close_media(self) -> None:
        for producer in self.producers:
            producer.close()


class FakeSubscription(FakeTransport):
    direction = "subscribe"

    def __init__(self, transport_id: str, participant_id: str, stream_id: str,
                 on_state: StateListener, buffer_size: int) -> None:
        super().__init__(transport_id, participant_id, on_state)
        self.stream_id = stream_id
        self.consumers: list[Consumer] = []
        self.ports: list[FakeSendPort] = []
        self._buffer_size = buffer_size
        self._answered = False

    async def create_offer(self, producers: Sequence[Producer]) -> str:
        if self.closed:
            raise ClosedError(f"subscription {self.id} is closed")
        for producer in producers:
            port = FakeSendPort()
            consumer = Consumer(f"{self.id}-{len(self.consumers)}", producer.kind, producer,
                                producer.templates, port, self._buffer_size)
            producer.add_downstream(consumer)
            self.consumers.append(consumer)
            self.ports.append(port)
        await asyncio.sleep(0)
        return sdp(*(p.kind for p in producers))

    async def answer_offer(self, producers: Sequence[Producer], offer_sdp: object) -> str:
        offer = await self.create_offer(producers)
        self._answered = True
        return offer

    async def accept_answer(self, answer_sdp: object) -> None:
        if self.closed:
            raise ClosedError(f"subscription {self.id} is closed")
        if self._answered or not isinstance(answer_sdp, str):
            raise NegotiationError("no offer is waiting for an answer on this subscription")
        self._answered = True

    def connect(self) -> None:
        """The subscriber's transport came up: each port reports its negotiated parameters."""
        self.connection_state("connected")
        for index, (consumer, port) in enumerate(zip(self.consumers, self.ports, strict=True)):
            port.negotiate(send_parameters(consumer.kind, ssrc=0x10000 * (index + 1)))

    def _close_media(self) -> None:
        for consumer in self.consumers:
            consumer.close()


class FakeTransports:
    """A ``TransportFactory`` of fakes; keeps every transport it made."""

    def __init__(self, keyframe_interval: float = 0.5, buffer_size: int = 64) -> None:
        self.keyframe_interval = keyframe_interval
        self.buffer_size = buffer_size
        self.publications: list[FakePublication] = []
        self.subscriptions: list[FakeSubscription] = []

    def publication(self, transport_id: str, participant_id: str,
                    on_state: StateListener) -> FakePublication:
        publication = FakePublication(transport_id, participant_id, on_state,
                                      self.keyframe_interval)
        self.publications.append(publication)
        return publication

    def subscription(self, transport_id: str, participant_id: str, stream_id: str,
                     on_state: StateListener) -> FakeSubscription:
        subscription = FakeSubscription(transport_id, participant_id, stream_id, on_state,
                                        self.buffer_size)
        self.subscriptions.append(subscription)
        return subscription
