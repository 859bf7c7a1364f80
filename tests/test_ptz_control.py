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
    # Storing while the recall runs halts it first, so what is stored is where it stopped.
    assert c.preset("a", "expert", 2, store=True, now=0.2) == [Stop("preset"), SetPreset(2)]
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


def test_anyone_may_stop_without_the_lease_and_the_lease_stays():
    c = PtzControl(idle_release=30)
    c.move("expert-1", "expert", 1, 0, 0, now=0.0)
    assert c.stop("expert-2", "expert", now=1.0) == [Stop("requested")]
    assert c.moving is None
    assert c.lease.holder == "expert-1"  # not taken over, not refreshed
    assert c.next_deadline() == 30.0
    assert c.stop("expert-1", "expert", now=2.0) == [Stop("requested")]
    assert c.next_deadline() == 32.0  # the holder's own stop is activity


def test_a_running_home_or_recall_is_stopped_like_a_move():
    c = PtzControl()
    assert c.home("a", "expert", now=0.0) == [Home()]
    assert c.positioning and c.next_deadline() == 60.0  # no dead-man for a home
    assert c.participant_left("a", now=1.0) == [Stop("lease released")]
    assert not c.positioning
    c.preset("b", "expert", 1, store=False, now=2.0)
    assert c.acquire("w", "ward", now=2.5) == [Stop("lease taken over")]
    c.home("w", "ward", now=3.0)
    assert c.move("w", "ward", 0.5, 0, 0, now=3.1) == [Stop("move"), Move(0.5, 0.0, 0.0)]
    c.home("w", "ward", now=4.0)
    c.arrived()
    assert c.move("w", "ward", 0.5, 0, 0, now=4.1) == [Move(0.5, 0.0, 0.0)]


def test_a_move_the_camera_did_not_take_is_sent_again_on_its_repeat():
    c = PtzControl()
    move = c.move("a", "expert", 1, 0, 0, now=0.0)[0]
    c.command_failed(move)
    assert c.moving is None and c.next_deadline() == 60.0
    assert c.move("a", "expert", 1, 0, 0, now=0.15) == [move]
    c.camera_lost()
    assert c.move("a", "expert", 1, 0, 0, now=0.3) == [move]
    c.home("a", "expert", now=0.4)
    c.command_failed(Home())
    assert not c.positioning and c.release("a", now=0.5) == []
