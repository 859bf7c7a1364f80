"""The downlink estimate and the layer policy, on made-up report sequences (no clocks)."""

from __future__ import annotations

import itertools

import pytest

from mediaserver.codecs.vp8 import vp8_flags
from mediaserver.downlink_estimate import DownlinkEstimate, EstimateSettings
from mediaserver.layer_policy import AUDIO_SHARE, LayerRates, choose_layer
from tests.rtp_fixtures import rtp_packets


def test_no_congestion_no_limit():
    estimate = DownlinkEstimate()
    assert estimate.target(0.0) is None
    # A receiver's first estimates trail what it receives, and grow: no limit.
    for t, remb in enumerate((208_000, 215_000, 230_000)):
        estimate.on_remb(remb, float(t), sending=276_000)
    assert estimate.target(3.0) is None
    # A REMB that falls but stays above what is sent limits nothing either.
    estimate.on_remb(900_000, 4.0, sending=276_000)
    estimate.on_remb(400_000, 5.0, sending=276_000)
    assert estimate.target(5.0) is None


def test_a_low_remb_during_startup_is_a_ramp_not_a_thin_link():
    estimate = DownlinkEstimate()
    for t, remb in enumerate((300_000, 200_000, 150_000, 100_000)):  # even falling
        estimate.on_remb(remb, float(t), sending=800_000)
    assert estimate.target(4.0) is None
    estimate.on_remb(90_000, 10.5, sending=800_000)  # after start-up: a thin link
    assert estimate.target(10.5) == 90_000


def test_a_remb_falling_under_the_rate_sent_is_a_thin_link():
    estimate = DownlinkEstimate()
    estimate.on_remb(900_000, 0.0, sending=800_000)  # caught up: start-up is over
    estimate.on_remb(880_000, 1.0, sending=800_000)  # falls, but above what is sent
    assert estimate.target(1.0) is None
    estimate.on_remb(680_000, 2.0, sending=800_000)  # the link is overused
    assert estimate.target(2.0) == 680_000


def test_a_remb_rising_under_the_rate_sent_is_a_ramp():
    estimate = DownlinkEstimate()
    estimate.on_remb(300_000, 0.0, sending=250_000)
    for t, remb in enumerate((310_000, 330_000, 360_000, 390_000), 1):
        estimate.on_remb(remb, float(t), sending=900_000)  # switched up to a bigger stream
    assert estimate.target(5.0) is None


def test_after_a_fall_the_rise_is_slow_and_bounded_by_the_remb():
    estimate = DownlinkEstimate()
    estimate.on_remb(2_000_000, 0.0, sending=1_500_000)
    estimate.on_remb(300_000, 1.0, sending=1_500_000)  # the link got thin
    assert estimate.target(1.0) == 300_000
    # Within the hold nothing rises; afterwards 8 % a second, up to 1.5 x REMB.
    estimate.on_remb(300_000, 2.0, sending=280_000)
    assert estimate.target(2.5) == 300_000
    targets = [estimate.target(3.0 + t) for t in range(10)]
    assert targets[:2] == pytest.approx([300_000 * 1.04, 300_000 * 1.04 * 1.08])  # 0.5 s, 1 s
    assert all(b >= a for a, b in itertools.pairwise(targets))  # type: ignore[operator]
    assert max(targets) == 450_000  # type: ignore[type-var]
    estimate.on_remb(280_000, 14.0, sending=270_000)  # a lower REMB, still above: a bound
    assert estimate.target(14.0) == 420_000


def test_loss_is_smoothed_and_repeated_falls_hold_longer():
    settings = EstimateSettings()
    estimate = DownlinkEstimate(settings)
    estimate.on_remb(1_000_000, 0.0, sending=900_000)
    estimate.on_remb(500_000, 0.1, sending=900_000)
    assert estimate.target(0.2) == 500_000
    estimate.on_loss(0.05, 0.3)
    estimate.on_loss(0.14, 0.5)  # a spike on a 5 % link: smoothed to under 10 %
    assert estimate.target(0.5) == 500_000
    estimate.on_loss(0.30, 1.0)  # over the collapse threshold: at once
    assert estimate.target(1.0) == pytest.approx(500_000 * 0.85)
    estimate.on_loss(0.0, 1.5)
    estimate.on_loss(0.40, 4.0)  # each fall soon after the last doubles the hold: 3 falls
    low = estimate.target(4.0)
    estimate.on_loss(0.0, 4.5)
    assert low is not None and estimate.target(4.0 + 4 * settings.hold - 0.1) == low
    assert estimate.target(4.0 + 4 * settings.hold + 1.0) > low  # type: ignore[operator]


def test_loss_without_a_target_counts_once_the_remb_caught_up():
    estimate = DownlinkEstimate()
    estimate.on_remb(200_000, 0.0, sending=800_000)  # ramping
    estimate.on_loss(0.5, 0.5)
    assert estimate.target(0.5) is None  # nothing known of the link yet to fall to
    estimate.on_remb(900_000, 1.0, sending=800_000)
    estimate.on_loss(0.5, 1.5)
    assert estimate.target(1.5) == pytest.approx(900_000 * 0.75)


def test_loss_without_a_target_counts_once_start_up_is_over():
    """A viewer behind a thin link from the start: its REMB never catches up with the
    rate sent; after start-up its loss counts from its REMB."""
    estimate = DownlinkEstimate()
    for t in range(11):
        estimate.on_remb(300_000, float(t), sending=800_000)  # not falling: no REMB fall
        estimate.on_loss(0.3, t + 0.5)
        if t < 10:
            assert estimate.target(t + 0.5) is None, t
    assert estimate.target(10.5) == pytest.approx(300_000 * 0.85)


def test_the_target_never_falls_below_the_floor():
    estimate = DownlinkEstimate()
    estimate.on_remb(1_000_000, 0.0, sending=900_000)
    estimate.on_remb(1_000, 1.0, sending=900_000)
    assert estimate.target(1.0) == EstimateSettings().floor


def test_layer_rates_of_the_chromium_capture():
    rates = LayerRates(window=0.5)
    for packet in rtp_packets("vp8-chromium-l1t3.bin"):
        flags = vp8_flags(packet.payload)
        assert flags.temporal_id is not None
        rates.add(flags.temporal_id, len(packet.payload), packet.timestamp)
    assert rates.highest == 2
    cumulative = rates.cumulative()
    assert len(cumulative) == 3 and 0 < cumulative[0] < cumulative[1] < cumulative[2]


@pytest.mark.parametrize(("target", "current", "chosen"), [
    (None, 2, 2),  # nothing known: everything
    (AUDIO_SHARE + 2_000_000, 0, 2),
    (AUDIO_SHARE + 1_000_000, 2, 2),  # exactly fits: kept
    (AUDIO_SHARE + 1_050_000, 1, 1),  # fits, but not with the margin to go up
    (AUDIO_SHARE + 999_000, 2, 1),
    (AUDIO_SHARE + 100_000, 2, 0),  # nothing fits: the base layer is the floor
])
def test_choose_layer(target, current, chosen):
    assert choose_layer(target, [400_000, 600_000, 1_000_000], current) == chosen


def test_choose_layer_without_layers():
    assert choose_layer(100_000, [], 0) == 0
    assert choose_layer(100_000, [0.0, 0.0], 1) == 1  # rates not measured yet

