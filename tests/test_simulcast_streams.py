"""SimulcastStreams: which SSRC carries which stream, from the rid header extensions."""

from __future__ import annotations

from mediaserver.aiortc_hooks import SimulcastStreams


def test_streams_are_learnt_from_their_rids_and_remembered_without_them():
    streams = SimulcastStreams(("q", "h", "f"))
    assert streams.layer_of(111, None) is None  # no rid yet: unknown, dropped by the tap
    assert streams.layer_of(111, "f") == 2
    assert streams.layer_of(111, None) == 2  # later packets carry no rid
    assert streams.layer_of(222, "q") == 0
    assert streams.layer_of(333, "x") is None  # a rid that was not negotiated
    assert streams.ssrc_of == {2: 111, 0: 222}


def test_rtx_ssrcs_map_to_the_stream_they_repair():
    streams = SimulcastStreams(("q", "f"))
    assert streams.repaired(901, "f") is None  # f's media SSRC is not known yet
    streams.layer_of(111, "f")
    assert streams.repaired(901, None) == 111  # the repaired rid was remembered
    assert streams.repaired(902, "zz") is None


def test_a_stream_that_moves_to_a_new_ssrc_replaces_the_old_one():
    streams = SimulcastStreams(("q", "f"))
    streams.layer_of(111, "f")
    streams.layer_of(444, "f")
    assert streams.media == {444: 1} and streams.ssrc_of == {1: 444}


def test_remb_leaves_headroom_while_the_estimate_does_not_fall():
    streams = SimulcastStreams(("q", "f"))
    assert streams.remb(800_000) == 1_040_000
    assert streams.remb(820_000) == 1_066_000
    assert streams.remb(600_000) == 600_000  # over-use: passed on as is
    assert streams.remb(600_000) == 780_000
