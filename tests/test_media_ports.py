"""Media ports are public: strangers' and malformed datagrams change nothing for the viewers;
a stream that ends anyway is announced to its publisher.

A real publisher and a real decoding viewer (aiortc, over loopback) go through the
SFU; datagrams are then thrown at every server media port, from an unrelated UDP
socket and from the publisher's own (validated) socket.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import struct
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from huizhen.testpattern import PatternVideoTrack
from mediaserver import MediaConfig, MediaServer
from mediaserver.transport import Publication, Subscription, Transport
from signaling import MEDIA_SERVER
from signaling.client import SignalingClient
from tests.fakes import Member
from tests.peers import Subscriber, make_publisher_offer, wait_for

MIN_FPS = 28.0
WINDOW = 3.0  # seconds of decoded video measured after the datagrams


@pytest.fixture
async def server():
    srv = MediaServer(MediaConfig(ice_addresses=("127.0.0.1",), keyframe_interval=0.5))
    yield srv
    await srv.close()


async def live_session(server: MediaServer
                       ) -> tuple[RTCPeerConnection, Publication, Subscriber, Subscription]:
    room = server.room("bed-1")
    ward = room.join("ward", "ward", Member())
    pub, offer, _tracks = await make_publisher_offer(audio=False)
    publication, answer = await room.publish(ward, offer)
    await pub.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    expert = room.join("expert", "expert", Member())
    viewer = Subscriber()
    subscription, sdp = await room.subscribe(expert, publication.id)
    await room.answer(expert, subscription.id, await viewer.answer(sdp))
    await wait_for(lambda: viewer.received.video_frames >= 45, 30)
    return pub, publication, viewer, subscription


def server_ports(transport: Transport) -> list[tuple[str, int]]:
    """The server's media ports for one transport, from its ICE candidates."""
    dtls = transport.pc.getTransceivers()[0].sender.transport
    candidates = dtls.transport.iceGatherer.getLocalCandidates()
    ports = [(c.ip, c.port) for c in candidates]
    assert ports
    return ports


def client_nominated_pair(pc: RTCPeerConnection) -> Any:
    """The client peer's selected candidate pair (its socket and the server's address)."""
    dtls = pc.getTransceivers()[0].sender.transport
    return dtls.transport._connection._nominated[1]


async def measured_fps(viewer: Subscriber, seconds: float = WINDOW) -> float:
    loop = asyncio.get_running_loop()
    start_frames, start = viewer.received.video_frames, loop.time()
    await asyncio.sleep(seconds)
    return (viewer.received.video_frames - start_frames) / (loop.time() - start)


def assert_connected(*pcs: RTCPeerConnection) -> None:
    assert [pc.connectionState for pc in pcs] == ["connected"] * len(pcs)


def fake_dtls_record(length_field: int, body: bytes) -> bytes:
    """A DTLS 1.2 application-data record header (epoch 1) followed by ``body``."""
    return struct.pack("!BHHHIH", 23, 0xFEFD, 1, 0, 7, length_field) + body


def rtp_looking(size: int = 200) -> bytes:
    header = struct.pack("!BBHII", 0x80, 96, 4242, 90000, 0x1234ABCD)
    return header + os.urandom(size - len(header))


def garbage_shapes() -> list[bytes]:
    return [
        os.urandom(1600),
        os.urandom(9000),
        os.urandom(300),
        b"",
        b"\x00\x01\x00\x00" + os.urandom(40),  # STUN-looking, not STUN
        fake_dtls_record(100, os.urandom(100)),  # well-formed header, garbage inside
        fake_dtls_record(4000, os.urandom(20)),  # header longer than the datagram
        rtp_looking(),
        rtp_looking(1400) + os.urandom(200),
        bytes([0x81, 200]) + os.urandom(60),  # RTCP-looking
    ]


async def test_datagrams_from_a_stranger_change_nothing(server):
    pub, publication, viewer, subscription = await live_session(server)
    ports = server_ports(publication) + server_ports(subscription)
    before = [t.port_counters.unvalidated for t in (publication, subscription)]
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    try:
        for port in ports:
            stranger.sendto(os.urandom(1600), port)
            stranger.sendto(os.urandom(9000), port)
        await asyncio.sleep(0.5)
        fps = await measured_fps(viewer)
        print(f"\nafter 1,600 + 9,000-byte datagrams to {len(ports)} ports: {fps:.1f} fps")
        assert fps >= MIN_FPS, fps
        assert_connected(pub, publication.pc, viewer.pc, subscription.pc)
        assert publication.port_counters.unvalidated == before[0] + 2
        assert subscription.port_counters.unvalidated == before[1] + 2

        shapes = garbage_shapes()
        for port in ports:
            for datagram in shapes:
                stranger.sendto(datagram, port)
        await asyncio.sleep(0.5)
        fps = await measured_fps(viewer)
        print(f"after {len(shapes)} garbage shapes to each port: {fps:.1f} fps; "
              f"dropped {publication.port_counters} / {subscription.port_counters}")
        assert fps >= MIN_FPS, fps
        assert_connected(pub, publication.pc, viewer.pc, subscription.pc)
        # Each shape reached each of the transport's ports and was dropped there.
        assert publication.port_counters.unvalidated == before[0] + 2 + len(shapes)
        assert subscription.port_counters.unvalidated == before[1] + 2 + len(shapes)
        assert publication.port_counters.malformed == 0  # nothing got past the address check
    finally:
        stranger.close()
    await viewer.close()
    await pub.close()


