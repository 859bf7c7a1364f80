"""SetupQueue: how many peer connections of one node are being set up at once.

A set-up (a subscription's peer connection from its creation until it is connected,
has failed or is closed: ICE gathering, the offer, ICE checks and the DTLS handshake)
holds one slot. When hundreds of viewers join at once, the rest wait in arrival order
(first in, first out), so the first ones connect and see frames quickly instead of
every handshake of the node competing with every other and timing out together.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SetupQueueStats:
    limit: int = 0  # set-ups at once; 0: no bound
    active: int = 0  # set-ups holding a slot now
    waiting: int = 0  # set-ups waiting for a slot now
    queued_total: int = 0  # set-ups that had to wait, since the start
    longest_queue: int = 0  # the most that ever waited at once


class SetupSlot:
    """One held slot; ``release()`` hands it to the next waiter. Idempotent."""

    def __init__(self, queue: SetupQueue) -> None:
        self._queue: SetupQueue | None = queue

    def release(self) -> None:
        queue, self._queue = self._queue, None
        if queue is not None:
            queue._release()


class SetupQueue:
    """A first-in, first-out bound on concurrent set-ups (``limit`` 0: none)."""

    def __init__(self, limit: int = 0) -> None:
        if limit < 0:
            raise ValueError("the set-up limit must be 0 (no bound) or more")
        self.limit = limit
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._queued_total = 0
        self._longest = 0

    async def acquire(self) -> SetupSlot:
        """A slot, at once when one is free and nobody waits, else in arrival order.
        Cancelling the wait gives up the place (and a slot handed over meanwhile)."""
        if not self._waiters and (self.limit == 0 or self._active < self.limit):
            self._active += 1
            return SetupSlot(self)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._queued_total += 1
        self._longest = max(self._longest, len(self._waiters))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed over just before the cancel: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        return SetupSlot(self)

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; active stays the same
                return
        self._active -= 1

    def stats(self) -> SetupQueueStats:
        return SetupQueueStats(self.limit, self._active, len(self._waiters),
                               self._queued_total, self._longest)
