"""NodeRegistry and RedisRoomDirectory against the real Redis (127.0.0.1:6379), each test
under its own key prefix: records with a TTL, atomic placement, draining, dead nodes, a
Redis that cannot be reached."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from huizhen.cluster import redis_client
from mediaserver import MediaConfig, Room
from mediaserver.errors import DirectoryUnavailableError
from mediaserver.node_registry import ClusterKeys, NodeRegistry
from mediaserver.placement import NodeRecord
from mediaserver.redis_directory import RedisRoomDirectory
from tests.conftest import free_port
from tests.peers import wait_for

HEARTBEAT, TTL = 0.1, 0.5
NEVER_BUSY = 1000.0


def make_directory(redis: Redis, prefix: str, node_id: str) -> RedisRoomDirectory:
    registry = NodeRegistry(redis, ClusterKeys(prefix), node_id, f"http://{node_id}.test:80",
                            heartbeat=HEARTBEAT, ttl=TTL)
    # Every node of this test is in one process: they share one CPU share, so the busy
    # tier of the choice is left out (it is tested in test_placement.py).
    return RedisRoomDirectory(redis, registry, busy_cpu=NEVER_BUSY)


@pytest.fixture
async def nodes(redis_prefix: tuple[Redis, str]) -> AsyncIterator[list[RedisRoomDirectory]]:
    """Three started nodes a, b, c on the shared Redis (each with its own client)."""
    _, prefix = redis_prefix
    clients = [redis_client("redis://127.0.0.1:6379/0") for _ in range(3)]
    directories = [make_directory(c, prefix, n) for c, n in zip(clients, "abc", strict=True)]
    for directory in directories:
        await directory.start()
    try:
        yield directories
    finally:
        for directory in directories:
            await directory.close()
        for client in clients:
            await client.aclose()


def open_room(directory: RedisRoomDirectory, name: str) -> Room:
    room = Room(name, MediaConfig(), on_closed=directory.room_closed)
    directory.room_opened(room)
    return room


async def test_a_node_registers_with_a_ttl_and_leaves_on_stop(
        redis_prefix: tuple[Redis, str]) -> None:
    redis, prefix = redis_prefix
    directory = make_directory(redis_client("redis://127.0.0.1:6379/0"), prefix, "a")
    await directory.start()
    key = f"{prefix}node:a"
    record = NodeRecord.parse(await redis.get(key))
    assert (record.node_id, record.url, record.draining) == ("a", "http://a.test:80", False)
    assert 0 < await redis.pttl(key) <= TTL * 1000
    assert await redis.smembers(f"{prefix}nodes") == {b"a"}
    await directory.close()
    assert await redis.exists(key) == 0 and await redis.smembers(f"{prefix}nodes") == set()
    await directory.redis.aclose()


async def test_two_nodes_placing_one_room_at_once_agree_on_one_node(
        nodes: list[RedisRoomDirectory], redis_prefix: tuple[Redis, str]) -> None:
    redis, prefix = redis_prefix
    for round_ in range(10):
        name = f"bed-{round_}"
        answers = await asyncio.gather(*(d.placement(name) for d in nodes))
        assert len({p.node_id for p in answers}) == 1, answers
        holder = answers[0].node_id
        assert [p.local for p in answers] == [d.node_id == holder for d in nodes]
        assert {p.url for p in answers} == {f"http://{holder}.test:80"}
        assert await redis.hget(f"{prefix}rooms", name) == holder.encode()


async def test_the_node_asked_keeps_a_new_room_when_loads_tie_and_its_room_stays(
        nodes: list[RedisRoomDirectory], redis_prefix: tuple[Redis, str]) -> None:
    a, b, _ = nodes
    placement = await a.placement("bed-1")
    assert (placement.node_id, placement.local) == ("a", True)
    room = open_room(a, "bed-1")
    assert (await b.placement("bed-1")).node_id == "a"
    assert await b.names() == ("bed-1",)
    # Closing the room releases its placement.
    room.close("test")
    redis, prefix = redis_prefix
    await wait_for(lambda: not a._tasks, timeout=5)
    assert await redis.hget(f"{prefix}rooms", "bed-1") is None


async def test_a_node_claims_its_open_rooms_again_when_redis_forgot_them(
        nodes: list[RedisRoomDirectory], redis_prefix: tuple[Redis, str]) -> None:
    redis, prefix = redis_prefix
    a = nodes[0]
    for name in ("bed-1", "bed-2", "bed-3"):
        await a.placement(name)
        open_room(a, name)
    await redis.delete(f"{prefix}rooms", f"{prefix}node:a")  # as after a Redis restart
    await wait_for_set(redis, f"{prefix}nodes", {b"a", b"b", b"c"})
    for _ in range(100):
        if len(await redis.hgetall(f"{prefix}rooms")) == 3:
            break
        await asyncio.sleep(HEARTBEAT)
    assert await redis.hgetall(f"{prefix}rooms") == {
        b"bed-1": b"a", b"bed-2": b"a", b"bed-3": b"a"}
    assert await redis.exists(f"{prefix}node:a") == 1


async def test_a_draining_node_gets_no_new_room_but_keeps_its_own(
        nodes: list[RedisRoomDirectory]) -> None:
    a, b, c = nodes
    await a.placement("bed-1")
    open_room(a, "bed-1")
    a.registry.set_draining(True)
    await wait_for_record(b, "a", lambda r: r.draining)
    placement = await a.placement("bed-2")
    assert placement.node_id in ("b", "c") and not placement.local
    assert (await c.placement("bed-1")).node_id == "a"  # an open room stays where it is


async def test_a_dead_nodes_rooms_are_placed_again_on_the_next_join(
        nodes: list[RedisRoomDirectory], redis_prefix: tuple[Redis, str]) -> None:
    redis, prefix = redis_prefix
    a, b, _ = nodes
    await a.placement("bed-1")
    open_room(a, "bed-1")
    await a.registry.stop(deregister=False)  # a stops heartbeating: it "dies"
    await wait_for_gone(b, "a")
    placement = await b.placement("bed-1")
    assert (placement.node_id, placement.local) == ("b", True)
    assert await redis.hget(f"{prefix}rooms", "bed-1") == b"b"
    # The survivors' upkeep sweeps the dead node from the registered set.
    await wait_for_set(redis, f"{prefix}nodes", {b"b", b"c"})


async def test_with_redis_unreachable_a_join_is_refused_and_local_rooms_stay(
        redis_prefix: tuple[Redis, str]) -> None:
    _, prefix = redis_prefix
    directory = make_directory(redis_client(f"redis://127.0.0.1:{free_port()}/0"), prefix, "a")
    await directory.start()  # nothing listens there: not registered, no exception
    try:
        assert not directory.registry.registered
        room = open_room(directory, "bed-1")  # opened while Redis is away
        assert directory.local("bed-1") is room and directory.local_names() == ("bed-1",)
        assert (await directory.placement("bed-1")).local  # its own room: no Redis needed
        with pytest.raises(DirectoryUnavailableError) as caught:
            await directory.placement("bed-2")
        assert caught.value.code == "unavailable"
    finally:
        await directory.close()
        await directory.redis.aclose()


async def wait_for_record(directory: RedisRoomDirectory, node_id: str, check) -> None:  # type: ignore[no-untyped-def]
    for _ in range(100):
        record = (await directory.registry.records()).get(node_id)
        if record is not None and check(record):
            return
        await asyncio.sleep(HEARTBEAT)
    raise TimeoutError(f"node {node_id}'s record never matched")


async def wait_for_gone(directory: RedisRoomDirectory, node_id: str) -> None:
    for _ in range(100):
        if node_id not in await directory.registry.records():
            return
        await asyncio.sleep(HEARTBEAT)
    raise TimeoutError(f"node {node_id} never expired")


async def wait_for_set(redis: Redis, key: str, expected: set[bytes]) -> None:
    for _ in range(100):
        if await redis.smembers(key) == expected:
            return
        await asyncio.sleep(HEARTBEAT)
    raise TimeoutError(f"{key} never became {expected}")
