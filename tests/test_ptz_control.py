"""The PTZ lease and dead-man rules, with time passed in."""

from __future__ import annotations

import pytest

from devices.ptz_control import (
    Home,
    Move,
    PtzControl,
    PtzDenied,
    RecallPreset,
    SetPreset,
    Stop,
)


def test_first_mover_gets_the_lease_and_a_refresh_sends_nothing_new():
    c = PtzControl()
    assert c.move("a", "expert", 0.5, 0, 0, now=0.0) == [Move(0.5, 0.0, 0.0)]
    assert c.lease.holder == "a"
    assert c.move("a", "expert", 0.5, 0, 0, now=0.2) == []  # refresh only
    assert c.move("a", "expert", 0.5, -1, 0, now=0.3) == [Move(0.5, -1.0, 0.0)]


def test_dead_man_stops_an_unrefreshed_move():
    c = PtzControl(deadman=0.4)
    c.move("a", "expert", 1, 0, 0, now=10.0)
    assert c.next_deadline() == pytest.approx(10.4)
    assert c.tick(10.39) == []
    c.move("a", "expert", 1, 0, 0, now=10.3)  # refreshed
    assert c.tick(10.6) == []
    assert c.tick(10.71) == [Stop("dead-man: move not refreshed")]
    assert c.moving is None and c.lease.holder == "a"  # still in control, but still
    assert c.tick(11.0) == []


def test_controller_leaving_stops_at_once_and_frees_the_lease():
    c = PtzControl()
    c.move("a", "expert", 0, 1, 0, now=0.0)
    assert c.participant_left("a", now=0.1) == [Stop("lease released")]
    assert c.lease.holder is None
    assert c.participant_left("b", now=0.2) == []


def test_equal_rank_waits_higher_rank_takes_over_and_the_move_stops():
    c = PtzControl(idle_release=60)
    c.move("expert-1", "expert", 1, 0, 0, now=0.0)
    with pytest.raises(PtzDenied, match="another participant"):
        c.move("expert-2", "expert", -1, 0, 0, now=1.0)
    assert c.acquire("ward-1", "ward", now=2.0) == [Stop("lease taken over")]
    assert c.lease.holder == "ward-1"
    with pytest.raises(PtzDenied):
        c.acquire("expert-1", "expert", now=3.0)
    with pytest.raises(PtzDenied, match="may not steer"):
        c.acquire("obs", "observer", now=3.0)


def test_an_idle_lease_lapses():
    c = PtzControl(idle_release=30)
    c.acquire("a", "expert", now=0.0)
    assert c.next_deadline() == 30.0
    assert c.tick(30.0) == []
    assert c.lease.holder is None
    c.acquire("b", "expert", now=31.0)
    assert c.lease.holder == "b"


def test_presets_home_and_stop():
    c = PtzControl(max_presets=8)
    c.move("a", "expert", 0, 0, 1, now=0)
    assert c.preset("a", "expert", 3, store=False, now=0.1) == [Stop("preset"), RecallPreset(3)]
    assert c.preset("a", "expert", 2, store=True, now=0.2) == [SetPreset(2)]
    assert c.home("a", "expert", now=0.3) == [Home()]
    assert c.stop("a", "expert", now=0.4) == [Stop("requested")]
    for bad in (-1, 8, True, "1"):
        with pytest.raises(PtzDenied):
            c.preset("a", "expert", bad, store=False, now=1)  # type: ignore[arg-type]


def test_speeds_are_clamped_and_zero_means_stop():
    c = PtzControl()
    assert c.move("a", "expert", 7, -9, 0.25, now=0) == [Move(1.0, -1.0, 0.25)]
    assert c.move("a", "expert", 0, 0, 0, now=0.1) == [Stop("move to zero")]
    with pytest.raises(PtzDenied):
        c.move("a", "expert", float("nan"), 0, 0, now=0.2)
