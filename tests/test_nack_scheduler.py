"""NackScheduler: holes, reorder window, retries paced by the measured RTT, giving up."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediaserver.nack_scheduler import (
    Arrival,
    NackRound,
    NackScheduler,
    NackSettings,
    nack_batches,
)


def scheduler(**overrides: float) -> NackScheduler:
    return NackScheduler(NackSettings(**overrides))  # type: ignore[arg-type]


def test_nothing_missing_means_no_wakeup_and_nothing_to_send():
    nacks = scheduler()
    for seq in range(100, 110):
        assert nacks.received(seq, 0.0) is Arrival.NEW
    assert nacks.missing == [] and nacks.next_wakeup() is None
    assert nacks.poll(1.0) == NackRound()


def test_the_first_nack_waits_the_reorder_window_and_a_reordered_packet_is_never_asked():
    nacks = scheduler(reorder_window=0.010)
    nacks.received(10, 0.0)
    nacks.received(13, 0.0)  # 11 and 12 missing
    assert nacks.missing == [11, 12] and nacks.next_wakeup() == pytest.approx(0.010)
    assert nacks.poll(0.005).sequence_numbers == ()
    assert nacks.received(12, 0.006) is Arrival.RECOVERED  # merely overtaken
    assert nacks.poll(0.010).sequence_numbers == (11,)
    assert nacks.counters.nacks_sent == 1


@pytest.mark.parametrize(
    ("rtt", "interval"),
    [(None, 0.110), (0.060, 0.066), (0.010, 0.020), (0.200, 0.220)],
)
def test_retries_come_every_rtt_times_1_1_but_never_faster_than_20_ms(rtt, interval):
    nacks = scheduler(reorder_window=0.0)
    if rtt is not None:  # time one retransmission first
        nacks.received(0, 0.0)
        nacks.received(2, 0.0)
        nacks.poll(0.0)
        nacks.received(1, rtt, retransmission=True)
        assert nacks.rtt == pytest.approx(rtt)
    assert nacks.retry_interval == pytest.approx(interval)
    nacks.received(3, 1.0)
    nacks.received(5, 1.0)
    assert nacks.poll(1.0).sequence_numbers == (4,)
    assert nacks.next_wakeup() == pytest.approx(1.0 + interval)
    assert nacks.poll(1.0 + interval * 0.9).sequence_numbers == ()
    retry = 1.0 + interval + 1e-9
    assert nacks.poll(retry).sequence_numbers == (4,)
    assert nacks.poll(retry + interval * 0.9).sequence_numbers == ()
    assert nacks.poll(retry + interval + 1e-9).sequence_numbers == (4,)


def test_sequence_numbers_wrap_around():
    nacks = scheduler(reorder_window=0.0)
    nacks.received(65533, 0.0)
    nacks.received(2, 0.0)
    assert nacks.missing == [65534, 65535, 0, 1]
    assert nacks.poll(0.0).sequence_numbers == (65534, 65535, 0, 1)
    assert nacks.received(0, 0.05, retransmission=True) is Arrival.RECOVERED
    assert nacks.received(65533, 0.05) is Arrival.DUPLICATE
    assert nacks.received(3, 0.05) is Arrival.NEW
    assert nacks.missing == [65534, 65535, 1]


def test_a_packet_is_given_up_after_max_nacks_and_a_keyframe_is_wanted():
    nacks = scheduler(reorder_window=0.0, max_nacks=3, min_interval=0.02, initial_rtt=0.01)
    nacks.received(1, 0.0)
    nacks.received(3, 0.0)
    sent = [nacks.poll(t).sequence_numbers for t in (0.0, 0.02, 0.04)]
    assert sent == [(2,), (2,), (2,)]
    final = nacks.poll(0.06)  # the third NACK had its chance
    assert final == NackRound((), keyframe_needed=True)
    assert nacks.missing == [] and nacks.next_wakeup() is None
    counters = nacks.counters
    assert (counters.nacks_sent, counters.packets_given_up, counters.keyframes_instead) == (3, 1, 1)
    assert nacks.received(2, 0.07) is Arrival.DUPLICATE  # too late: not a recovery


def test_a_hole_older_than_max_age_is_given_up_whatever_its_retries():
    nacks = scheduler(reorder_window=0.0, max_age=0.5, max_nacks=100)
    nacks.received(1, 0.0)
    nacks.received(3, 0.0)
    assert nacks.next_wakeup() == 0.0
    assert nacks.poll(0.49).sequence_numbers == (2,)
    assert nacks.poll(0.5) == NackRound((), keyframe_needed=True)
    assert nacks.counters.packets_given_up == 1


def test_a_huge_gap_resets_and_asks_for_a_keyframe_instead_of_hundreds_of_nacks():
    nacks = scheduler(max_gap=100)
    nacks.received(1, 0.0)
    nacks.received(5, 0.0)  # 2, 3, 4 missing
    assert nacks.received(5 + 101 + 1, 0.0) is Arrival.RESET  # 101 more missing
    assert nacks.missing == [] and nacks.next_wakeup() is None
    assert nacks.counters.packets_given_up == 3 + 101
    assert nacks.counters.keyframes_instead == 1
    assert nacks.received(108, 0.0) is Arrival.NEW  # continues from the new position
    assert nacks.received(5 + 100 + 2, 0.01) is Arrival.DUPLICATE


def test_memory_is_bounded_by_max_missing_the_oldest_holes_go_first():
    nacks = scheduler(max_missing=8, max_gap=50, reorder_window=0.0)
    nacks.received(0, 0.0)
    nacks.received(6, 0.0)  # 1..5
    nacks.received(12, 0.0)  # 7..11: ten holes, two too many
    assert nacks.missing == [3, 4, 5, 7, 8, 9, 10, 11]
    assert nacks.counters.packets_given_up == 2
    first = nacks.poll(0.0)
    assert first.keyframe_needed and first.sequence_numbers == (3, 4, 5, 7, 8, 9, 10, 11)
    nacks.received(40, 0.0)  # a jump of 27 with room for 8: the older 19 are given up
    assert nacks.missing == list(range(32, 40))
    assert nacks.poll(0.0).keyframe_needed


def test_rtt_is_measured_from_the_nack_to_the_retransmission_and_smoothed():
    nacks = scheduler(reorder_window=0.0, initial_rtt=0.1)
    nacks.received(0, 0.0)
    nacks.received(2, 0.0)
    nacks.poll(0.0)
    nacks.received(1, 0.060, retransmission=True)
    assert nacks.rtt == pytest.approx(0.060)  # the first sample replaces the guess
    nacks.received(4, 1.0)
    nacks.poll(1.0)
    nacks.received(3, 1.140, retransmission=True)
    assert nacks.rtt == pytest.approx(0.060 + (0.140 - 0.060) / 8)
    assert nacks.counters.rtt_ms == pytest.approx(70.0)


def test_a_late_original_is_recovered_but_does_not_time_anything():
    nacks = scheduler(reorder_window=0.0, initial_rtt=0.1)
    nacks.received(0, 0.0)
    nacks.received(2, 0.0)
    nacks.poll(0.0)
    assert nacks.received(1, 0.003) is Arrival.RECOVERED  # the original, just late
    assert nacks.rtt == 0.1 and nacks.counters.rtt_ms is None
    assert nacks.counters.packets_recovered == 1


def test_an_answer_to_one_of_several_nacks_may_raise_the_rtt_but_never_lower_it():
    nacks = scheduler(reorder_window=0.0, initial_rtt=0.05, min_interval=0.02)
    nacks.received(0, 0.0)
    nacks.received(2, 0.0)
    nacks.poll(0.0)
    nacks.received(1, 0.04, retransmission=True)  # unambiguous: 40 ms
    nacks.received(4, 1.0)
    nacks.poll(1.0)
    nacks.poll(1.05)  # NACKed twice (retry interval 44 ms)
    nacks.received(3, 1.06, retransmission=True)  # 10 ms after the retry: ambiguous
    assert nacks.rtt == pytest.approx(0.04 + (0.06 - 0.04) / 8)  # timed from the first NACK
    nacks.received(6, 2.0)
    nacks.poll(2.0)
    nacks.poll(2.05)
    before = nacks.rtt
    nacks.received(5, 2.051, retransmission=True)
    assert nacks.rtt == pytest.approx(before + (0.051 - before) / 8)
    nacks.received(8, 3.0)
    nacks.poll(3.0)
    nacks.poll(3.05)
    nacks.poll(3.10)
    # Three NACKs, answered 20 ms after the first? Impossible to tell: never lowers.
    before = nacks.rtt
    nacks.received(7, 3.02 + 0.09, retransmission=True)
    assert nacks.rtt >= before


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_age"):
        NackSettings(max_age=0)
    with pytest.raises(ValueError, match="max_nacks"):
        NackSettings(max_nacks=0)
    with pytest.raises(ValueError, match="reorder_window"):
        NackSettings(reorder_window=-1)


# --------------------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 0xFFFF),
    steps=st.lists(st.tuples(st.integers(1, 40), st.booleans()), min_size=1, max_size=60),
    late=st.lists(st.integers(0, 400), max_size=30),
)
def test_holes_are_exactly_the_unseen_packets_behind_the_newest(start, steps, late):
    """Whatever arrives, in whatever order: a NACK only ever names a packet never received,
    every unseen packet is tracked until given up, and memory stays bounded."""
    cfg = NackSettings(reorder_window=0.0, max_missing=64, max_gap=50, max_age=10.0,
                       max_nacks=1000)
    nacks = NackScheduler(cfg)
    received = {0}
    nacks.received(start, 0.0)
    offset = 0
    now = 0.0
    for jump, poll in steps:
        offset += jump
        now += 0.01
        nacks.received((start + offset) % 0x10000, now)
        received.add(offset)
        for extra in late:
            if extra < offset and extra % 3 == jump % 3:
                if nacks.received((start + extra) % 0x10000, now) is Arrival.RECOVERED:
                    assert extra not in received
                received.add(extra)
        if poll:
            for seq in nacks.poll(now).sequence_numbers:
                assert (seq - start) % 0x10000 not in received
        assert len(nacks.missing) <= cfg.max_missing
    tracked = {(seq - start) % 0x10000 for seq in nacks.missing}
    unseen = set(range(offset + 1)) - received
    assert tracked <= unseen
    # An unseen packet that is not tracked was given up (a reset, or the memory bound).
    assert len(unseen - tracked) <= nacks.counters.packets_given_up


@pytest.mark.parametrize(
    ("seqs", "batches"),
    [
        ((), []),
        ((5, 6, 30), [[5, 6, 30]]),
        ((65534, 65535, 0, 1), [[65534, 65535], [0, 1]]),
        (tuple(range(10)), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]),
    ],
)
def test_nack_batches_never_wrap_inside_one_packet(seqs, batches):
    assert nack_batches(seqs, max_per_packet=4) == batches


def test_every_batch_packs_into_an_rtcp_nack_that_parses_back():
    from aiortc.rtp import RTCP_RTPFB_NACK, RtcpPacket, RtcpRtpfbPacket

    seqs = (65500, 65510, 65535, 0, 3, 40)
    parsed: list[int] = []
    for batch in nack_batches(seqs):
        packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=2, lost=batch)
        [back] = RtcpPacket.parse(bytes(packet))
        parsed += back.lost
    assert tuple(parsed) == seqs
