"""Every aiortc internal the forwarder uses exists and works: an aiortc upgrade fails here first."""

from __future__ import annotations

import asyncio
import itertools
from importlib.metadata import version

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from mediaserver import MediaConfig, MediaServer
from mediaserver import aiortc_hooks as hooks
from mediaserver.datagrams import PortCounters
from tests.fakes import Member
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
    ward = room.join("w", "ward", Member())
    pub, offer, _ = await make_publisher_offer()
    publication, answer = await room.publish(ward, offer)
    await pub.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    expert = room.join("e", "expert", Member())
    sub = Subscriber()
    subscription, sdp = await room.subscribe(expert, publication.id)
    await room.answer(expert, subscription.id, await sub.answer(sdp))
    return server, pub, publication, subscription, sub


async def test_sender_reports_carry_the_publishers_clock_translated():
    server, pub, publication, subscription, sub = await session()
    video = publication.producers[0]
    await wait_for(lambda: video.last_sender_report is not None
                   and sub.received.video_frames > 10)
    consumer = video.downstreams[0]
    await wait_for(lambda: consumer.started)
    pub_ntp, pub_rtp = video.last_sender_report
    consumer.sender_report(pub_ntp, pub_rtp)
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
    consumer = video.downstreams[0]
    await wait_for(lambda: consumer.started and sub.received.video_frames > 5)
    dropped: list[bytes] = []
    media_pt = consumer._negotiated.payload_type

    class LossyPort:
        """Loses one first transmission in 15 on the way to the subscriber (never RTX)."""

        def __init__(self, inner: hooks.SenderPort) -> None:
            self.inner = inner
            self.count = 0

        def send(self, packet: bytes) -> bool:
            self.count += 1
            if len(dropped) < 40 and self.count % 15 == 7 and packet[1] & 0x7F == media_pt:
                dropped.append(packet)
                return True
            return self.inner.send(packet)

        def set_report(self, *values: int) -> None:
            self.inner.set_report(*values)

        def close(self) -> None:
            self.inner.close()

    consumer._port = LossyPort(consumer._port)
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


# --------------------------------------------------------------------------- media port guard


def test_guarded_private_members_are_still_where_the_guard_patches_them():
    """The guard relies on aiortc/aioice calling these through ``self``: check the call sites."""
    import inspect

    from aioice.ice import CandidatePair, Connection, StunProtocol
    from aiortc.rtcdtlstransport import RTCDtlsTransport
    from aiortc.rtcicetransport import RTCIceTransport

    def source(function: object) -> str:
        return inspect.getsource(function)  # type: ignore[arg-type]

    # The receive loop whose escaping exceptions end a transport, and what it calls.
    assert "await self._recv_next()" in source(RTCDtlsTransport._RTCDtlsTransport__run)
    recv_next = source(RTCDtlsTransport._recv_next)
    for call in ("self.transport._recv()", "self._rx_srtp.unprotect_rtcp(data)",
                 "self._rx_srtp.unprotect(data)", "self._handle_rtcp_data(data)",
                 "self._handle_rtp_data(data", "except pylibsrtp.Error",
                 "elif data and self._data_receiver:"):
        assert call in recv_next, call
    assert "self._setup_srtp()" in source(RTCDtlsTransport.start)
    assert "self._rx_srtp = Session(" in source(RTCDtlsTransport._setup_srtp)
    assert "self._recv = self._connection.recv" in source(RTCIceTransport.__init__)
    # aioice: every datagram goes through the protocol; checks are authenticated first.
    received = source(StunProtocol.datagram_received)
    # The guard does this itself for validated non-STUN datagrams (skipping the parse try).
    assert "self.receiver.data_received(data, self.local_candidate.component)" in received
    assert "self.receiver.request_received(message, addr, self)" in received
    # A Binding success response is sent only after the request's integrity check.
    request_received = source(Connection.request_received)
    integrity = request_received.index("check_message_integrity")
    assert request_received.count("stun.Class.RESPONSE") == 1
    assert integrity < request_received.index("stun.Class.RESPONSE") < request_received.index(
        "protocol.send_stun(response, addr)")
    assert "protocol.send_stun(" not in source(Connection.check_incoming)
    assert "self._protocols" in source(Connection.get_component_candidates)
    assert CandidatePair.State.SUCCEEDED and "remote_addr" in dir(CandidatePair)


