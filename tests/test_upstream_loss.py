"""Loss between the publisher and the server: recovered by retried NACKs, forwarded late.

The unit tests use the fakes (no peers); the last test runs real aiortc peers over
loopback with the server's receive path losing 2 % of the publisher's packets.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from mediaserver import Consumer, MediaConfig, MediaServer
from mediaserver.aiortc_hooks import ReceiverTap
from mediaserver.nack_scheduler import NackSettings
from mediaserver.retransmission_buffer import RetransmissionBuffer
from mediaserver.stats import producer_stats
from tests.fakes import (
    VP8_DELTA,
    VP8_KEYFRAME,
    FakeSendPort,
    Member,
    fake_producer,
    rtp,
    send_parameters,
)
from tests.peers import Subscriber, make_publisher_offer, wait_for


def consumer_on():  # type: ignore[no-untyped-def]
    producer, source = fake_producer()
    port = FakeSendPort()
    consumer = Consumer("d-1-0", "video", producer, producer.templates, port, 64)
    producer.add_downstream(consumer)
    port.negotiate(send_parameters(ssrc=0x1000))
    return producer, source, consumer, port


def parsed(data: bytes) -> RtpPacket:
    return RtpPacket.parse(data)


# --------------------------------------------------------------------------- consumer side


async def test_a_nack_for_a_packet_the_server_lacks_is_answered_when_it_arrives_late():
    producer, source, consumer, port = consumer_on()
    await asyncio.sleep(0)
    requests_before = source.keyframe_requests
    source.feed(rtp(40, 9000, VP8_KEYFRAME))
    source.feed(rtp(41, 9000, VP8_DELTA + b"41"))
    source.feed(rtp(43, 12000, VP8_DELTA + b"43"))  # 42 never reached the server
    first, second, fourth = (parsed(d) for d in port.sent)
    missing = (second.sequence_number + 1) & 0xFFFF
    assert fourth.sequence_number == (missing + 1) & 0xFFFF  # the subscriber sees the gap

    port.nack(missing)
    port.nack(missing)  # the subscriber asks again before the server has it
    assert len(port.sent) == 3 and consumer.retransmissions == 0
    assert consumer.nacks_received == 2 and consumer.nacks_unanswerable == 2

    # The publisher's retransmission reaches the server: forwarded like any packet,
    # in the place the subscriber expects it, with its own payload.
    source.feed(rtp(42, 9000, VP8_DELTA + b"42", marker=1))
    late = parsed(port.sent[3])
    assert late.sequence_number == missing and late.ssrc == 0x1000
    assert late.payload_type == 100 and late.payload == VP8_DELTA + b"42"
    assert late.timestamp == second.timestamp and late.marker == 1
    stats = consumer.stats()
    assert (stats.nacks_received, stats.nacks_unanswerable, stats.nacks_filled_late) == (2, 2, 1)

    # Now it is in the buffer: a NACK that crossed it is answered over RTX.
    port.nack(missing)
    rtx = parsed(port.sent[4])
    assert rtx.payload_type == 101 and rtx.ssrc == 0x1001
    assert struct.unpack("!H", rtx.payload[:2])[0] == missing
    assert rtx.payload[2:] == VP8_DELTA + b"42"
    assert consumer.retransmissions == 1 and consumer.stats().nacks_filled_late == 1

    # Asked again at once (a browser re-asks every few ms): held by the gate, counted.
    port.nack(missing)
    assert len(port.sent) == 5 and consumer.retransmissions == 1
    assert consumer.stats().nacks_held == 1

    # None of this asked the publisher for a keyframe.
    await asyncio.sleep(0.6)
    assert source.keyframe_requests == requests_before and consumer.keyframe_requests == 0
    assert producer.keyframe_requests_sent == requests_before
    assert first.payload == VP8_KEYFRAME


async def test_a_nack_for_a_packet_that_never_comes_is_forgotten():
    _producer, source, consumer, port = consumer_on()
    source.feed(rtp(1, payload=VP8_KEYFRAME))
    start = parsed(port.sent[0]).sequence_number
    port.nack((start + 1) & 0xFFFF)
    port.nack((start - 5) & 0xFFFF)  # from before the start: never sent at all
    for seq in range(3, 3 + 64 + 2):  # 2 is lost for good; the buffer holds 64
        source.feed(rtp(seq))
    assert consumer.stats().nacks_filled_late == 0
    assert consumer._history.awaiting == []
    assert consumer.nacks_unanswerable == 2


def test_the_buffer_remembers_awaited_numbers_briefly_and_boundedly():
    buffer = RetransmissionBuffer(16)
    for seq in range(100):
        buffer.awaited(seq)
    assert buffer.awaiting == list(range(100 - RetransmissionBuffer.MAX_AWAITED, 100))
    buffer = RetransmissionBuffer(16)
    buffer.awaited(65535)
    buffer.awaited(2)
    buffer.put(65534, b"a")
    buffer.put(65535, b"b")  # across the wrap too
    assert buffer.filled_late == 1 and buffer.awaiting == [2]
    buffer.put(2 + 16, b"c")  # 2 is now out of the buffer's reach: forgotten
    assert buffer.awaiting == []
    buffer.put(2, b"d")
    assert buffer.filled_late == 1 and buffer.get(2) == b"d"


# --------------------------------------------------------------------------- the tap's NACKs


class TapOnRealReceiver:
    """A ``ReceiverTap`` on a real (unconnected) aiortc video receiver; the NACKs it
    would send and the keyframes it asks for are recorded instead."""

    def __init__(self, settings: NackSettings) -> None:
        self.pc = RTCPeerConnection()
        receiver: Any = self.pc.addTransceiver("video", direction="recvonly").receiver
        receiver._RTCRtpReceiver__codecs[96] = RTCRtpCodecParameters(
            mimeType="video/VP8", clockRate=90000, payloadType=96)
        receiver._RTCRtpReceiver__codecs[97] = RTCRtpCodecParameters(
            mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96})
        receiver._RTCRtpReceiver__rtx_ssrc[0x5678] = 0x1234
        self.nacks: list[list[int]] = []
        self.keyframes = 0
        self.forwarded: list[int] = []

        async def send_nack(media_ssrc: int, lost: list[int]) -> None:
            assert media_ssrc == 0x1234
            self.nacks.append(lost)

        receiver._send_rtcp_nack = send_nack
        self.receiver = receiver
        self.tap = ReceiverTap(receiver, lambda p: self.forwarded.append(p.sequence_number),
                               lambda *_: None, on_keyframe_needed=self._keyframe,
                               nack_settings=settings)

    def _keyframe(self) -> None:
        self.keyframes += 1

    async def media(self, seq: int) -> None:
        await self.receiver._handle_rtp_packet(rtp(seq), arrival_time_ms=0)

    async def rtx(self, seq: int, rtx_seq: int = 1) -> None:
        packet = rtp(rtx_seq, payload=struct.pack("!H", seq) + VP8_DELTA, ssrc=0x5678,
                     payload_type=97)
        await self.receiver._handle_rtp_packet(packet, arrival_time_ms=0)


async def test_the_tap_repeats_nacks_until_the_retransmission_arrives_then_sleeps():
    tap = TapOnRealReceiver(NackSettings(reorder_window=0.0, min_interval=0.02,
                                         initial_rtt=0.01, max_age=5.0))
    for seq in (65533, 65534, 1, 2):  # 65535 and 0 lost, across the wrap
        await tap.media(seq)
    assert tap.tap._nack_task is not None
    await wait_for(lambda: len(tap.nacks) >= 6, 5, 0.005)  # asked again and again
    assert tap.nacks[:2] == [[65535], [0]]  # one RTCP NACK each side of the wrap
    assert {tuple(n) for n in tap.nacks} == {(65535,), (0,)}
    await tap.rtx(65535)
    await tap.rtx(0, rtx_seq=2)
    assert tap.forwarded[-2:] == [65535, 0]  # unwrapped and forwarded like any packet
    await tap.rtx(0, rtx_seq=3)  # the answer to a second NACK: not forwarded twice
    assert tap.forwarded == [65533, 65534, 1, 2, 65535, 0]
    await wait_for(lambda: tap.tap._nack_task is None, 5, 0.005)  # nothing missing: no timer
    counters = tap.tap.recovery
    assert counters.retransmissions_received == 3 and counters.packets_recovered == 2
    assert counters.retransmissions_unused == 1
    assert counters.nacks_sent == sum(len(n) for n in tap.nacks) and tap.keyframes == 0
    await tap.pc.close()


async def test_the_tap_gives_up_and_asks_for_a_keyframe_instead():
    tap = TapOnRealReceiver(NackSettings(reorder_window=0.0, max_nacks=2, min_interval=0.02,
                                         initial_rtt=0.01, max_gap=50))
    await tap.media(10)
    await tap.media(12)
    await wait_for(lambda: tap.keyframes == 1, 5, 0.005)  # 11 never came back
    assert tap.nacks == [[11], [11]] and tap.tap.recovery.packets_given_up == 1
    await wait_for(lambda: tap.tap._nack_task is None, 5, 0.005)
    await tap.media(12 + 52)  # a jump no NACK is worth: a keyframe at once
    assert tap.keyframes == 2 and tap.tap._nack_task is None
    assert tap.tap.recovery.packets_given_up == 1 + 51
    await tap.pc.close()


# --------------------------------------------------------------------------- real peers


class LossyTap:
    """Loses 2 % of the publisher's video datagrams (media and RTX alike) on arrival,
    in front of the server's packet tap: what a lossy ward uplink does. Besides, the
    first retransmission of every third lost packet is lost too, so that only a
    repeated NACK can recover it."""

    def __init__(self, receiver, rate: float = 0.02, seed: int = 11) -> None:  # type: ignore[no-untyped-def]
        self.inner = receiver._handle_rtp_packet
        self.random = random.Random(seed)
        self.rate = rate
        self.dropped: list[int] = []  # original sequence numbers of dropped media packets
        self.dropped_rtx = 0
        self._lose_rtx_of: set[int] = set()
        self.codecs = receiver._RTCRtpReceiver__codecs  # filled in once media flows
        receiver._handle_rtp_packet = self.handle

    async def handle(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        codec = self.codecs.get(packet.payload_type)
        rtx = codec is not None and codec.name.lower() == "rtx"
        if rtx and len(packet.payload) >= 2:
            original = struct.unpack("!H", packet.payload[:2])[0]
            if original in self._lose_rtx_of:
                self._lose_rtx_of.discard(original)
                self.dropped_rtx += 1
                return
        if self.random.random() < self.rate:
            if rtx:
                self.dropped_rtx += 1
            else:
                self.dropped.append(packet.sequence_number)
                if len(self.dropped) % 3 == 0:
                    self._lose_rtx_of.add(packet.sequence_number)
            return
        await self.inner(packet, arrival_time_ms)


class SentLog:
    """Wraps a consumer's send port: the sequence numbers of first transmissions sent."""

    def __init__(self, consumer: Consumer) -> None:
        self.inner = consumer._port
        self.media_pt = consumer._negotiated.payload_type  # type: ignore[union-attr]
        self.seqs: list[int] = []
        consumer._port = self  # type: ignore[assignment]

    def send(self, packet: bytes) -> bool:
        if packet[1] & 0x7F == self.media_pt:
            self.seqs.append(struct.unpack("!H", packet[2:4])[0])
        return self.inner.send(packet)

    def set_report(self, *values: int) -> None:
        self.inner.set_report(*values)

    def close(self) -> None:
        self.inner.close()


