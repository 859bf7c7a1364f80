"""RedisRoomDirectory: the room directory shared by several nodes through Redis.

A room lives on one node. Placements are the hash ``<prefix>rooms`` (room -> node id).
A join of a room this node does not host asks ``placement``: the room stays where it
is while that node is live, and otherwise (never placed, or its node dead) it is placed
on the least-loaded live node that is not draining (``placement.decide``), written with
a compare-and-set script so that two nodes placing one room at once agree on one node.
The node that hosts a room re-asserts its placement after every heartbeat (so a Redis
that restarted empty learns it again) and releases it when the room closes.

``local``, ``local_names`` and ``watch`` never touch Redis: they are the forwarding
path's and the recorder's, and go on while Redis is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from mediaserver.directory import LocalRoomDirectory, RoomPlacement, RoomWatcher
from mediaserver.errors import DirectoryUnavailableError
from mediaserver.node_registry import REDIS_FAILURES, ClusterKeys, NodeRegistry, as_text
from mediaserver.placement import BUSY_CPU, NodeLoad, dead_nodes, decide, rooms_to_replace

if TYPE_CHECKING:
    from mediaserver.room import Room

logger = logging.getLogger(__name__)

# KEYS[1]: the placements hash. ARGV: room, expected node ("" = none), new node ("" =
# remove). Writes only when the current value is the expected one; returns the value
# in place afterwards (the new one when it was written).
COMPARE_AND_SET = """
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return current end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return ARGV[3]
"""
# KEYS[1]: the placements hash. ARGV: room, node. Places the room on the node unless
# another node holds it; returns the holder.
CLAIM = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then return current end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return ARGV[2]
"""
PLACEMENT_ATTEMPTS = 4


