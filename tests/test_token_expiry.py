"""Token expiry mid-session: token-expired closes the socket; refresh keeps it open."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from huizhen.testpattern import PatternVideoTrack
from signaling import MEDIA_SERVER
from signaling.app_keys import QUOTAS
from signaling.client import SignalingClient, SignalingError
from tests.peers import wait_for


async def join(url: str, token: str) -> SignalingClient:
    client = SignalingClient(url)
    await client.connect()
    await client.join(token)
    return client


async def closed(client: SignalingClient) -> int | None:
    assert client._reader is not None and client._ws is not None
    await asyncio.wait_for(client._reader, 10)
    return client._ws.close_code


async def test_an_expired_token_closes_its_socket_and_leaves_the_room(running_server):
    authority = running_server.authority
    url = running_server.ws_url
    ward = await join(url, authority.mint(room="bed-1", role="ward", name="w", ttl=2))
    assert ward.joined is not None
    expires_at = ward.joined["expiresAt"]
    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(160, 120, 15))
    stream = await ward.publish(pub)
    expert = await join(url, running_server.token("expert"))
    media = running_server.app[MEDIA_SERVER]
    assert media.transports() == 1

    expired = await ward.next_event("token-expired", timeout=10)
    assert time.time() >= expires_at and "expired" in expired["message"]
    assert await closed(ward) == 1008
    # Its participant left and its publication ended, for everybody.
    removed = await expert.next_event("track-removed")
    assert removed["stream"] == stream["id"]
    left = await expert.next_event("participant-left")
    assert left["participant"] == ward.joined["participant"]["id"]
    assert media.transports() == 0
    assert expert.joined is not None
    room = media.directory.local("bed-1")
    assert room is not None
    assert list(room.participants) == [expert.joined["participant"]["id"]]
    await asyncio.gather(pub.close(), ward.close(), expert.close())


async def test_a_refreshed_token_keeps_the_socket_open(running_server):
    authority = running_server.authority
    url = running_server.ws_url
    short = authority.mint(room="bed-1", role="expert", name="e", ttl=2, subject="u-li")
    client = await join(url, short)
    fresh = authority.mint(room="bed-1", role="expert", name="e", ttl=60, subject="u-li")
    reply = await client.request({"type": "refresh", "token": fresh})
    assert client.joined is not None
    assert reply["type"] == "refreshed" and reply["expiresAt"] >= client.joined["expiresAt"] + 50
    await asyncio.sleep(3.0)  # past the first token's expiry
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    with pytest.raises(TimeoutError):
        await client.next_event("token-expired", timeout=0.5)
    assert client._ws is not None and not client._ws.closed
    await client.close()


@pytest.mark.parametrize(
    "change",
    [{"room": "bed-2"}, {"subject": "u-someone-else"}, {"role": "ward"}, {"ttl": -10},
     {"token": "not-a-jwt"}],
)
async def test_refresh_for_another_identity_is_refused(running_server, change):
    authority = running_server.authority
    claims = {"room": "bed-1", "role": "expert", "name": "e", "ttl": 60, "subject": "u-li"}
    client = await join(running_server.ws_url, authority.mint(**claims))  # type: ignore[arg-type]
    token = change.pop("token", None) or authority.mint(**{**claims, **change})  # type: ignore[arg-type]
    with pytest.raises(SignalingError) as info:
        await client.request({"type": "refresh", "token": token})
    assert info.value.code == "unauthorized"
    # The session goes on with its old token.
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_refresh_before_join_is_refused(running_server):
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(running_server.ws_url)
        await ws.send_json({"type": "refresh", "id": 1, "token": running_server.token("ward")})
        reply = await ws.receive_json(timeout=5)
        assert reply == {"type": "error", "id": 1, "code": "not-joined",
                         "message": "send a join message first"}
        await ws.close()


async def test_the_server_keeps_no_state_for_expired_sockets(running_server):
    media = running_server.app[MEDIA_SERVER]
    quotas = running_server.app[QUOTAS]
    clients = [await join(running_server.ws_url,
                          running_server.authority.mint(room="bed-1", role="observer",
                                                        name="o", ttl=1))
               for _ in range(3)]
    for client in clients:
        await client.next_event("token-expired", timeout=10)
        assert await closed(client) == 1008
        await client.close()
    await wait_for(lambda: not media.directory.local_names() and quotas.tokens() == 0, 5)
