"""Exponential backoff between attempts to reopen a serial port (pure)."""

from __future__ import annotations


class Backoff:
    """``initial``, doubling (``factor``) up to ``maximum``; ``reset()`` starts over."""

    def __init__(self, initial: float = 0.5, maximum: float = 10.0, factor: float = 2.0) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._next = initial

    def next_delay(self) -> float:
        """The delay to wait before the next attempt; each call lengthens the following one."""
        delay = self._next
        self._next = min(self.maximum, delay * self.factor)
        return delay

    def reset(self) -> None:
        self._next = self.initial
