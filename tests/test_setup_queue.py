"""SetupQueue: at most ``limit`` set-ups at once, the rest served first in, first out."""

from __future__ import annotations

import asyncio

import pytest

from mediaserver.setup_queue import SetupQueue, SetupQueueStats, SetupSlot


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_slots_are_handed_out_in_arrival_order() -> None:
    queue = SetupQueue(2)
    held = [await queue.acquire(), await queue.acquire()]
    order: list[int] = []
    slots: dict[int, SetupSlot] = {}

    async def wait(index: int) -> None:
        slots[index] = await queue.acquire()
        order.append(index)

    waiters = [asyncio.ensure_future(wait(i)) for i in range(5)]
    await settle()
    assert queue.stats() == SetupQueueStats(limit=2, active=2, waiting=5, queued_total=5,
                                            longest_queue=5)
    held[0].release()
    held[0].release()  # idempotent: one release frees one slot
    await settle()
    assert order == [0]
    held[1].release()
    await settle()
    assert order == [0, 1]
    for index in (1, 0, 2, 3):
        slots[index].release()
        await settle()
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2, 3, 4]
    assert queue.stats().active == 1 and queue.stats().waiting == 0
    slots[4].release()
    assert queue.stats() == SetupQueueStats(limit=2, active=0, waiting=0, queued_total=5,
                                            longest_queue=5)


async def test_never_more_than_the_limit_at_once() -> None:
    queue = SetupQueue(3)
    active = 0
    most = 0

    async def setup(index: int) -> None:
        nonlocal active, most
        slot = await queue.acquire()
        active += 1
        most = max(most, active)
        for _ in range(index % 4 + 1):
            await asyncio.sleep(0)
        active -= 1
        slot.release()

    await asyncio.gather(*(setup(i) for i in range(40)))
    assert most == 3
    assert queue.stats().active == 0 and queue.stats().queued_total == 37


@pytest.mark.parametrize("handed_over", [False, True])
async def test_a_cancelled_wait_gives_up_its_place(handed_over: bool) -> None:
    """Cancelled while waiting, or just after the slot was handed to it (before it ran):
    either way the next waiter gets the slot and none is lost."""
    queue = SetupQueue(1)
    first = await queue.acquire()
    gone = asyncio.ensure_future(queue.acquire())
    later = asyncio.ensure_future(queue.acquire())
    await settle()
    if handed_over:
        first.release()
    gone.cancel()
    await settle()
    assert gone.cancelled() and queue.stats().waiting == (0 if handed_over else 1)
    if not handed_over:
        first.release()
    slot = await asyncio.wait_for(later, 1)
    assert queue.stats().active == 1
    slot.release()
    assert queue.stats().active == 0 and queue.stats().waiting == 0


async def test_zero_means_no_bound() -> None:
    queue = SetupQueue(0)
    slots = [await queue.acquire() for _ in range(100)]
    assert queue.stats().active == 100 and queue.stats().queued_total == 0
    for slot in slots:
        slot.release()
    assert queue.stats().active == 0


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="0"):
        SetupQueue(-1)
