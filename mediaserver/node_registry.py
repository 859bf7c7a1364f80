"""NodeRegistry: this node's record in Redis, renewed by a heartbeat, and the others' records.

Keys (``ClusterKeys``, all under one prefix): ``<prefix>node:<id>`` holds a node's
``NodeRecord`` as JSON and expires ``ttl`` seconds after its last heartbeat;
``<prefix>nodes`` is the set of registered node ids (a dead node's id is swept from it
by the others). A heartbeat that fails (Redis down or restarting) is retried with a
short back-off (at most one heartbeat interval), so the node is registered again within
about a second of Redis coming back; ``on_beat`` then runs (the directory re-asserts
its rooms there). Nothing on the forwarding path ever waits for this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from mediaserver.placement import CpuMeter, NodeLoad, NodeRecord, heartbeat_record

logger = logging.getLogger(__name__)

# What a failed Redis call raises: its own errors, or the socket's.
REDIS_FAILURES = (RedisError, OSError, asyncio.TimeoutError)
FIRST_RETRY = 0.1


def as_text(value: bytes | str) -> str:
    """A Redis reply as text (replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True)
class ClusterKeys:
    """The Redis keys of one cluster (several clusters, or test runs, may share a Redis)."""

    prefix: str = "huizhen:"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    @property
    def nodes(self) -> str:
        return f"{self.prefix}nodes"

    @property
    def rooms(self) -> str:
        return f"{self.prefix}rooms"


class NodeRegistry:
    """Registers this node, renews its record every ``heartbeat`` seconds, lists nodes."""

    def __init__(self, redis: Redis, keys: ClusterKeys, node_id: str, url: str, *,
                 heartbeat: float = 1.0, ttl: float = 3.0,
                 clock: Callable[[], float] = time.time) -> None:
        if ttl <= heartbeat:
            raise ValueError("the node ttl must be longer than the heartbeat interval")
        self.redis, self.keys = redis, keys
        self.node_id, self.url = node_id, url
        self.heartbeat, self.ttl = heartbeat, ttl
        self.draining = False
        self.registered = False  # the last heartbeat reached Redis
        # Set by the directory: this node's rooms and participants, and its upkeep after
        # each heartbeat that reached Redis.
        self.load: Callable[[], NodeLoad] = NodeLoad
        self.on_beat: Callable[[], Awaitable[None]] | None = None
        self._clock = clock
        self._cpu = CpuMeter()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    def now(self) -> float:
        return self._clock()

    def record(self) -> NodeRecord:
        """This node's record as of now (its load sampled now)."""
        now = self._clock()
        base = self.load()
        cpu = self._cpu.sample(time.process_time(), time.monotonic())
        load = NodeLoad(base.rooms, base.participants, cpu)
        return heartbeat_record(self.node_id, self.url, load, self.draining, now, self.ttl)

    async def beat(self) -> None:
        """Write this node's record (one round trip); raises when Redis cannot be reached."""
        record = self.record()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.node(self.node_id), record.to_json(), px=int(self.ttl * 1000))
            pipe.sadd(self.keys.nodes, self.node_id)
            await pipe.execute()

    async def records(self) -> dict[str, NodeRecord]:
        """The live records of every registered node (missing or unreadable ones left out)."""
        return await self.read(await self.registered_ids())

    async def registered_ids(self) -> tuple[str, ...]:
        return tuple(sorted(as_text(v) for v in await self.redis.smembers(self.keys.nodes)))

    async def read(self, ids: tuple[str, ...]) -> dict[str, NodeRecord]:
        if not ids:
            return {}
        values = await self.redis.mget([self.keys.node(i) for i in ids])
        out: dict[str, NodeRecord] = {}
        for node_id, value in zip(ids, values, strict=True):
            if value is None:
                continue
            try:
                out[node_id] = NodeRecord.parse(value)
            except ValueError as exc:
                logger.warning("[%s] ignoring node %s: %s", self.node_id, node_id, exc)
        return out

    async def forget(self, dead: tuple[str, ...]) -> None:
        """Drop dead nodes' ids from the set (their records have expired already)."""
        if dead:
            await self.redis.srem(self.keys.nodes, *dead)

    def set_draining(self, draining: bool) -> None:
        """A draining node gets no new rooms; its open rooms stay. Published at once."""
        self.draining = draining
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, *, deregister: bool = True) -> None:
        """Stop the heartbeat; with ``deregister`` remove this node's record at once."""
        task, self._task = self._task, None
        if task is not None:
            # The flag too: a cancel that lands inside a Redis call may come back as a
            # connection error (swallowed by the retry), so the loop checks the flag.
            self._stopping = True
            self._wake.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if deregister:
            with contextlib.suppress(*REDIS_FAILURES):
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.delete(self.keys.node(self.node_id))
                    pipe.srem(self.keys.nodes, self.node_id)
                    await pipe.execute()
        self.registered = False

    async def _run(self) -> None:
        retry = FIRST_RETRY
        while not self._stopping:
            try:
                await self.beat()
            except REDIS_FAILURES as exc:
                if self.registered:
                    logger.warning("[%s] node registry unreachable (%s); retrying",
                                   self.node_id, type(exc).__name__)
                self.registered = False
                delay, retry = retry, min(retry * 2, self.heartbeat)
            else:
                if not self.registered:
                    logger.info("[%s] registered in the node registry", self.node_id)
                self.registered = True
                delay, retry = self.heartbeat, FIRST_RETRY
                await self._upkeep()
            self._wake.clear()
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _upkeep(self) -> None:
        if self.on_beat is None:
            return
        try:
            await self.on_beat()
        except REDIS_FAILURES as exc:  # the next heartbeat tries again
            logger.info("[%s] registry upkeep deferred (%s)", self.node_id, type(exc).__name__)
        except Exception:
            logger.exception("[%s] registry upkeep failed", self.node_id)
