"""Room placement across nodes (pure: the records and ``now`` are passed in).

Each node publishes a ``NodeRecord`` (its public signalling URL, its load, whether it is
draining, and when the record expires unless a heartbeat renews it). A room lives on one
node: ``decide`` keeps a room where it is while that node is live, and otherwise picks
the least-loaded live node that is not draining (``choose_node``). A node whose record
expired is dead (``dead_nodes``); the rooms placed on it are re-placed on their next
join (``rooms_to_replace`` lists them). The Redis shells (node_registry.py,
redis_directory.py) read and write what these functions decide.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# A node busier than this (CPU seconds per second of this process, 1.0 = one core) is
# chosen only when every live node is as busy.
BUSY_CPU = 0.85


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """What a node carries: open rooms, participants in them, and its CPU share."""

    rooms: int = 0
    participants: int = 0
    cpu: float = 0.0

    def busy(self, busy_cpu: float = BUSY_CPU) -> bool:
        return self.cpu >= busy_cpu


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node as the registry holds it; ``expires_at`` in Unix seconds."""

    node_id: str
    url: str
    load: NodeLoad
    draining: bool
    expires_at: float

    def live(self, now: float) -> bool:
        return now < self.expires_at

    def accepts_rooms(self, now: float) -> bool:
        return self.live(now) and not self.draining

    def to_json(self) -> str:
        return json.dumps({"id": self.node_id, "url": self.url, "rooms": self.load.rooms,
                           "participants": self.load.participants,
                           "cpu": round(self.load.cpu, 4), "draining": self.draining,
                           "expiresAt": round(self.expires_at, 3)}, separators=(",", ":"))

    @classmethod
    def parse(cls, data: str | bytes) -> NodeRecord:
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError):
            raise ValueError("node record: not JSON") from None
        if not isinstance(raw, dict):
            raise ValueError("node record: not a JSON object")
        return cls(_text(raw, "id"), _text(raw, "url"),
                   NodeLoad(_count(raw, "rooms"), _count(raw, "participants"),
                            _number(raw, "cpu")),
                   _flag(raw, "draining"), _number(raw, "expiresAt"))


def _text(raw: Mapping[str, object], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"node record: '{key}' must be a non-empty string")
    return value


def _count(raw: Mapping[str, object], key: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"node record: '{key}' must be an integer >= 0")
    return value


def _number(raw: Mapping[str, object], key: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value >= 0):
        raise ValueError(f"node record: '{key}' must be a number >= 0")
    return float(value)


def _flag(raw: Mapping[str, object], key: str) -> bool:
    value = raw.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"node record: '{key}' must be true or false")
    return value


def heartbeat_record(node_id: str, url: str, load: NodeLoad, draining: bool, now: float,
                     ttl: float) -> NodeRecord:
    """The record a node writes at ``now``: it lives ``ttl`` seconds unless renewed."""
    return NodeRecord(node_id, url, load, draining, now + ttl)


def choose_node(records: Iterable[NodeRecord], now: float, prefer: str | None = None,
                busy_cpu: float = BUSY_CPU) -> NodeRecord | None:
    """The node a new room goes to: live, not draining, and least loaded (not busy
    first, then fewest participants, then fewest rooms); on a tie ``prefer`` (the node
    the join arrived at: no redirect), then the smallest id. None: no node can take it."""
    candidates = [r for r in records if r.accepts_rooms(now)]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (r.load.busy(busy_cpu), r.load.participants,
                                          r.load.rooms, r.node_id != prefer, r.node_id))


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a room lives after a join asked for it.

    ``node_id``: its node (None: no live node can take it). ``write``: the placement is
    new and must be stored, replacing ``expected`` (the current value, None or a dead
    node's id) atomically, so that two nodes deciding at once agree on one.
    """

    node_id: str | None
    write: bool
    expected: str | None


def decide(current: str | None, records: Mapping[str, NodeRecord], now: float,
           prefer: str | None = None, busy_cpu: float = BUSY_CPU) -> Decision:
    """Keep the room on ``current`` while that node is live; else place it anew."""
    record = records.get(current) if current is not None else None
    if record is not None and record.live(now):
        return Decision(current, write=False, expected=current)
    chosen = choose_node(records.values(), now, prefer, busy_cpu)
    return Decision(chosen.node_id if chosen else None, write=True, expected=current)


def dead_nodes(registered: Iterable[str], records: Mapping[str, NodeRecord],
               now: float) -> tuple[str, ...]:
    """Registered nodes whose record is gone or expired (their heartbeat stopped)."""
    return tuple(sorted(node for node in set(registered)
                        if node not in records or not records[node].live(now)))


def rooms_to_replace(placements: Mapping[str, str], records: Mapping[str, NodeRecord],
                     now: float) -> tuple[str, ...]:
    """Rooms placed on a node that is not live: their next join places them again."""
    return tuple(sorted(room for room, node in placements.items()
                        if node not in records or not records[node].live(now)))


class CpuMeter:
    """This process's CPU share between two samples (pure: the caller reads the clocks)."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None
        self.share = 0.0

    def sample(self, cpu_seconds: float, now: float) -> float:
        """CPU seconds used per wall-clock second since the previous sample."""
        if self._last is not None and now > self._last[1]:
            used = max(0.0, cpu_seconds - self._last[0])
            self.share = used / (now - self._last[1])
        self._last = (cpu_seconds, now)
        return self.share
