"""Bounded resources: memory after many sessions, and quotas per token, participant, address."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from config import ConfigError
from huizhen.app import create_app
from huizhen.testpattern import PatternVideoTrack
from signaling import MEDIA_SERVER, SIGNALING_CONFIG, TokenAuthority
from signaling.app_keys import QUOTAS
from signaling.client import SignalingClient, SignalingError
from signaling.quotas import QuotaLimits, Quotas
from tests.conftest import child_server, make_settings
from tests.peers import Subscriber, wait_for

SECRET = "memory-test-secret-0123456789abcdef-0123"
MIB = 2**20
WARM_UP = 50


@pytest.fixture
async def memory_server() -> AsyncIterator[str]:
    async with child_server("tests.memory_child", SECRET) as url:
        yield url


async def memory(base_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(base_url + "/_test/memory") as reply:
        body: dict[str, Any] = await reply.json()
        return body


async def settled(base_url: str, timeout: float = 30.0) -> dict[str, Any]:
    """The server's report once every room, transport and peer connection is gone."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        report = await memory(base_url)
        if (report["rooms"], report["transports"], report["peerConnections"],
                report["iceConnections"], report["roomsAlive"]) == (0, 0, 0, 0, 0):
            return report
        if asyncio.get_running_loop().time() > deadline:
            return report
        await asyncio.sleep(0.25)


async def one_cycle(ws_url: str, authority: TokenAuthority, index: int) -> None:
    """Join, publish, subscribe, leave; every fourth cycle ends in a different way."""
    room = f"mem-{index}"
    ward = SignalingClient(ws_url)
    expert = SignalingClient(ws_url)
    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(160, 120, 15))
    sub = Subscriber()
    try:
        await ward.connect()
        await ward.join(authority.mint(room=room, role="ward", name="w", ttl=600))
        await expert.connect()
        await expert.join(authority.mint(room=room, role="expert", name="e", ttl=600))
        mode = index % 4
        if mode == 0:
            # The publisher's socket just closes while its publish is in flight.
            await pub.setLocalDescription(await pub.createOffer())
            assert ward._ws is not None
            await ward._ws.send_str(json.dumps({"type": "publish", "id": "x",
                                                "sdp": pub.localDescription.sdp}))
            await ward.close()
            return
        stream = await ward.publish(pub)
        if mode == 1:
            # A subscription that is never answered, then both sockets just close.
            await expert.request({"type": "subscribe", "stream": stream["id"]})
            return
        await expert.subscribe(stream["id"], sub.pc)
        if mode == 2:
            # Media flows, then everybody leaves properly.
            await wait_for(lambda: sub.received.video_frames >= 1, 30)
            await expert.request({"type": "leave"})
            await ward.request({"type": "leave"})
        # mode 3: answered, then the sockets close before media necessarily flows.
    finally:
        await asyncio.gather(ward.close(), expert.close(), sub.close(), pub.close(),
                             return_exceptions=True)


async def test_two_hundred_sessions_do_not_grow_the_server(memory_server):
    """Server RSS grows < 5 MiB over 200 cycles after warm-up; every room is collected.

    The server runs in a child process so that the test's own peers (which decode
    video) stay out of the measurement, and the child reports after gc.collect().
    """
    authority = TokenAuthority(SECRET, "huizhen", "huizhen-media")
    ws_url = memory_server.replace("http", "ws") + "/ws"
    for index in range(WARM_UP):  # imports, codec tables, allocator arenas
        await one_cycle(ws_url, authority, index)
    before = await settled(memory_server)
    assert before["roomsAlive"] == 0, before
    for index in range(WARM_UP, WARM_UP + 200):
        await one_cycle(ws_url, authority, index)
    ended = asyncio.get_running_loop().time()
    after = await settled(memory_server)
    settle = asyncio.get_running_loop().time() - ended
    growth = after["rss"] - before["rss"]
    print(f"server RSS before {before['rss'] / MIB:.1f} MiB, after 200 cycles "
          f"{after['rss'] / MIB:.1f} MiB, growth {growth / MIB:.2f} MiB; "
          f"settled in {settle:.1f} s; fds {before['fds']} -> {after['fds']}; report {after}")
    assert after["roomsCreated"] == WARM_UP + 200
    assert (after["rooms"], after["transports"], after["peerConnections"],
            after["iceConnections"]) == (0, 0, 0, 0), after
    assert (after["roomsAlive"], after["roomObjects"], after["transportObjects"],
            after["participantObjects"]) == (0, 0, 0, 0), after
    assert after["mediaTasks"] == {}, after  # e.g. an RTCP loop started after close
    assert growth < 5 * MIB
    assert after["fds"] <= before["fds"]


