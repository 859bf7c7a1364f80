"""recorder.disk_guard (the free-space policy) and recorder.failure_log, without a disk."""

from __future__ import annotations

import errno
import logging

import av
import pytest

from config import ConfigError
from huizhen.app import disk_policy
from recorder.disk_guard import MIB, DiskGuard, DiskPolicy, DiskSample, is_out_of_space
from recorder.failure_log import FailureLog, failure_kind
from tests.conftest import make_settings

TOTAL = 1000 * MIB
POLICY = DiskPolicy(warn_bytes=100 * MIB, warn_percent=0, stop_bytes=20 * MIB, stop_percent=0,
                    resume_bytes=50 * MIB, log_interval=60)


def free(mib: int) -> DiskSample:
    return DiskSample(free=mib * MIB, total=TOTAL)


def test_states_follow_the_thresholds_with_hysteresis_on_resume() -> None:
    guard = DiskGuard(POLICY)
    states = [guard.observe(free(mib), now=i).state
              for i, mib in enumerate([500, 99, 30, 19, 30, 49, 50, 99, 100, 19, 500])]
    assert states == ["ok", "low", "low", "full", "full", "full", "low", "low", "ok", "full",
                      "ok"]


def test_percent_thresholds_apply_when_larger_than_bytes() -> None:
    policy = DiskPolicy(warn_bytes=1, warn_percent=10, stop_bytes=1, stop_percent=5,
                        resume_bytes=0)
    assert (policy.warn_at(TOTAL), policy.stop_at(TOTAL)) == (100 * MIB, 50 * MIB)
    assert policy.resume_at(TOTAL) == 50 * MIB  # never below the stop threshold
    guard = DiskGuard(policy)
    assert guard.observe(free(49), 0).state == "full"
    assert guard.observe(free(60), 1).state == "low"


def test_logs_on_change_then_at_most_once_per_interval() -> None:
    guard = DiskGuard(POLICY)
    logged = [t for t in range(0, 200, 5) if guard.observe(free(10), now=t).log]
    assert logged == [0, 60, 120, 180]
    verdict = guard.observe(free(500), now=201)
    assert verdict.changed and verdict.log and verdict.state == "ok"
    assert not guard.observe(free(500), now=300).log  # ok: nothing to repeat


def test_a_write_refused_for_space_means_full_for_the_hold_and_until_resume() -> None:
    guard = DiskGuard(POLICY)
    assert guard.observe(free(500), 0).state == "ok"
    verdict = guard.write_failed(1)
    assert (verdict.state, verdict.changed, verdict.log, verdict.free) == ("full", True, True, 0)
    # A quota (EDQUOT) leaves the file system's free space high: the hold keeps it full.
    assert guard.observe(free(500), 2).state == "full"
    assert guard.observe(free(500), 60).state == "full"
    assert guard.observe(free(40), 61).state == "full"  # past the hold, below resume
    verdict = guard.observe(free(60), 62)
    assert verdict.changed and verdict.state == "low"


@pytest.mark.parametrize("field,value", [("warn_bytes", -1), ("stop_percent", 100),
                                         ("log_interval", 0), ("failure_hold", -1)])
def test_bad_policies_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        DiskPolicy(**{field: value})


def test_out_of_space_errors_are_recognised() -> None:
    assert is_out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert is_out_of_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_out_of_space(OSError(errno.EIO, "Input/output error"))
    assert not is_out_of_space(ValueError("x"))
    with pytest.raises(av.FFmpegError) as raised:  # what the muxer raises on a full disk
        av.error.err_check(-errno.ENOSPC)
    assert is_out_of_space(raised.value)
    assert failure_kind(OSError(errno.ENOSPC, "x")) == f"OSError[{errno.ENOSPC}]"


def test_failures_are_logged_once_per_kind_then_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    log = FailureLog(logging.getLogger("recorder.test"), "rec-1", lambda: calls.append(1))
    caplog.set_level(logging.INFO)
    for _ in range(500):
        log.failed("muxing a frame", OSError(errno.ENOSPC, "No space left on device"))
    log.failed("closing the timeline", ValueError("the timeline is closed"))
    log.summary()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0] == ("[rec-1] muxing a frame failed: No space left on device "
                        "(later failures of this kind are counted)")
    assert caplog.records[0].exc_info is None  # no traceback for a full disk
    assert caplog.records[1].exc_info is not None  # an unexpected error keeps its traceback
    assert lines[2] == f"[rec-1] failures: OSError[{errno.ENOSPC}] x500"
    assert len(calls) == 500 and log.total == 501


@pytest.mark.parametrize("env,message", [
    ({"HUIZHEN_RECORDER_DISK_STOP_MIB": "4096"}, "disk_stop_mib must not exceed"),
    ({"HUIZHEN_RECORDER_DISK_RESUME_MIB": "260"}, "disk_resume_mib must be at least"),
    ({"HUIZHEN_RECORDER_DISK_WARN_PERCENT": "100"}, "disk_warn_percent must be below 100"),
    ({"HUIZHEN_RECORDER_RETENTION_MAX_MIB": "-1"}, "retention_max_mib must be >= 0"),
])
def test_inconsistent_disk_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_settings(**env)


def test_the_default_disk_settings_make_the_policy() -> None:
    policy = disk_policy(make_settings())
    assert policy == DiskPolicy(warn_bytes=2048 * MIB, warn_percent=5.0, stop_bytes=256 * MIB,
                                stop_percent=1.0, resume_bytes=512 * MIB)
    assert disk_policy(make_settings(HUIZHEN_RECORDER_DISK_CHECK_INTERVAL="0")) is None