async def test_guard_members_exist_on_real_objects():
    import pylibsrtp

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendrecv")
    hooks.MediaPortGuard(pc, PortCounters())  # raises AiortcHookError if a member moved
    dtls = pc.getTransceivers()[0].receiver.transport
    for name in hooks.GUARD_DTLS_ATTRIBUTES:
        assert hasattr(dtls, name), name
    for name in hooks.GUARD_ICE_TRANSPORT_ATTRIBUTES:
        assert hasattr(dtls.transport, name), name
    connection = dtls.transport._connection
    for name in hooks.GUARD_CONNECTION_ATTRIBUTES:
        assert hasattr(connection, name), name
    await connection.gather_candidates()
    assert connection._protocols
    for protocol in connection._protocols:
        assert protocol._huizhen_guarded  # guarded as soon as gathered
        for name in hooks.GUARD_PROTOCOL_ATTRIBUTES:
            assert hasattr(protocol, name), name
    for name in hooks.GUARD_SRTP_METHODS:
        assert hasattr(pylibsrtp.Session, name), name
    await pc.close()


async def test_a_moved_guard_member_fails_loudly():
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendrecv")
    del pc.getTransceivers()[0].receiver.transport.transport._recv
    with pytest.raises(hooks.AiortcHookError, match="_recv"):
        hooks.MediaPortGuard(pc, PortCounters())
    await pc.close()


def srtp_pair():
    import pylibsrtp

    key = bytes(range(30))
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    return tx, rx


def test_counting_srtp_session_turns_every_failure_into_a_counted_srtp_error():
    import pylibsrtp

    tx, rx = srtp_pair()
    counters = PortCounters()
    session = hooks.CountingSrtpSession(rx, counters)
    rtp = bytes([0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7]) + b"\x55" * 100
    assert session.unprotect(tx.protect(rtp)) == rtp
    forged = bytearray(tx.protect(rtp[:2] + b"\x00\x02" + rtp[4:]))
    forged[-1] ^= 0xFF
    with pytest.raises(pylibsrtp.Error):
        session.unprotect(bytes(forged))
    assert counters.unauthenticated == 1
    # pylibsrtp raises ValueError (not pylibsrtp.Error) beyond its buffer: aiortc would not
    # catch it. The wrapper counts it and raises what aiortc catches.
    with pytest.raises(ValueError, match="too long"):
        rx.unprotect(rtp + b"\x00" * 1600)
    with pytest.raises(pylibsrtp.Error):
        session.unprotect(rtp + b"\x00" * 1600)
    with pytest.raises(pylibsrtp.Error):
        session.unprotect_rtcp(bytes([0x81, 200, 0, 1]) + b"\x00" * 1600)
    assert counters.malformed == 2