# --------------------------------------------------------------------------- quotas


async def join(url: str, token: str) -> SignalingClient:
    client = SignalingClient(url)
    await client.connect()
    await client.join(token)
    return client


async def test_one_token_cannot_hold_more_than_its_peer_connections(running_server):
    """Documented defaults: 4 sockets and 16 peer connections per token (its subject)."""
    config = running_server.app[SIGNALING_CONFIG]
    assert (config.sockets_per_token, config.peer_connections_per_token) == (4, 16)
    url = running_server.ws_url
    ward = await join(url, running_server.token("ward"))
    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(160, 120, 15))
    stream = await ward.publish(pub)
    hog = running_server.authority.mint(room="bed-1", role="observer", name="o", ttl=600,
                                        subject="u-hog")
    sockets = [await join(url, hog) for _ in range(4)]
    # A fifth socket with the same token is refused and closed.
    fifth = SignalingClient(url)
    await fifth.connect()
    with pytest.raises(SignalingError) as info:
        await fifth.join(hog)
    assert info.value.code == "too-many-connections"
    assert fifth._reader is not None
    await asyncio.wait_for(fifth._reader, 5)
    assert fifth._ws is not None and fifth._ws.close_code == 1008
    await fifth.close()
    # 16 answered subscriptions over the four sockets; the 17th is refused.
    peers: list[Subscriber] = []
    refused = []
    for attempt in range(20):
        client = sockets[attempt % 4]
        peer = Subscriber()
        try:
            await client.subscribe(stream["id"], peer.pc)
            peers.append(peer)
        except SignalingError as exc:
            refused.append(exc.code)
            await peer.close()
    assert len(peers) == 16
    assert refused == ["too-many-peer-connections"] * 4
    # Another token is still served meanwhile, with media.
    expert = await join(url, running_server.token("expert"))
    watcher = Subscriber()
    await expert.subscribe(stream["id"], watcher.pc)
    await wait_for(lambda: watcher.received.video_frames >= 5, 30)
    # Closing one socket of the hog frees its share (4 peer connections).
    await sockets[0].close()
    media = running_server.app[MEDIA_SERVER]
    await wait_for(lambda: media.transports() == 1 + 12 + 1, 10)
    extra = Subscriber()
    await sockets[1].subscribe(stream["id"], extra.pc)
    peers.append(extra)
    await asyncio.gather(*(p.close() for p in [*peers, watcher]), pub.close(),
                         *(c.close() for c in [*sockets, expert, ward]))


async def test_unanswered_subscriptions_are_bounded_and_time_out(running_server):
    media = running_server.app[MEDIA_SERVER]
    media.limits = replace(media.limits, answer_timeout=1.0)
    assert media.limits.pending_per_participant == 4
    url = running_server.ws_url
    ward = await join(url, running_server.token("ward"))
    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(160, 120, 15))
    stream = await ward.publish(pub)
    expert = await join(url, running_server.token("expert"))
    # Five at once: a subscription counts as unanswered from its arrival (queued for a
    # set-up slot included), so the fifth is refused whatever the machine's speed (asked
    # one after another, the first offer's 1 s could run out before the fifth is sent).
    replies = await asyncio.gather(*(
        expert.request({"type": "subscribe", "stream": stream["id"]}) for _ in range(5)),
        return_exceptions=True)
    offered = [r for r in replies if isinstance(r, dict)]
    refused = [r for r in replies if isinstance(r, BaseException)]
    assert len(offered) == 4 and all(o["type"] == "offer" for o in offered)
    assert len(refused) == 1 and isinstance(refused[0], SignalingError)
    assert refused[0].code == "too-many-pending"
    closed = [await expert.next_event("subscription-closed", timeout=10) for _ in range(4)]
    assert {c["subscription"] for c in closed} == {o["subscription"] for o in offered}
    assert {c["reason"] for c in closed} == {"answer-timeout"}
    await wait_for(lambda: media.transports() == 1, 10)  # only the publication is left
    # An answer after the timeout finds nothing; a new subscription works.
    with pytest.raises(SignalingError) as info:
        await expert.request({"type": "answer", "subscription": offered[0]["subscription"],
                              "sdp": "v=0\r\n"})
    assert info.value.code == "not-found"
    peer = Subscriber()
    await expert.subscribe(stream["id"], peer.pc)
    await wait_for(lambda: peer.received.video_frames >= 3, 30)
    await asyncio.gather(peer.close(), pub.close(), expert.close(), ward.close())


