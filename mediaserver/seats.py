"""Seats: how many people of each kind one room admits (a pure policy, no I/O).

A participant that may publish takes a publisher seat, one that only receives a
viewer seat; a service participant (the recorder) takes none. Publishers and
viewers are limited separately, so a full lecture hall never keeps the bedside
out, nor a crowd of cameras the audience.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Seat(StrEnum):
    PUBLISHER = "publisher"
    VIEWER = "viewer"

    @property
    def limit_name(self) -> str:
        """The name of this seat's limit, as a refusal reports it."""
        return f"{self.value}s"


@dataclass(frozen=True)
class SeatLimits:
    """Seats of each kind in one room (``[media] room_publishers``, ``room_viewers``)."""

    publishers: int = 16
    viewers: int = 1000

    def of(self, seat: Seat) -> int:
        return self.publishers if seat is Seat.PUBLISHER else self.viewers


def full_seat(limits: SeatLimits, seat: Seat, taken: Iterable[Seat | None]) -> bool:
    """Whether every seat of the kind ``seat`` is taken (``taken``: the seats of the
    people already in the room; None for services, which take none)."""
    return sum(1 for other in taken if other is seat) >= limits.of(seat)
