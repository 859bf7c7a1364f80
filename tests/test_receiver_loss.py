"""Loss toward a viewer counted in packets over receiver reports, not report by report."""

from __future__ import annotations

import pytest

from mediaserver.layer_policy import LossCap
from mediaserver.receiver_loss import LossMeter, ReceiverLoss


def report(lost: int, highest: int, fraction: float = 0.0) -> ReceiverLoss:
    return ReceiverLoss(fraction, lost, highest)


def test_a_measurement_waits_for_enough_packets():
    meter = LossMeter(min_packets=50)
    assert meter.add(report(0, 1000)) is None  # the baseline
    # Chromium's reports at a low layer: four packets each, one random drop reads 25 %.
    lost = 0
    measured = []
    for n in range(1, 14):
        lost += n == 3
        measured.append(meter.add(report(lost, 1000 + 4 * n, 0.25 if n == 3 else 0.0)))
    assert measured[:12] == [None] * 12
    assert measured[12] == pytest.approx(1 / 52)  # one lost of the 52 expected
    assert meter.smoothed == pytest.approx(1 / 104)


def test_measurements_are_smoothed_and_start_again_after_each():
    meter = LossMeter(min_packets=50, smoothing=0.5)
    meter.add(report(0, 0))
    assert meter.add(report(10, 100)) == pytest.approx(0.10)
    assert meter.add(report(10, 200)) == 0.0
    assert meter.smoothed == pytest.approx(0.025)


def test_sequence_numbers_wrap_through_the_extended_counter():
    meter = LossMeter(min_packets=50)
    meter.add(report(7, (3 << 16) | 0xFFE0))
    assert meter.add(report(9, (4 << 16) | 0x0020)) == pytest.approx(2 / 64)


@pytest.mark.parametrize("highest", [900, 1030 + (1 << 15), 0xFFFFFFFF])
def test_backwards_or_implausible_reports_start_a_new_baseline(highest: int):
    """A receiver that restarted its statistics, or a forged report: no measurement,
    and counting goes on from there."""
    meter = LossMeter(min_packets=50)
    meter.add(report(0, 1000))
    meter.add(report(1, 1030))  # 30 counted, then thrown away
    assert meter.add(report(5000, highest)) is None
    assert meter.add(report(5002, (highest + 40) & 0xFFFFFFFF)) is None  # 40 < 50
    assert meter.add(report(5002, (highest + 100) & 0xFFFFFFFF)) == pytest.approx(2 / 100)


def test_duplicates_never_make_loss_negative_nor_loss_over_one():
    meter = LossMeter(min_packets=50)
    meter.add(report(10, 1000))
    assert meter.add(report(4, 1060)) == 0.0  # the cumulative count fell (duplicates)
    assert meter.add(report(400, 1120)) == 1.0  # a hostile count: at most everything


def test_random_loss_caps_the_temporal_layer_until_it_has_stayed_low():
    cap = LossCap(enter=0.03, leave=0.015, hold=10.0, layer=1)
    assert cap.cap(0.0) is None
    cap.update(0.02, 1.0)
    assert cap.cap(1.0) is None  # under ``enter``: no cap
    cap.update(0.04, 2.0)
    assert cap.cap(2.0) == 1
    cap.update(0.02, 8.0)  # under ``enter`` but over ``leave``: the cap holds on
    assert cap.cap(17.9) == 1
    cap.update(0.01, 17.95)  # low now: the cap ends 10 s after the last lossy measurement
    assert cap.cap(18.0) is None


def test_a_link_losing_most_packets_is_measured_at_once():
    """Congestion (a probe the link cannot carry) is not left to run for 50 packets."""
    meter = LossMeter(min_packets=50)
    meter.add(report(0, 1000))
    assert meter.add(report(3, 1008)) is None  # three lost: not yet evidence
    assert meter.add(report(6, 1012)) == pytest.approx(6 / 12)
    # One random drop in four stays a drop: no measurement until 50 packets.
    assert meter.add(report(7, 1016)) is None