async def test_malformed_input_from_the_real_peer_is_dropped_and_counted(server):
    pub, publication, viewer, subscription = await live_session(server)
    counters = publication.port_counters
    pair = client_nominated_pair(pub)
    send = pair.protocol.transport.sendto  # the publisher's own socket
    server_addr = pair.remote_addr
    assert server_addr in server_ports(publication)

    # Malformed DTLS records from the validated address.
    malformed_before = counters.malformed
    send(fake_dtls_record(4000, os.urandom(30)), server_addr)  # longer than the datagram
    send(b"\x17\xfe", server_addr)  # a truncated record header
    send(fake_dtls_record(100, os.urandom(100)), server_addr)  # data, but no data channel
    send(bytes([99]) + os.urandom(50), server_addr)  # no media protocol starts with 99
    await wait_for(lambda: counters.malformed >= malformed_before + 4, 5)
    fps = await measured_fps(viewer)
    print(f"\nafter malformed DTLS from the publisher's address: {fps:.1f} fps; {counters}")
    assert fps >= MIN_FPS, fps
    assert_connected(pub, publication.pc, viewer.pc, subscription.pc)

    # SRTP that fails authentication, and oversized SRTP-looking datagrams.
    unauthenticated_before, malformed_before = counters.unauthenticated, counters.malformed
    video_ssrc = pub.getSenders()[0]._ssrc
    forged = bytearray(rtp_looking(300))
    forged[8:12] = video_ssrc.to_bytes(4, "big")
    send(bytes(forged), server_addr)
    send(rtp_looking(1600), server_addr)
    send(rtp_looking(9000), server_addr)
    await wait_for(lambda: counters.unauthenticated >= unauthenticated_before + 1
                   and counters.malformed >= malformed_before + 2, 5)

    # Authentic SRTP (the publisher's own keys) carrying an RTP packet that does not
    # parse: a truncated abs-send-time header extension (aiortc's struct.error).
    dtls = pub.getTransceivers()[0].sender.transport
    extension_id = int(re.search(r"a=extmap:(\d+) \S*abs-send-time",
                                 pub.remoteDescription.sdp).group(1))  # type: ignore[union-attr]
    bad_extension = (struct.pack("!BBHII", 0x90, 96, 1, 1000, 0x0BADF00D)
                     + struct.pack("!HH", 0xBEDE, 1) + bytes([(extension_id << 4) | 1, 0, 0, 0])
                     + b"\x10" * 50)
    malformed_before = counters.malformed
    send(dtls._tx_srtp.protect(bad_extension), server_addr)
    fps = await measured_fps(viewer)
    print(f"after forged, oversized and unparseable SRTP from it: {fps:.1f} fps; {counters}")
    assert fps >= MIN_FPS, fps
    assert_connected(pub, publication.pc, viewer.pc, subscription.pc)
    assert counters.malformed >= malformed_before + 1
    await viewer.close()
    await pub.close()


async def test_the_publisher_is_told_when_its_stream_ends(running_server):
    ward = SignalingClient(running_server.ws_url)
    await ward.connect()
    await ward.join(running_server.token("ward", name="Ward 3"))
    expert = SignalingClient(running_server.ws_url)
    await expert.connect()
    await expert.join(running_server.token("expert"))

    # The publication's connection dies under the ward (no unpublish, the socket stays).
    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(160, 120, 15))
    stream = await ward.publish(pub)
    await wait_for(lambda: pub.connectionState == "connected", 20)
    # (Operators see the drops: a stranger's datagram, counted in the stats route.)
    room = running_server.app[MEDIA_SERVER].directory.local("bed-1")
    assert room is not None
    publication = room.find_publication(stream["id"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        for port in server_ports(publication):
            stranger.sendto(os.urandom(1600), port)
    await wait_for(lambda: publication.port_counters.unvalidated >= 1, 5)
    async with aiohttp.ClientSession() as http, http.get(
            running_server.base_url + "/api/v1/stats",
            headers={"Authorization": "Bearer " + running_server.token("operator")}) as reply:
        room = (await reply.json())["rooms"][0]
    assert room["datagramsDroppedUnvalidated"] >= 1
    [entry] = [t for t in room["transports"] if t["id"] == stream["id"]]
    assert entry["direction"] == "publish" and entry["datagramsDroppedUnvalidated"] >= 1
    assert entry["datagramsDroppedMalformed"] == entry["datagramsDroppedUnauthenticated"] == 0
    await pub.close()
    ended = await ward.next_event("stream-ended")
    assert ended == {"type": "stream-ended", "stream": stream["id"], "reason": "closed"}
    assert (await expert.next_event("track-removed"))["stream"] == stream["id"]

    # A clean unpublish is announced the same way, with its own reason.
    again = RTCPeerConnection()
    again.addTrack(PatternVideoTrack(160, 120, 15))
    second = await ward.publish(again)
    assert (await ward.request({"type": "unpublish", "stream": second["id"]}))["type"] == "ok"
    ended = await ward.next_event("stream-ended")
    assert ended == {"type": "stream-ended", "stream": second["id"], "reason": "unpublished"}
    await asyncio.gather(again.close(), expert.close(), ward.close())
