"""The seat policy: publishers and viewers limited separately, services take no seat."""

from __future__ import annotations

from mediaserver.seats import Seat, SeatLimits, full_seat


def test_defaults_leave_room_for_a_grand_round() -> None:
    limits = SeatLimits()
    assert (limits.publishers, limits.viewers) == (16, 1000)
    assert limits.of(Seat.PUBLISHER) == 16 and limits.of(Seat.VIEWER) == 1000


def test_each_kind_of_seat_fills_on_its_own() -> None:
    limits = SeatLimits(publishers=2, viewers=3)
    taken = [Seat.PUBLISHER, Seat.VIEWER, Seat.VIEWER, Seat.PUBLISHER]
    assert full_seat(limits, Seat.PUBLISHER, taken)
    assert not full_seat(limits, Seat.VIEWER, taken)
    assert full_seat(limits, Seat.VIEWER, [*taken, Seat.VIEWER])


def test_services_take_no_seat() -> None:
    limits = SeatLimits(publishers=1, viewers=1)
    assert not full_seat(limits, Seat.VIEWER, [None, None, Seat.PUBLISHER])
    assert not full_seat(limits, Seat.PUBLISHER, [None, Seat.VIEWER])


def test_limit_names_are_the_wire_names() -> None:
    assert Seat.PUBLISHER.limit_name == "publishers"
    assert Seat.VIEWER.limit_name == "viewers"