class RedisRoomDirectory:
    """Rooms of every node, placed through Redis; this node's rooms kept in memory."""

    def __init__(self, redis: Redis, registry: NodeRegistry, *,
                 busy_cpu: float = BUSY_CPU) -> None:
        self.redis = redis
        self.registry = registry
        self.keys: ClusterKeys = registry.keys
        self.busy_cpu = busy_cpu  # see placement.choose_node
        self._local = LocalRoomDirectory(registry.node_id)
        self._tasks: set[asyncio.Task[None]] = set()
        # Rooms hosted here but placed on another node (said once in the log, not per beat).
        self._conflicts: set[str] = set()
        self._cas = redis.register_script(COMPARE_AND_SET)
        self._claim = redis.register_script(CLAIM)
        registry.on_beat = self.after_beat
        registry.load = self.load

    @property
    def node_id(self) -> str:
        return self._local.node_id

    # ----------------------------------------------------------------- any room (Redis)

    async def placement(self, name: str) -> RoomPlacement:
        """Where ``name`` lives; placed now (atomically) when unplaced or on a dead node.
        Raises DirectoryUnavailableError when Redis cannot be reached or no node is live."""
        room = self._local.local(name)
        if room is not None and room.origin is None:  # a relayed room lives elsewhere
            return RoomPlacement(name, self.node_id, local=True, url=self.registry.url)
        try:
            for _ in range(PLACEMENT_ATTEMPTS):
                found = await self._place(name)
                if found is not None:
                    return found
        except REDIS_FAILURES as exc:
            logger.warning("[%s] room directory unreachable (%s)", name, type(exc).__name__)
            raise DirectoryUnavailableError("the room directory cannot be reached; "
                                            "try again") from None
        raise DirectoryUnavailableError("no media node can take this room now; try again")

    async def _place(self, name: str) -> RoomPlacement | None:
        """One read-decide-write round; None when another node's write came first."""
        raw = await self.redis.hget(self.keys.rooms, name)
        current = as_text(raw) if raw is not None else None
        records = await self.registry.records()
        decision = decide(current, records, self.registry.now(), prefer=self.node_id,
                          busy_cpu=self.busy_cpu)
        if decision.node_id is None:
            raise DirectoryUnavailableError("no media node can take this room now; try again")
        if decision.write:
            held = await self._cas(keys=[self.keys.rooms],
                                   args=[name, decision.expected or "", decision.node_id])
            if as_text(held) != decision.node_id:
                return None
            logger.info("[%s] placed on node %s", name, decision.node_id)
        return RoomPlacement(name, decision.node_id, local=decision.node_id == self.node_id,
                             url=records[decision.node_id].url)

    async def names(self) -> tuple[str, ...]:
        """Rooms placed on live nodes (a room placed for a join that never came counts)."""
        try:
            placements = await self._placements()
            records = await self.registry.records()
        except REDIS_FAILURES:
            raise DirectoryUnavailableError("the room directory cannot be reached") from None
        orphaned = set(rooms_to_replace(placements, records, self.registry.now()))
        return tuple(sorted(set(placements) - orphaned | set(self._local.local_names())))

    async def _placements(self) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.rooms)
        return {as_text(k): as_text(v) for k, v in raw.items()}

    # ----------------------------------------------------------------- this node's rooms

    def local(self, name: str) -> Room | None:
        return self._local.local(name)

    def local_names(self) -> tuple[str, ...]:
        return self._local.local_names()

    def watch(self, callback: RoomWatcher, *, replay: bool = True) -> Callable[[], None]:
        return self._local.watch(callback, replay=replay)

    def room_opened(self, room: Room) -> None:
        self._local.room_opened(room)
        if room.origin is None:  # a relayed room is placed on its origin, not here
            self._background(self._assert(room.name))

    def room_closed(self, room: Room) -> None:
        self._local.room_closed(room)
        self._conflicts.discard(room.name)
        if self._local.local(room.name) is None and room.origin is None:
            self._background(self._release(room.name))

    def _placed_here(self) -> tuple[str, ...]:
        """This node's rooms that live here (not the rooms it relays)."""
        return tuple(name for name in self._local.local_names()
                     if (room := self._local.local(name)) is not None and room.origin is None)

    def load(self) -> NodeLoad:
        """Rooms and participants of this node (the registry adds the CPU share)."""
        rooms = [r for n in self._local.local_names() if (r := self._local.local(n))]
        return NodeLoad(len(rooms), sum(len(r.participants) for r in rooms))

    # ----------------------------------------------------------------- upkeep

    async def after_beat(self) -> None:
        """After each heartbeat: claim this node's rooms again (a restarted Redis has
        forgotten them), and sweep dead nodes and the placements they left."""
        await self._assert_all()
        registered = await self.registry.registered_ids()
        records = await self.registry.read(registered)
        now = self.registry.now()
        dead = tuple(n for n in dead_nodes(registered, records, now) if n != self.node_id)
        await self.registry.forget(dead)
        placements = await self._placements()
        for name in rooms_to_replace(placements, records, now):
            if placements[name] != self.node_id:
                await self._cas(keys=[self.keys.rooms], args=[name, placements[name], ""])

    async def _assert_all(self) -> None:
        """Claim every room of this node in one round trip (a pipeline)."""
        names = self._placed_here()
        if not names:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                await self._claim(keys=[self.keys.rooms], args=[name, self.node_id],
                                  client=pipe)
            held = await pipe.execute()
        for name, holder in zip(names, held, strict=True):
            self._note_holder(name, as_text(holder))

    async def _assert(self, name: str) -> None:
        room = self._local.local(name)
        if room is None or room.origin is not None:
            return
        held = as_text(await self._claim(keys=[self.keys.rooms], args=[name, self.node_id]))
        self._note_holder(name, held)

    def _note_holder(self, name: str, held: str) -> None:
        if held == self.node_id:
            self._conflicts.discard(name)
        elif name not in self._conflicts:
            # Placed elsewhere while this node was cut off from Redis: new joins go there.
            self._conflicts.add(name)
            logger.warning("[%s] hosted here but placed on node %s", name, held)

    async def _release(self, name: str) -> None:
        await self._cas(keys=[self.keys.rooms], args=[name, self.node_id, ""])

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except REDIS_FAILURES as exc:  # the next heartbeat's upkeep catches up
                logger.info("room directory update deferred (%s)", type(exc).__name__)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        """Register this node (if Redis answers now; else the heartbeat keeps trying)."""
        with contextlib.suppress(*REDIS_FAILURES):
            await self.registry.beat()
            self.registry.registered = True
        self.registry.start()

    async def close(self) -> None:
        """Finish pending releases, stop the heartbeat and remove this node's record."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.registry.stop(deregister=True)