async def test_sockets_per_address_are_bounded(running_server):
    quotas = running_server.app[QUOTAS]
    quotas.limits = replace(quotas.limits, sockets_per_address=3)
    sessions = []
    for _ in range(3):
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(running_server.ws_url)
        await ws.send_str(json.dumps({"type": "ping", "id": 1}))
        assert json.loads((await ws.receive(timeout=5)).data) == {"type": "pong", "id": 1}
        sessions.append((session, ws))
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(running_server.ws_url)
        refusal = json.loads((await ws.receive(timeout=5)).data)
        assert refusal["type"] == "error" and refusal["code"] == "too-many-connections"
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1008
    # One closes: a new socket from the same address is served again.
    await sessions[0][1].close()
    await sessions[0][0].close()
    await wait_for(lambda: quotas.sockets("127.0.0.1") == 2, 5)
    client = await join(running_server.ws_url, running_server.token("observer"))
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()
    for session, ws in sessions[1:]:
        await ws.close()
        await session.close()


# --------------------------------------------------------------------------- configuration


def test_limits_come_from_the_configuration():
    settings = make_settings(HUIZHEN_SIGNALING_SOCKETS_PER_TOKEN="2",
                             HUIZHEN_SIGNALING_PEER_CONNECTIONS_PER_TOKEN="5",
                             HUIZHEN_SIGNALING_SOCKETS_PER_ADDRESS="0",
                             HUIZHEN_SIGNALING_JOIN_TIMEOUT="3.5",
                             HUIZHEN_MEDIA_PENDING_PER_PARTICIPANT="2",
                             HUIZHEN_MEDIA_ANSWER_TIMEOUT="7",
                             HUIZHEN_MEDIA_CONNECT_TIMEOUT="12")
    app = create_app(settings)
    config = app[SIGNALING_CONFIG]
    assert (config.sockets_per_token, config.peer_connections_per_token,
            config.sockets_per_address, config.join_timeout) == (2, 5, 0, 3.5)
    assert app[QUOTAS].limits.sockets_per_token == 2
    media = app[MEDIA_SERVER]
    assert (media.limits.pending_per_participant, media.limits.answer_timeout) == (2, 7.0)
    assert media.config.connect_timeout == 12.0
    defaults = make_settings()
    assert (defaults.signaling.sockets_per_token, defaults.signaling.peer_connections_per_token,
            defaults.signaling.sockets_per_address) == (4, 16, 64)
    assert (defaults.media.subscriptions_per_participant,
            defaults.media.pending_per_participant, defaults.media.answer_timeout) == (32, 4, 15.0)
    for bad in ({"HUIZHEN_SIGNALING_SOCKETS_PER_TOKEN": "-1"},
                {"HUIZHEN_MEDIA_ANSWER_TIMEOUT": "0"}, {"HUIZHEN_MEDIA_ROOM_VIEWERS": "x"}):
        with pytest.raises(ConfigError):
            make_settings(**bad)


def test_quota_bookkeeping_is_derived_from_live_holders():
    class Holder:
        def __init__(self, count: int) -> None:
            self.count = count

        def peer_connections(self) -> int:
            return self.count

    quotas = Quotas(QuotaLimits(sockets_per_token=2, peer_connections_per_token=5,
                                sockets_per_address=2))
    assert quotas.open_socket("10.0.0.1") and quotas.open_socket("10.0.0.1")
    assert not quotas.open_socket("10.0.0.1") and quotas.open_socket("10.0.0.2")
    quotas.close_socket("10.0.0.1")
    assert quotas.sockets("10.0.0.1") == 1
    a, b, c = Holder(2), Holder(2), Holder(0)
    assert quotas.claim_token("u", a) and quotas.claim_token("u", a) and quotas.claim_token("u", b)
    assert not quotas.claim_token("u", c) and quotas.claim_token("v", c)
    assert quotas.may_add_peer_connection("u")
    b.count = 3  # counts follow the holders, nothing to keep in step
    assert not quotas.may_add_peer_connection("u")
    quotas.release_token("u", b)
    assert quotas.may_add_peer_connection("u") and quotas.claim_token("u", Holder(0))
    for holder in (a, c):
        quotas.release_token("u", holder)
        quotas.release_token("v", holder)
    assert quotas.tokens() == 1
    unlimited = Quotas(QuotaLimits(0, 0, 0))
    assert all(unlimited.open_socket("x") for _ in range(100))
    assert all(unlimited.claim_token("u", Holder(50)) for _ in range(10))
    assert unlimited.may_add_peer_connection("u")
