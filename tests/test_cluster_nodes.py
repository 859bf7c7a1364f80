"""Several in-process nodes (the real app, each on its own port) sharing the real Redis:
a join at any node reaches the room on its origin node, through a `redirect` that the
Python client follows, and media from a publisher on the origin reaches a viewer who came
in through another node; a node that stops heartbeating has its rooms placed anew; a
draining node gets no new room; a Redis restart is survived while the room forwards.
People who may publish are redirected (a viewer would be served where it joined, through
a cascade: tests/test_cluster_cascade.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from subprocess import PIPE, Popen
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from redis.asyncio import Redis

from huizhen.cluster import CLUSTER
from huizhen.testpattern import PatternVideoTrack
from signaling import MEDIA_SERVER
from signaling.client import SignalingClient, SignalingError
from tests.conftest import RunningServer, free_port, make_settings, server_environment, serving
from tests.peers import Subscriber, wait_for
from tests.redis_fixtures import SHARED_REDIS, PrivateRedis

ROOM = "bed-1"


def cluster_variables(redis_url: str, prefix: str, heartbeat: str = "0.2",
                      ttl: str = "1.0") -> dict[str, str]:
    """A node's [cluster] settings. The test nodes share this machine's CPU (most in one
    process), so the busy tier of the placement is left out."""
    return {"HUIZHEN_CLUSTER_REDIS_URL": redis_url, "HUIZHEN_CLUSTER_KEY_PREFIX": prefix,
            "HUIZHEN_CLUSTER_HEARTBEAT": heartbeat, "HUIZHEN_CLUSTER_NODE_TTL": ttl,
            "HUIZHEN_CLUSTER_BUSY_CPU": "1000"}


@contextlib.asynccontextmanager
async def cluster(redis_url: str, prefix: str, count: int, *, heartbeat: str = "0.2",
                  ttl: str = "1.0") -> AsyncIterator[list[RunningServer]]:
    """``count`` nodes in this process on ``redis_url``."""
    variables = cluster_variables(redis_url, prefix, heartbeat, ttl)
    async with contextlib.AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(serving(make_settings(**variables)))
                 for _ in range(count)]
        yield nodes


@contextlib.asynccontextmanager
async def killable_node(variables: dict[str, str]) -> AsyncIterator[tuple[str, Popen[bytes]]]:
    """A node in a child process (tests/cluster_child.py); yields its base URL and the
    process, killed afterwards if the test has not killed it."""
    port = free_port()
    env = {**os.environ, **server_environment(**variables), "HUIZHEN_SERVER_PORT": str(port)}
    child = Popen([sys.executable, "-m", "tests.cluster_child", str(port)], stdout=PIPE,
                  env=env)
    try:
        assert child.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline)
        assert line.strip() == b"ready"
        yield f"http://127.0.0.1:{port}", child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


def node_id(node: RunningServer) -> str:
    return node.app[CLUSTER].node_id


def local_rooms(node: RunningServer) -> tuple[str, ...]:
    return node.app[MEDIA_SERVER].directory.local_names()


async def joined_client(node: RunningServer, role: str, room: str = ROOM) -> SignalingClient:
    client = SignalingClient(node.ws_url)
    await client.connect()
    await client.join(node.token(role, room))
    return client


async def joined_at(base_url: str, token: str) -> SignalingClient:
    """A client joined through the node at ``base_url`` (e.g. a killable one)."""
    client = SignalingClient(base_url.replace("http", "ws", 1) + "/ws")
    await client.connect()
    await client.join(token)
    return client


async def raw_join(node: RunningServer, token: str) -> tuple[dict[str, Any], aiohttp.WSMsgType]:
    """The reply to a join on a plain socket, and what the socket does next."""
    async with aiohttp.ClientSession() as session, session.ws_connect(node.ws_url) as ws:
        await ws.send_str(json.dumps({"type": "join", "id": 1, "version": 1, "token": token}))
        reply = json.loads((await ws.receive(5)).data)
        after = await ws.receive(5)
        return reply, after.type


async def publish_pattern(client: SignalingClient) -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection()
    pc.addTrack(PatternVideoTrack(320, 240, 30))
    stream = await client.publish(pc)
    return pc, str(stream["id"])


async def watch(client: SignalingClient, stream: str) -> Subscriber:
    viewer = Subscriber()
    await client.subscribe(stream, viewer.pc)
    return viewer


async def test_a_join_at_any_node_reaches_the_room_on_its_origin_and_its_media(
        redis_prefix: tuple[Redis, str]) -> None:
    redis, prefix = redis_prefix
    async with cluster(SHARED_REDIS, prefix, 3) as (a, b, c):
        ward = await joined_client(a, "ward")  # the first join places the room on a
        assert await redis.hget(f"{prefix}rooms", ROOM) == node_id(a).encode()
        pc, stream = await publish_pattern(ward)
        # On the wire: b answers a join with where the room lives, and closes the socket.
        reply, after = await raw_join(b, b.token("expert"))
        assert reply == {"type": "redirect", "id": 1, "room": ROOM, "url": a.base_url}
        assert after in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        # The client follows it and watches the bedside through a.
        expert = SignalingClient(c.ws_url)
        await expert.connect()
        joined = await expert.join(c.token("expert"))
        viewer = await watch(expert, stream)
        try:
            assert expert.redirects == [a.ws_url]
            assert joined["room"] == ROOM and [s["id"] for s in joined["streams"]] == [stream]
            await wait_for(lambda: viewer.received.video_frames >= 20)
            numbers = viewer.received.frame_numbers
            assert numbers == sorted(numbers) and viewer.received.mean_difference < 12
            assert (local_rooms(a), local_rooms(b), local_rooms(c)) == ((ROOM,), (), ())
            print(f"viewer via node c: {viewer.received.video_frames} frames decoded, mean "
                  f"difference {viewer.received.mean_difference:.1f}")
        finally:
            await close_all(viewer, pc, expert, ward)


async def test_when_the_rooms_node_is_killed_its_people_come_back_through_another_node(
        redis_prefix: tuple[Redis, str]) -> None:
    redis, prefix = redis_prefix
    variables = cluster_variables(SHARED_REDIS, prefix)
    async with cluster(SHARED_REDIS, prefix, 1) as (b,), killable_node(variables) as (a, child):
        a_socket = a.replace("http", "ws", 1) + "/ws"
        ward = await joined_at(a, b.token("ward"))  # the join at a places the room on a
        pc, stream = await publish_pattern(ward)
        expert = SignalingClient(b.ws_url)
        await expert.connect()
        await expert.join(b.token("expert"))
        viewer = await watch(expert, stream)
        things: list[Subscriber | RTCPeerConnection | SignalingClient] = [viewer, pc]
        try:
            assert expert.redirects == [a_socket] and local_rooms(b) == ()
            await wait_for(lambda: viewer.received.video_frames >= 10)
            child.kill()  # no goodbye: its record expires, its sockets drop
            killed = time.monotonic()
            # Both come back through b, the node they know besides the dead one.
            await rejoin_through(ward, b.ws_url, b.token("ward"))
            pc_again, stream_again = await publish_pattern(ward)
            joined = await rejoin_through(expert, b.ws_url, b.token("expert"))
            assert [s["id"] for s in joined["streams"]] == [stream_again]
            viewer_again = await watch(expert, stream_again)
            things += [viewer_again, pc_again]
            await wait_for(lambda: viewer_again.received.video_frames >= 10)
            elapsed = time.monotonic() - killed
            assert local_rooms(b) == (ROOM,)
            assert await redis.hget(f"{prefix}rooms", ROOM) == node_id(b).encode()
            print(f"node a killed; the bedside published again and the expert decoded 10 "
                  f"frames through node b {elapsed:.2f} s later")
        finally:
            await close_all(*things, expert, ward)


async def rejoin_through(client: SignalingClient, entry: str, token: str) -> dict[str, Any]:
    """Reconnect at ``entry`` and join, again while the join is redirected to the dead
    node (until its record expires and the room is placed anew)."""
    deadline = time.monotonic() + 15
    while True:
        client.url = entry
        try:
            await client.reconnect()
            return await client.join(token)
        except (OSError, aiohttp.ClientError, ConnectionError, SignalingError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_a_whip_post_at_another_node_is_redirected_to_the_rooms_node(
        redis_prefix: tuple[Redis, str]) -> None:
    _, prefix = redis_prefix
    async with cluster(SHARED_REDIS, prefix, 2) as (a, b):
        ward = await joined_client(a, "ward")
        headers = {"Authorization": "Bearer " + b.token("ward"),
                   "Content-Type": "application/sdp"}
        try:
            async with aiohttp.ClientSession() as http, http.post(
                    f"{b.base_url}/whip/{ROOM}?x=1", data="v=0\r\n", headers=headers,
                    allow_redirects=False) as response:
                assert response.status == 307
                assert response.headers["Location"] == f"{a.base_url}/whip/{ROOM}?x=1"
            assert local_rooms(b) == ()
        finally:
            await close_all(ward)


async def test_a_node_that_stops_heartbeating_has_its_rooms_placed_again_on_the_next_join(
        redis_prefix: tuple[Redis, str]) -> None:
    redis, prefix = redis_prefix
    async with cluster(SHARED_REDIS, prefix, 2) as (a, b):
        ward = await joined_client(a, "ward")
        before = await joined_client(b, "expert")
        assert before.redirects == [a.ws_url]
        await before.close()
        await a.app[CLUSTER].registry.stop(deregister=False)  # a's heartbeat stops
        await wait_until_gone(b, node_id(a))
        expert = await joined_client(b, "expert")
        try:
            assert expert.redirects == [] and local_rooms(b) == (ROOM,)
            assert await redis.hget(f"{prefix}rooms", ROOM) == node_id(b).encode()
        finally:
            await close_all(expert, ward)


async def test_a_draining_node_gets_no_new_room_and_keeps_its_open_one(
        redis_prefix: tuple[Redis, str]) -> None:
    _, prefix = redis_prefix
    async with cluster(SHARED_REDIS, prefix, 2) as (a, b):
        ward = await joined_client(a, "ward")
        operator = {"Authorization": "Bearer " + a.token("operator")}
        async with aiohttp.ClientSession() as http:
            async with http.post(a.base_url + "/api/v1/drain", headers=operator) as response:
                assert response.status == 200
                assert await response.json() == {"node": node_id(a), "draining": True}
            async with http.post(a.base_url + "/api/v1/drain") as response:
                assert response.status == 401  # operators only
            async with http.get(a.base_url + "/api/v1/health") as response:
                health = await response.json()
        assert health["status"] == "ok" and health["checks"] == [
            {"component": "cluster", "status": "warning", "reason": "draining",
             "node": node_id(a)}]
        await wait_for_record(b, node_id(a), draining=True)
        moved = await joined_client(a, "expert", room="bed-2")
        stays = await joined_client(b, "expert")
        try:
            assert moved.redirects == [b.ws_url] and local_rooms(b) == ("bed-2",)
            assert stays.redirects == [a.ws_url] and local_rooms(a) == (ROOM,)
        finally:
            await close_all(moved, stays, ward)


async def test_a_redis_restart_is_survived_while_the_room_forwards(
        private_redis: PrivateRedis) -> None:
    prefix = "huizhen-restart:"
    async with cluster(private_redis.url, prefix, 2, heartbeat="1.0", ttl="3.0") as (a, b):
        ward = await joined_client(a, "ward")
        pc, stream = await publish_pattern(ward)
        expert = await joined_client(b, "expert")
        viewer = await watch(expert, stream)
        try:
            assert expert.redirects == [a.ws_url]
            await wait_for(lambda: viewer.received.video_frames >= 10)
            private_redis.stop()
            await wait_for(lambda: not a.app[CLUSTER].registry.registered, timeout=10)
            frames = viewer.received.video_frames
            # Redis is gone: the room keeps forwarding, a new room cannot be placed.
            await wait_for(lambda: viewer.received.video_frames >= frames + 30)
            refused = SignalingClient(b.ws_url)
            await refused.connect()
            with pytest.raises(SignalingError) as caught:
                await refused.join(b.token("expert", "bed-2"))
            await refused.close()
            assert caught.value.code == "unavailable"
            started = time.monotonic()
            await private_redis.start()
            fresh = Redis.from_url(private_redis.url)
            try:
                await wait_for_async(lambda: registered_again(fresh, prefix, a, b), timeout=15)
                elapsed = time.monotonic() - started
                assert await fresh.hget(f"{prefix}rooms", ROOM) == node_id(a).encode()
            finally:
                await fresh.aclose()
            print(f"both nodes registered again, and the room's placement restored, "
                  f"{elapsed:.2f} s after Redis came back; the viewer decoded "
                  f"{viewer.received.video_frames - frames} frames meanwhile")
            again = await joined_client(b, "expert")
            assert again.redirects == [a.ws_url]
            await again.close()
        finally:
            await close_all(viewer, pc, expert, ward)


async def close_all(*things: Subscriber | RTCPeerConnection | SignalingClient) -> None:
    for thing in things:
        await thing.close()


async def registered_again(redis: Redis, prefix: str, *nodes: RunningServer) -> bool:
    keys = [f"{prefix}node:{node_id(n)}" for n in nodes]
    placed = await redis.hget(f"{prefix}rooms", ROOM)
    return await redis.exists(*keys) == len(keys) and placed is not None


async def wait_for_async(check, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ConnectionError):
            if await check():
                return
        await asyncio.sleep(0.05)
    raise TimeoutError("condition not met in time")


async def wait_until_gone(observer: RunningServer, gone: str) -> None:
    registry = observer.app[CLUSTER].registry
    await wait_for_async(lambda: absent(registry, gone), timeout=10)


async def absent(registry, node: str) -> bool:  # type: ignore[no-untyped-def]
    return node not in await registry.records()


async def wait_for_record(observer: RunningServer, node: str, *, draining: bool) -> None:
    registry = observer.app[CLUSTER].registry

    async def seen() -> bool:
        record = (await registry.records()).get(node)
        return record is not None and record.draining == draining

    await wait_for_async(seen, timeout=10)
