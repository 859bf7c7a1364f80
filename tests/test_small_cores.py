"""Pure cores: keyframe throttle, retransmission buffer, token bucket, latency probe."""

from __future__ import annotations

import pytest

from mediaserver.keyframe_throttle import KeyframeRequestThrottle
from mediaserver.latency_probe import LatencyProbe
from mediaserver.retransmission_buffer import RetransmissionBuffer
from signaling.rate_limit import TokenBucket


def test_throttle_sends_at_most_one_per_interval_and_defers_instead_of_dropping():
    throttle = KeyframeRequestThrottle(0.5)
    first = throttle.request(10.0)
    assert first.send_now and first.timer_at is None
    second = throttle.request(10.1)
    assert not second.send_now and second.timer_at == pytest.approx(10.5)
    third = throttle.request(10.2)  # already deferred: no second timer
    assert not third.send_now and third.timer_at is None
    assert throttle.deferred
    assert throttle.timer_fired(10.5)
    assert not throttle.timer_fired(10.6)  # nothing deferred any more
    later = throttle.request(11.1)
    assert later.send_now
    with pytest.raises(ValueError):
        KeyframeRequestThrottle(0)


def test_retransmission_buffer_never_returns_the_wrong_packet():
    buffer = RetransmissionBuffer(4)
    for seq in range(65533, 65536):
        buffer.put(seq, b"p%d" % seq)
    buffer.put(0, b"p0")
    assert buffer.get(65534) == b"p65534" and buffer.get(0) == b"p0"
    buffer.put(4, b"p4")  # overwrites slot of 0
    assert buffer.get(0) is None and buffer.get(4) == b"p4"
    assert buffer.get(12345) is None
    with pytest.raises(ValueError):
        RetransmissionBuffer(0)


def test_token_bucket():
    bucket = TokenBucket(rate=2, burst=3)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.5) and not bucket.allow(0.5)


def test_latency_probe_percentiles():
    probe = LatencyProbe()
    assert probe.summary().copies == 0
    for i in range(100):
        probe.samples.append((i + 1) * 1_000_000)
    summary = probe.summary()
    assert summary.copies == 100 and summary.p50_ms == 51 and summary.p99_ms == 100
    probe.reset()
    assert probe.summary().copies == 0