async def test_two_percent_upstream_loss_is_recovered_for_the_viewer():
    server = MediaServer(MediaConfig(ice_addresses=("127.0.0.1",), keyframe_interval=0.5))
    room = server.room("bed-1")
    ward = room.join("ward", "ward", Member())
    pub, offer, _tracks = await make_publisher_offer(audio=False)
    publication, answer = await room.publish(ward, offer)
    video = publication.producers[0]
    lossy = LossyTap(publication.pc.getTransceivers()[0].receiver)
    await pub.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    expert = room.join("expert", "expert", Member())
    sub = Subscriber()
    subscription, sub_offer = await room.subscribe(expert, publication.id)
    await room.answer(expert, subscription.id, await sub.answer(sub_offer))
    consumer = next(d for d in video.downstreams if isinstance(d, Consumer))
    await wait_for(lambda: consumer.started and sub.received.video_frames > 10)

    log = SentLog(consumer)
    dropped_before = len(lossy.dropped)
    frames_before = sub.received.video_frames
    rtx_dropped_before = lossy.dropped_rtx
    recovery_before = producer_stats(video)
    await wait_for(lambda: len(lossy.dropped) - dropped_before >= 15
                   and sub.received.video_frames > frames_before + 90, 60)
    await asyncio.sleep(1.5)  # let the last holes be recovered or given up
    got = {(s - log.seqs[0]) & 0xFFFF for s in log.seqs}
    span = max(got) + 1
    holes = span - len(got)
    stats = producer_stats(video)
    lost = len(lossy.dropped) - dropped_before
    rtx_lost = lossy.dropped_rtx - rtx_dropped_before
    nacks = stats.nacks_sent - recovery_before.nacks_sent
    print(f"\nupstream loss: {lost} media + {rtx_lost} RTX dropped of "
          f"{video.packets_received} received; viewer got {len(got)}/{span} "
          f"({holes} holes); nacks sent {stats.nacks_sent}, retransmissions "
          f"{stats.retransmissions_received}, recovered {stats.packets_recovered}, "
          f"given up {stats.packets_given_up}, rtt {stats.nack_rtt_ms} ms, "
          f"keyframe requests {stats.keyframe_requests_sent}")
    # The retries recover (nearly) every lost packet: the viewer's stream has no hole,
    # except possibly one whose retransmissions were all lost too.
    assert lost >= 15 and rtx_lost >= lost // 3
    assert holes <= 1, holes
    assert stats.retransmissions_received >= lost - 1 and stats.packets_recovered >= lost - 1
    assert stats.packets_given_up <= 1
    assert nacks >= lost + rtx_lost - 1  # the lost retransmissions were asked for again
    assert stats.nack_rtt_ms is not None and stats.nack_rtt_ms < 200
    # And the pictures decode, in order, without skipped frames (a frame with an
    # unrecovered packet would be skipped until the next keyframe).
    numbers = sub.received.frame_numbers[frames_before:]
    assert sum(1 for a, b in itertools.pairwise(numbers) if b != a + 1) <= 2, numbers
    assert sub.received.mean_difference < 12
    await sub.close()
    await pub.close()
    await server.close()
