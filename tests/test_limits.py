"""Bounded resources: memory after many sessions, and quotas per token, participant, address."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from huizhen.testpattern import PatternVideoTrack
from signaling import TokenAuthority
from signaling.client import SignalingClient
from tests.conftest import free_port, stop_process
from tests.peers import Subscriber, wait_for

SECRET = "memory-test-secret-0123456789abcdef-0123"
MIB = 2**20
WARM_UP = 50


@pytest.fixture
async def child_server() -> AsyncIterator[str]:
    port = free_port()
    child = subprocess.Popen([sys.executable, "-m", "tests.memory_child", str(port), SECRET],
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline)
        assert line.strip() == b"ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(child)


async def memory(base_url: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as http, http.get(base_url + "/_test/memory") as reply:
        body: dict[str, int] = await reply.json()
        return body


async def settled(base_url: str, timeout: float = 30.0) -> dict[str, int]:
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


async def test_two_hundred_sessions_do_not_grow_the_server(child_server):
    """Server RSS grows < 5 MiB over 200 cycles after warm-up; every room is collected.

    The server runs in a child process so that the test's own peers (which decode
    video) stay out of the measurement, and the child reports after gc.collect().
    """
    authority = TokenAuthority(SECRET, "huizhen", "huizhen-media")
    ws_url = child_server.replace("http", "ws") + "/ws"
    for index in range(WARM_UP):  # imports, codec tables, allocator arenas
        await one_cycle(ws_url, authority, index)
    before = await settled(child_server)
    assert before["roomsAlive"] == 0, before
    for index in range(WARM_UP, WARM_UP + 200):
        await one_cycle(ws_url, authority, index)
    after = await settled(child_server)
    growth = after["rss"] - before["rss"]
    print(f"server RSS before {before['rss'] / MIB:.1f} MiB, after 200 cycles "
          f"{after['rss'] / MIB:.1f} MiB, growth {growth / MIB:.2f} MiB; "
          f"fds {before['fds']} -> {after['fds']}; report {after}")
    assert after["roomsCreated"] == WARM_UP + 200
    assert (after["rooms"], after["transports"], after["peerConnections"],
            after["iceConnections"]) == (0, 0, 0, 0), after
    assert (after["roomsAlive"], after["roomObjects"], after["transportObjects"],
            after["participantObjects"]) == (0, 0, 0, 0), after
    assert growth < 5 * MIB
    assert after["fds"] <= before["fds"]
