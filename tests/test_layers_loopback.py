"""Per-viewer temporal layers through real aiortc subscriber peers over loopback.

The publisher side replays Chromium's VP8 L1T3 capture into a producer (aiortc cannot
encode temporal layers); the two viewers are real aiortc peer connections answering
the server's real subscription transports. One viewer's receiver sends no REMB of its
own: the test sends REMB for it, a thin link's. That viewer must then receive TL0
only, with contiguous sequence numbers and picture ids, and decode it; the other
keeps every layer. The RTP each viewer receives is read where its receiver gets it
(after SRTP), the TIDs from the VP8 descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, pack_remb_fci

from mediaserver import Consumer, MediaConfig, MediaServer
from mediaserver.codecs.vp8 import Vp8Descriptor, shift_descriptor, vp8_flags
from mediaserver.transport import AiortcTransports, Subscription
from tests.fakes import VIDEO_OFFER, FakePublication, FakeTransports, Member
from tests.peers import wait_for
from tests.rtp_fixtures import frames_of, rtp_packets

THIN_REMB = 100_000  # bit/s: under the capture's TL0 + TL1 (the whole capture is ~280 kbit/s)


class FixturePublisher:
    """A ``TransportFactory``: fake publications (fed by the test), real subscriptions."""

    def __init__(self) -> None:
        self.fakes = FakeTransports()
        self.real: AiortcTransports | None = None

    def publication(self, transport_id: str, participant_id: str, on_state: Any
                    ) -> FakePublication:
        return self.fakes.publication(transport_id, participant_id, on_state)

    def subscription(self, transport_id: str, participant_id: str, stream_id: str,
                     on_state: Any) -> Subscription:
        assert self.real is not None
        return self.real.subscription(transport_id, participant_id, stream_id, on_state)


@dataclass
class Viewer:
    """A real aiortc subscriber that keeps each RTP packet its receiver gets and decodes."""

    own_remb: bool
    pc: RTCPeerConnection = field(default_factory=RTCPeerConnection)
    packets: list[RtpPacket] = field(default_factory=list)
    frames: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pc.on("track", lambda track: self.tasks.append(
            asyncio.ensure_future(self._decode(track))))

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        for transceiver in self.pc.getTransceivers():
            receiver: Any = transceiver.receiver
            if not self.own_remb:  # the test speaks for this viewer's bandwidth estimate
                receiver._RTCRtpReceiver__remote_bitrate_estimator = None
            original = receiver._handle_rtp_packet

            async def tap(packet: RtpPacket, arrival_time_ms: int, original: Any = original
                          ) -> None:
                self.packets.append(packet)
                await original(packet, arrival_time_ms=arrival_time_ms)

            receiver._handle_rtp_packet = tap
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def _decode(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                await track.recv()
                self.frames += 1

    async def send_remb(self, bitrate: int) -> None:
        receiver: Any = self.pc.getTransceivers()[0].receiver
        media_ssrc = self.packets[-1].ssrc
        await receiver._send_rtcp(RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=receiver._RTCRtpReceiver__rtcp_ssrc, media_ssrc=0,
            fci=pack_remb_fci(bitrate, [media_ssrc])))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


async def replay(feed: Any, stop: asyncio.Event) -> None:
    """Loop the L1T3 capture at its own pace, sequence numbers, timestamps and picture ids
    continuing from one loop to the next (each loop starts with a keyframe)."""
    frames = frames_of(rtp_packets("vp8-chromium-l1t3.bin"))
    first, last = vp8_flags(frames[0][0].payload), vp8_flags(frames[-1][0].payload)
    assert first.picture_id is not None and last.picture_id is not None
    assert first.tl0_pic_idx is not None and last.tl0_pic_idx is not None
    ids_per_loop = last.picture_id - first.picture_id + 1
    tl0_per_loop = last.tl0_pic_idx - first.tl0_pic_idx + 1
    span = frames[-1][0].timestamp - frames[0][0].timestamp + 3000
    seq = 1000
    for loop in itertools.count():
        for index, frame in enumerate(frames):
            if stop.is_set():
                return
            for packet in frame:
                feed(RtpPacket(
                    payload_type=96, marker=packet.marker, sequence_number=seq & 0xFFFF,
                    timestamp=(packet.timestamp + loop * span) & 0xFFFFFFFF, ssrc=0x1234,
                    payload=shift_descriptor(packet.payload, loop * ids_per_loop,
                                             loop * tl0_per_loop)))
                seq += 1
            if index + 1 < len(frames):
                await asyncio.sleep((frames[index + 1][0].timestamp - frame[0].timestamp) / 90000)
            else:
                await asyncio.sleep(3000 / 90000)


def descriptors(packets: list[RtpPacket]) -> list[Vp8Descriptor]:
    return [Vp8Descriptor.parse(p.payload) for p in packets if p.payload]


@pytest.fixture
async def server():
    factory = FixturePublisher()
    config = MediaConfig(ice_addresses=("127.0.0.1",), keyframe_interval=0.5,
                         transports=factory)
    factory.real = AiortcTransports(config)
    srv = MediaServer(config)
    yield srv, factory
    await srv.close()


async def test_a_thin_viewer_gets_tl0_only_while_the_other_gets_every_layer(server):
    srv, factory = server
    room = srv.room("bed-1")
    ward = room.join("ward", "ward", Member())
    publication, _ = await room.publish(ward, VIDEO_OFFER)
    fake = factory.fakes.publications[0]
    stop = asyncio.Event()
    feeder = asyncio.ensure_future(replay(fake.sources[0].feed, stop))
    viewers = {"thin": Viewer(own_remb=False), "wide": Viewer(own_remb=True)}
    for name, viewer in viewers.items():
        expert = room.join(name, "expert", Member())
        subscription, offer = await room.subscribe(expert, publication.id)
        await room.answer(expert, subscription.id, await viewer.answer(offer))
    thin, wide = viewers["thin"], viewers["wide"]
    producer = publication.producers[0]
    consumers = [d for d in producer.downstreams if isinstance(d, Consumer)]
    thin_consumer = consumers[0]
    try:
        await wait_for(lambda: thin.packets and wide.frames >= 10, 20)
        assert all(c.stats().temporal_layer == 3 for c in consumers)  # nothing known: all
        # The thin viewer's estimate first covers the stream, then falls as its link is
        # overused (a browser's REMB falls only then); it reports the low figure until
        # the server has moved it down to TL0.
        for _ in range(2):
            await thin.send_remb(1_000_000)
            await asyncio.sleep(0.25)
        for _ in range(40):
            await thin.send_remb(THIN_REMB)
            await asyncio.sleep(0.25)
            if thin_consumer.stats().temporal_layer == 0:
                break
        stats = thin_consumer.stats()
        assert stats.temporal_layer == 0 and stats.layer_switches >= 1
        assert stats.target_bitrate is not None and stats.target_bitrate < 200_000
        thin_from, wide_from, frames_from = len(thin.packets), len(wide.packets), thin.frames
        await asyncio.sleep(3.0)
        thin_window = thin.packets[thin_from:]
        wide_window = wide.packets[wide_from:]
    finally:
        stop.set()
        await feeder
    # The thin viewer: TL0 only, and it still decodes.
    assert thin_window and {d.temporal_id for d in descriptors(thin_window)} == {0}
    assert thin.frames - frames_from >= 10  # TL0 is 7.5 fps: ~22 frames in 3 s
    # Its whole stream, across the switch down: no gap in sequence numbers or picture ids.
    seqs = [p.sequence_number for p in thin.packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    ids = [d.picture_id for d in descriptors(thin.packets) if d.start and d.partition == 0]
    assert all((b - a) & 0x7FFF == 1 for a, b in itertools.pairwise(ids)), ids
    # The wide viewer kept every layer: TL2 frames in the same window, all in sequence.
    assert {d.temporal_id for d in descriptors(wide_window)} == {0, 1, 2}
    wide_seqs = [p.sequence_number for p in wide.packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(wide_seqs))
    wide_stats = consumers[1].stats()
    assert wide_stats.temporal_layer in (2, 3) and wide_stats.layer_switches == 0
    assert producer.layer_rates.highest == 2
    for viewer in viewers.values():
        await viewer.close()
