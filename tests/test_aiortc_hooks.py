"""Every aiortc internal the forwarder uses exists and works: an aiortc upgrade fails here first."""

from __future__ import annotations

import asyncio
import itertools
from importlib.metadata import version

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from mediaserver import MediaConfig, MediaServer
from mediaserver import aiortc_hooks as hooks
from tests.peers import Subscriber, make_publisher_offer, wait_for


def test_aiortc_is_the_pinned_version():
    assert version("aiortc") == "1.16.0", (
        "aiortc changed: re-check every hook in mediaserver/aiortc_hooks.py, then update the pin"
    )


async def test_hooked_members_exist_on_real_objects():
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction="sendrecv")
    hooks.check_receiver(transceiver.receiver)
    hooks.check_sender(transceiver.sender)
    dtls = transceiver.sender.transport
    for name in hooks.DTLS_ATTRIBUTES:
        assert hasattr(dtls, name), name
    connection = dtls.transport._connection
    for name in hooks.ICE_CONNECTION_ATTRIBUTES:
        assert hasattr(connection, name), name
    assert hasattr(transceiver, "_codecs")
    from aiortc.rtcrtpreceiver import StreamStatistics  # noqa: F401  used by ReceiverTap
    await pc.close()


async def test_a_renamed_member_fails_loudly():
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction="sendrecv")
    del transceiver.receiver._RTCRtpReceiver__nack_generator
    with pytest.raises(hooks.AiortcHookError, match="__nack_generator"):
        hooks.check_receiver(transceiver.receiver)
    await pc.close()


async def session():
    server = MediaServer(MediaConfig())
    room = server.room("r")
    ward = room.join("w", "ward", lambda e: None)
    pub, offer, _ = await make_publisher_offer()
    publication, answer = await room.publish(ward, offer)
    await pub.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    expert = room.join("e", "expert", lambda e: None)
    sub = Subscriber()
    subscription, sdp = await room.subscribe(expert, publication.id)
    await room.answer(expert, subscription.id, await sub.answer(sdp))
    return server, pub, publication, subscription, sub


async def test_sender_reports_carry_the_publishers_clock_translated():
    server, pub, publication, subscription, sub = await session()
    video = publication.producers[0]
    await wait_for(lambda: video.sender_report is not None and sub.received.video_frames > 10)
    consumer = video.consumers[0]
    await wait_for(lambda: consumer.started)
    pub_ntp, pub_rtp = video.sender_report
    consumer.publisher_sender_report(pub_ntp, pub_rtp)
    sender = subscription.pc.getTransceivers()[0].sender
    assert sender._RTCRtpSender__ntp_timestamp == pub_ntp
    assert sender._RTCRtpSender__rtp_timestamp == consumer._rewriter.out_ts(pub_rtp)
    # aiortc's own RTCP loop sends those values: the subscriber sees our sender report.
    async def remote_outbound() -> bool:
        stats = await sub.pc.getReceivers()[0].getStats()
        return any(s.type == "remote-outbound-rtp" for s in stats.values())

    for _ in range(60):
        if await remote_outbound():
            break
        await asyncio.sleep(0.1)
    assert await remote_outbound()
    await sub.close()
    await pub.close()
    await server.close()


async def test_subscriber_nacks_are_answered_from_the_retransmission_buffer():
    server, pub, publication, _subscription, sub = await session()
    video = publication.producers[0]
    consumer = video.consumers[0]
    await wait_for(lambda: consumer.started and sub.received.video_frames > 5)
    dropped: list[bytes] = []
    media_pt = consumer._negotiated.payload_type

    class LossySink:
        """Loses one first transmission in 15 on the way to the subscriber (never RTX)."""

        def __init__(self, inner: hooks.RawRtpSink) -> None:
            self.inner = inner
            self.count = 0

        def send(self, packet: bytes) -> bool:
            self.count += 1
            if len(dropped) < 40 and self.count % 15 == 7 and packet[1] & 0x7F == media_pt:
                dropped.append(packet)
                return True
            return self.inner.send(packet)

        def close(self) -> None:
            self.inner.close()

    consumer._sink = LossySink(consumer._sink)
    start = sub.received.video_frames
    await wait_for(lambda: len(dropped) >= 20 and sub.received.video_frames > start + 60, 30)
    assert consumer.retransmissions >= len(dropped) // 2, (consumer.retransmissions, len(dropped))
    numbers = sub.received.frame_numbers[start:]
    gaps = sum(1 for a, b in itertools.pairwise(numbers) if b != a + 1)
    assert gaps <= 3, numbers
    assert sub.received.mean_difference < 12
    await sub.close()
    await pub.close()
    await server.close()