async def test_unparseable_rtp_and_rtcp_are_counted_not_raised():
    import struct

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendrecv")
    counters = PortCounters()
    hooks.MediaPortGuard(pc, counters)
    dtls = pc.getTransceivers()[0].receiver.transport
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpReceiveParameters

    dtls._rtp_header_extensions_map.configure(RTCRtpReceiveParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(
            id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")]))
    # abs-send-time carrying 2 bytes instead of 3: aiortc's parser raises struct.error.
    bad_extension = (struct.pack("!BBHII", 0x90, 96, 1, 1000, 5) + struct.pack("!HH", 0xBEDE, 1)
                     + bytes([0x31, 0, 0, 0]) + b"\x10" * 20)
    with pytest.raises(struct.error):
        from aiortc.rtp import RtpPacket
        RtpPacket.parse(bad_extension, dtls._rtp_header_extensions_map)
    await dtls._handle_rtp_data(bad_extension, 0)
    await dtls._handle_rtp_data(bytes([0x80, 96, 0]), 0)
    await dtls._handle_rtcp_data(bytes([0x81, 200, 0, 9]) + b"\x00" * 8)
    assert counters.malformed == 3
    await pc.close()


async def test_nothing_recv_next_raises_ends_the_transport_but_connection_errors_do():
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendrecv")
    dtls = pc.getTransceivers()[0].receiver.transport
    raised: list[BaseException] = [ValueError("packet is too long")]

    async def failing_recv_next() -> None:
        raise raised[0]

    dtls._recv_next = failing_recv_next  # what aiortc's own would do on a bad datagram
    counters = PortCounters()
    hooks.MediaPortGuard(pc, counters)
    await dtls._recv_next()
    raised[0] = KeyError("anything")
    await dtls._recv_next()
    assert counters.malformed == 2
    raised[0] = ConnectionError()
    with pytest.raises(ConnectionError):
        await dtls._recv_next()
    await pc.close()


async def test_the_ice_transport_hands_dtls_only_datagrams_of_a_media_shape():
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendrecv")
    counters = PortCounters()
    hooks.MediaPortGuard(pc, counters)
    ice = pc.getTransceivers()[0].receiver.transport.transport
    connection = ice._connection
    connection._nominated[1] = object()  # pretend connected: aioice's recv checks only this
    rtp = bytes([0x80, 96]) + b"\x00" * 40
    application_data = bytes([23, 0xFE, 0xFD, 0, 1]) + b"\x00" * 6 + bytes([0, 8]) + b"\x00" * 8
    for datagram in (b"", b"\x80" * 1600, bytes([99]) * 50, b"\x17\xfe\xfd" + b"\x00" * 5,
                     application_data, rtp):
        connection._queue.put_nowait((datagram, 1))
    assert await ice._recv() == rtp
    assert counters.malformed == 5
    # With a data channel (a registered data receiver) DTLS application data goes through.
    dtls = pc.getTransceivers()[0].receiver.transport
    dtls._data_receiver = object()
    connection._queue.put_nowait((application_data, 1))
    assert await ice._recv() == application_data
    dtls._data_receiver = None
    connection._nominated.clear()
    await pc.close()


async def test_ice_sockets_pass_only_stun_or_the_validated_pair():
    import socket

    from aioice import stun

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendrecv")
    counters = PortCounters()
    hooks.restrict_host_addresses(pc, ("127.0.0.1",))
    hooks.MediaPortGuard(pc, counters)
    connection = pc.getTransceivers()[0].receiver.transport.transport._connection
    await connection.gather_candidates()
    protocol = connection._protocols[0]
    stranger, peer = ("127.0.0.1", 40001), ("127.0.0.1", 40002)
    protocol.datagram_received(b"\x80" * 100, stranger)
    protocol.datagram_received(b"\x00\x01" + b"\x00" * 30, stranger)  # STUN-looking junk
    assert counters.unvalidated == 2 and connection._queue.empty()
    # Real STUN still reaches aioice, whoever sends it (it answers and authenticates).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        protocol.datagram_received(bytes(request), sock.getsockname())
        sock.settimeout(5)
        reply = stun.parse_message(sock.recvfrom(2048)[0])
    assert reply.message_class == stun.Class.ERROR  # unauthenticated: 400, not data
    assert counters.unvalidated == 2 and not connection._huizhen_checked
    # aioice answering a Binding request with success (it carried our credentials)
    # validates the requester's address.
    success = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE)
    protocol.send_stun(success, peer)
    assert connection._huizhen_checked == {peer}
    protocol.datagram_received(b"\x80" * 100, peer)
    assert connection._queue.get_nowait() == (b"\x80" * 100, 1)
    # The selected pair's address is valid too; an unchecked one still is not.
    third = ("127.0.0.1", 40003)

    class Selected:
        remote_addr = third

    connection._nominated[1] = Selected()
    protocol.datagram_received(b"\x80" * 100, third)
    assert connection._queue.get_nowait() == (b"\x80" * 100, 1)
    protocol.datagram_received(b"\x80" * 100, stranger)
    assert counters.unvalidated == 3 and connection._queue.empty()
    connection._nominated.clear()
    await pc.close()


async def test_a_live_session_is_guarded_end_to_end():
    server, pub, publication, _subscription, sub = await session()
    await wait_for(lambda: sub.received.video_frames > 10)
    dtls = publication.pc.getTransceivers()[0].receiver.transport
    assert isinstance(dtls._rx_srtp, hooks.CountingSrtpSession)
    connection = dtls.transport._connection
    client_pair = pub.getTransceivers()[0].sender.transport.transport._connection._nominated[1]
    # The server validated the publisher's address through its authenticated checks.
    assert client_pair.local_addr in connection._huizhen_checked
    assert connection._nominated[1].remote_addr == client_pair.local_addr
    before = publication.port_counters.malformed
    client_pair.protocol.transport.sendto(b"\x80" * 1600, client_pair.remote_addr)
    await wait_for(lambda: publication.port_counters.malformed > before, 5)
    frames = sub.received.video_frames
    await wait_for(lambda: sub.received.video_frames > frames + 15, 10)
    assert publication.pc.connectionState == "connected"
    await sub.close()
    await pub.close()
    await server.close()


async def test_a_short_rtx_payload_is_dropped_and_counted():
    from aiortc.rtp import RtpPacket

    server, pub, publication, _subscription, sub = await session()
    await wait_for(lambda: sub.received.video_frames > 5)
    receiver = publication.pc.getTransceivers()[0].receiver
    codecs = receiver._RTCRtpReceiver__codecs
    rtx_pt = next(pt for pt, c in codecs.items() if c.name.lower() == "rtx")
    rtx_ssrc = next(iter(receiver._RTCRtpReceiver__rtx_ssrc))
    before = publication.port_counters.malformed
    short = RtpPacket(payload_type=rtx_pt, sequence_number=1, ssrc=rtx_ssrc, payload=b"\x01")
    await receiver._handle_rtp_packet(short, arrival_time_ms=0)  # the tap, in aiortc's place
    assert publication.port_counters.malformed == before + 1
    await sub.close()
    await pub.close()
    await server.close()


# --------------------------------------------------------------------------- ICE consent race


def test_the_consent_race_is_still_where_the_workaround_expects_it():
    """connect() starts the consent task after awaiting the check list, as the
    workaround assumes, and close() is what cancels it."""
    import inspect

    from aioice.ice import Connection

    connect = inspect.getsource(Connection.connect)
    assert connect.index("self._early_checks_done = True") < connect.index(
        "await self._check_list_state.get()") < connect.index(
        "self._query_consent_task = asyncio.create_task(self.query_consent())")
    assert "self._query_consent_task.cancel()" in inspect.getsource(Connection.close)


async def test_a_consent_task_outliving_its_closed_connection_is_cancelled():
    from aioice.ice import Connection

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    [connection] = hooks._ice_connections(pc)
    hooks.check_ice_connection(connection)
    assert isinstance(connection, Connection)
    await pc.close()
    # What a late connect() does after close(): start the consent task.
    orphan = asyncio.ensure_future(asyncio.sleep(3600))
    connection._query_consent_task = orphan
    assert hooks.stop_orphan_consent(pc) == (1, False)
    await asyncio.sleep(0)
    assert orphan.cancelled()


async def test_a_renamed_ice_member_fails_loudly():
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    [connection] = hooks._ice_connections(pc)
    del connection._early_checks_done
    with pytest.raises(hooks.AiortcHookError, match="_early_checks_done"):
        hooks.stop_orphan_consent(pc)
    await pc.close()
