"""The retransmission gate on made-up NACK sequences (no clocks)."""

from __future__ import annotations

from mediaserver.retransmit_gate import MAX_PACKET, GateSettings, RetransmitGate


def test_a_packet_asked_again_within_the_interval_is_sent_once():
    gate = RetransmitGate()
    assert gate.allow(100, 1200, 0.0, None)
    # A browser on a full link re-asks every few ms: held until the interval has passed.
    assert [gate.allow(100, 1200, t, None) for t in (0.005, 0.02, 0.05, 0.099)] == [False] * 4
    assert gate.allow(100, 1200, 0.1, None)  # the answer may have been lost: once more
    assert gate.repeats_held == 4
    assert gate.allow(101, 1200, 0.1, None)  # other packets are not held by it


def test_repair_stays_within_a_share_of_the_rate_sent():
    """A viewer sent 280 kbit/s: at most 140 kbit/s of retransmissions, 0.25 s of burst."""
    gate = RetransmitGate()
    rate = 280_000.0
    sent = sum(gate.allow(seq, 1000, seq * 0.001, rate) for seq in range(1000))  # 1 s of NACKs
    budget = rate * 0.5 / 8
    assert budget * 1.0 <= sent * 1000 <= budget * 1.25 + 1000  # the refill plus one burst
    assert gate.budget_held == 1000 - sent
    # A quiet second refills it, up to the burst.
    assert sum(gate.allow(seq, 1000, 3.0, rate) for seq in range(2000, 2100)) == int(
        budget * 0.25 // 1000)


def test_one_whole_packet_always_fits_and_nothing_is_remembered_forever():
    gate = RetransmitGate(GateSettings(remembered=4))
    assert gate.allow(1, MAX_PACKET, 0.0, 8_000.0)  # a tiny rate still repairs a packet
    for seq in range(2, 8):
        gate.allow(seq, 10, 10.0 + seq, None)
    assert gate.allow(1, 10, 20.0, None) and len(gate._sent) == 4
