"""The signalling server over a real WebSocket: grants, bad input, and a full session."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from huizhen.testpattern import PatternVideoTrack
from signaling import SIGNALING_CONFIG, SignalingConfig, TokenAuthority
from signaling.client import SignalingClient, SignalingError
from tests.peers import Subscriber, wait_for


async def raw_socket(server):
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(server.ws_url)
    return session, ws


async def exchange(ws, message) -> dict:
    await ws.send_str(message if isinstance(message, str) else json.dumps(message))
    reply = await ws.receive(timeout=10)
    assert reply.type == aiohttp.WSMsgType.TEXT, reply
    return json.loads(reply.data)


async def test_join_reports_room_grants_and_streams(running_server):
    client = SignalingClient(running_server.ws_url)
    await client.connect()
    joined = await client.join(running_server.token("expert", name="Dr. Li"))
    assert joined["type"] == "joined" and joined["version"] == 1
    assert joined["room"] == "bed-1"
    assert joined["participant"]["name"] == "Dr. Li"
    assert joined["grants"] == ["ptz", "publish", "subscribe"]
    assert joined["streams"] == [] and joined["participants"] == []
    await client.close()


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "'token' must be a non-empty string"),
        ("not-a-jwt", "the token is malformed"),
        ("EXPIRED", "the token has expired"),
        ("FOREIGN", "the token's signature is not valid here"),
        ("OTHER_AUDIENCE", "the token was issued for another service"),
    ],
)
async def test_bad_tokens_are_refused(running_server, token, message):
    if token == "EXPIRED":
        token = running_server.authority.mint(room="bed-1", role="expert", name="x", ttl=60,
                                              now=1_000_000)
    elif token == "FOREIGN":
        other = TokenAuthority("another-secret-0123456789-0123456789abcdef", "huizhen",
                               "huizhen-media")
        token = other.mint(room="bed-1", role="expert", name="x", ttl=60)
    elif token == "OTHER_AUDIENCE":
        records = TokenAuthority("test-secret-0123456789abcdef-0123456789", "huizhen",
                                 "records")
        token = records.mint(room="bed-1", role="expert", name="x", ttl=60)
    session, ws = await raw_socket(running_server)
    reply = await exchange(ws, {"type": "join", "version": 1, "token": token, "id": 7})
    assert reply["type"] == "error" and reply["id"] == 7
    assert reply["code"] in ("unauthorized", "bad-message")
    assert reply["message"] == message
    # Still connected: a proper join afterwards works.
    good = await exchange(ws, {"type": "join", "version": 1, "id": 8,
                               "token": running_server.token("observer")})
    assert good["type"] == "joined"
    await session.close()


async def test_grants_are_enforced(running_server):
    client = SignalingClient(running_server.ws_url)
    await client.connect()
    await client.join(running_server.token("observer"))
    with pytest.raises(SignalingError) as info:
        await client.request({"type": "publish", "sdp": "v=0\r\n"})
    assert info.value.code == "forbidden"
    await client.close()
    operator = SignalingClient(running_server.ws_url)
    await operator.connect()
    with pytest.raises(SignalingError) as info:
        await operator.join(running_server.authority.mint(room="*", role="operator",
                                                          name="ops", ttl=60))
    assert info.value.code == "forbidden"
    await operator.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad-message"),
        ("[1, 2]", "bad-message"),
        ('{"type": 5}', "bad-message"),
        ('{"type": "explode"}', "bad-message"),
        ('{"type": "publish", "sdp": "v=0"}', "not-joined"),
        ('{"type": "join", "version": 2, "token": "x"}', "unsupported-version"),
        ('{"type": "join", "version": 1, "token": "x", "id": {"a": 1}}', "bad-message"),
        ("[" * 100000 + "]" * 100000, "message-too-large"),
        ('{"type": "ping", "id": "' + "x" * 200 + '"}', "bad-message"),
    ],
)
async def test_malformed_messages_get_clear_errors_and_the_socket_survives(running_server,
                                                                           frame, code):
    session, ws = await raw_socket(running_server)
    reply = await exchange(ws, frame)
    assert reply["type"] == "error" and reply["code"] == code, reply
    assert "x" * 20 not in reply["message"]  # nothing echoed back
    assert await exchange(ws, {"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
    await session.close()


async def test_binary_and_huge_frames(running_server):
    session, ws = await raw_socket(running_server)
    await ws.send_bytes(b"\x00\x01")
    reply = json.loads((await ws.receive(timeout=10)).data)
    assert reply["code"] == "bad-message"
    await ws.send_str("x" * (300 * 1024))  # over 4x the limit: closed with 1009
    closing = await ws.receive(timeout=10)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1009
    await session.close()
    # The server is unharmed.
    health = running_server.base_url + "/api/v1/health"
    async with aiohttp.ClientSession() as http, http.get(health) as response:
        assert (await response.json())["status"] == "ok"


async def test_join_timeout_closes_idle_sockets(running_server):
    running_server.app[SIGNALING_CONFIG]  # the default is 10 s; shorten for this test
    object.__setattr__(running_server.app[SIGNALING_CONFIG], "join_timeout", 0.3)
    session, ws = await raw_socket(running_server)
    reply = json.loads((await ws.receive(timeout=5)).data)
    assert reply["code"] == "join-timeout"
    closing = await ws.receive(timeout=5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1008
    await session.close()
    assert isinstance(running_server.app[SIGNALING_CONFIG], SignalingConfig)


async def test_garbage_sdp_is_refused_and_the_session_goes_on(running_server):
    client = SignalingClient(running_server.ws_url)
    await client.connect()
    await client.join(running_server.token("ward"))
    for sdp in ["hello", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "v=0\r\n" + "a=x\r\n" * 10]:
        with pytest.raises(SignalingError) as info:
            await client.request({"type": "publish", "sdp": sdp})
        assert info.value.code == "bad-sdp"
    with pytest.raises(SignalingError) as info:
        await client.request({"type": "subscribe", "stream": "s-nope"})
    assert info.value.code == "not-found"
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_full_session_over_signalling(running_server):
    ward = SignalingClient(running_server.ws_url)
    await ward.connect()
    await ward.join(running_server.token("ward", name="Ward 3"))
    expert = SignalingClient(running_server.ws_url)
    await expert.connect()
    joined = await expert.join(running_server.token("expert", name="Dr. Wang"))
    assert [p["name"] for p in joined["participants"]] == ["Ward 3"]
    assert (await ward.next_event("participant-joined"))["participant"]["name"] == "Dr. Wang"

    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(320, 240, 30))
    stream = await ward.publish(pub)
    added = await expert.next_event("track-added")
    assert added["stream"]["id"] == stream["id"]
    assert added["stream"]["tracks"][0]["kind"] == "video"

    sub = Subscriber()
    subscription = await expert.subscribe(stream["id"], sub.pc)
    await wait_for(lambda: sub.received.video_frames >= 30, 30)
    assert sub.received.mean_difference < 12
    state = await expert.next_event("connection-state")
    assert state["direction"] in ("publish", "subscribe")

    # The ward disconnects abruptly: the expert is told, the subscription ends.
    await ward.close()
    await pub.close()
    removed = await expert.next_event("track-removed")
    assert removed["stream"] == stream["id"]
    closed = await expert.next_event("subscription-closed")
    assert closed["subscription"] == subscription and closed["reason"] == "stream-ended"
    left = await expert.next_event("participant-left")
    assert left["participant"] == joined["participants"][0]["id"]
    await sub.close()
    await expert.close()
    await asyncio.sleep(0)


async def test_shutdown_closes_client_sockets_promptly():
    from aiohttp import web

    from huizhen.app import create_app, token_authority
    from tests.conftest import make_settings

    settings = make_settings()
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.server.port).start()
    client = SignalingClient(settings.server.base_url.replace("http", "ws") + "/ws")
    await client.connect()
    await client.join(token_authority(settings).mint(room="r", role="ward", name="w", ttl=60))
    started = asyncio.get_running_loop().time()
    await runner.cleanup()
    assert asyncio.get_running_loop().time() - started < 5
    await client._reader
    assert client._ws.close_code == 1001
    await client.close()


async def test_unsubscribe_unpublish_and_leave(running_server):
    ward = SignalingClient(running_server.ws_url)
    await ward.connect()
    await ward.join(running_server.token("ward"))
    expert = SignalingClient(running_server.ws_url)
    await expert.connect()
    joined = await expert.join(running_server.token("expert"))
    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(160, 120, 15))
    stream = await ward.publish(pub)
    sub = Subscriber()
    subscription = await expert.subscribe(stream["id"], sub.pc)
    await wait_for(lambda: sub.received.video_frames >= 5, 30)
    assert (await expert.request({"type": "unsubscribe", "subscription": subscription}))[
        "type"] == "ok"
    with pytest.raises(SignalingError) as info:
        await expert.request({"type": "unsubscribe", "subscription": subscription})
    assert info.value.code == "not-found"
    assert (await ward.request({"type": "unpublish", "stream": stream["id"]}))["type"] == "ok"
    assert (await expert.next_event("track-removed"))["stream"] == stream["id"]
    assert (await expert.request({"type": "leave"}))["type"] == "left"
    left = await ward.next_event("participant-left")
    assert left["participant"] == joined["participant"]["id"]
    await asyncio.gather(sub.close(), pub.close(), expert.close(), ward.close())


async def test_floods_are_rate_limited_with_the_request_id(running_server):
    session, ws = await raw_socket(running_server)
    for i in range(80):
        await ws.send_str(json.dumps({"type": "ping", "id": i}))
    replies = [json.loads((await ws.receive(timeout=10)).data) for _ in range(80)]
    limited = [r for r in replies if r["type"] == "error"]
    assert limited and all(r["code"] == "rate-limited" for r in limited)
    assert {r["id"] for r in replies} == set(range(80))  # every request got its answer
    await asyncio.sleep(1.0)
    assert await exchange(ws, {"type": "ping", "id": "later"}) == {"type": "pong",
                                                                   "id": "later"}
    await session.close()
