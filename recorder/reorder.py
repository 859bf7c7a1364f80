"""Put RTP packets back in sequence-number order (sans-I/O; ``now`` is passed in).

On loopback packets arrive in order; over real networks they are reordered, and
lost ones may come back as NACK retransmissions a round trip later. The buffer
holds packets behind a gap until the gap is filled, or until it has waited
``max_delay`` seconds or holds ``max_packets``; then the gap is declared lost
and skipped. Consumers see the skip as a jump in sequence numbers.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

SEQ_MOD = 1 << 16
RESTART_DISTANCE = 3000  # a jump this large is a new stream, not a reordering


def seq_distance(a: int, b: int) -> int:
    """Signed distance from sequence number ``a`` to ``b`` (modulo 2^16)."""
    d = (b - a) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d


class ReorderBuffer(Generic[T]):
    """Releases items in sequence order; late duplicates and stragglers are dropped."""

    def __init__(self, max_packets: int = 128, max_delay: float = 0.3) -> None:
        if max_packets < 1 or max_delay < 0:
            raise ValueError("max_packets must be >= 1 and max_delay >= 0")
        self.max_packets = max_packets
        self.max_delay = max_delay
        self.lost = 0
        self.late = 0
        self._expected: int | None = None
        self._pending: dict[int, tuple[T, float]] = {}

    @property
    def pending(self) -> int:
        return len(self._pending)

    def push(self, seq: int, item: T, now: float) -> list[T]:
        """Add one packet; returns the packets now releasable, in order."""
        if self._expected is None:
            self._expected = seq
        distance = seq_distance(self._expected, seq)
        if distance < 0 or seq in self._pending:
            if distance < -RESTART_DISTANCE:
                return self._restart(seq, item, now)
            self.late += 1
            return []
        if distance > RESTART_DISTANCE:
            return self._restart(seq, item, now)
        self._pending[seq] = (item, now)
        return self._release(now)

    def poll(self, now: float) -> list[T]:
        """Release what has waited long enough behind a gap (call when idle)."""
        return self._release(now) if self._pending else []

    def flush(self) -> list[T]:
        """Release everything still held, in order, skipping gaps (at the end of a track)."""
        out: list[T] = []
        while self._pending:
            self._skip_gap()
            out.extend(self._take_run())
        return out

    # ----------------------------------------------------------------- internals

    def _restart(self, seq: int, item: T, now: float) -> list[T]:
        out = self.flush()
        self._expected = seq
        self._pending[seq] = (item, now)
        out.extend(self._take_run())
        return out

    def _take_run(self) -> list[T]:
        out: list[T] = []
        expected = self._expected
        assert expected is not None
        while expected in self._pending:
            out.append(self._pending.pop(expected)[0])
            expected = (expected + 1) % SEQ_MOD
        self._expected = expected
        return out

    def _skip_gap(self) -> None:
        expected = self._expected
        assert expected is not None
        first = min(self._pending, key=lambda s: seq_distance(expected, s))
        self.lost += seq_distance(expected, first)
        self._expected = first

    def _release(self, now: float) -> list[T]:
        out = self._take_run()
        while self._pending and (
            len(self._pending) > self.max_packets
            or now - min(t for _, t in self._pending.values()) >= self.max_delay
        ):
            self._skip_gap()
            out.extend(self._take_run())
        return out
