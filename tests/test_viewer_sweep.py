"""benchmarks/viewer_sweep.py: the sizes, and the per-size figures of the sweep (pure)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from benchmarks.viewer_sweep import parse_sizes, rows, validation


def test_sizes_ascend_from_the_32_viewer_reference() -> None:
    assert parse_sizes("500,100,250") == [32, 100, 250, 500]
    assert parse_sizes("32,8") == [8, 32]
    for bad in ("", "a,b", "0,10"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_sizes(bad)


def step(viewers: int, server_cpu: float, fps: list[float], generator: float) -> dict[str, Any]:
    return {"subscribers": viewers, "requested": viewers, "serverCpuPercent": server_cpu,
            "perSubscriber": [{"fps": f} for f in fps],
            "latency": {"copies": 10, "p50Ms": 1.0, "p99Ms": 4.0},
            "lossPercent": {"max": 0.5, "median": 0.0},
            "subscriberProcessesCpuPercent": generator, "machineCpuPercent": 150.0}


def test_rows_compare_each_size_with_the_32_viewer_figure() -> None:
    result = {"baseline": {"serverCpuPercent": 20.0},
              "steps": [step(32, 28.0, [30.0] * 32, 8.0),
                        step(100, 46.0, [30.0] * 99 + [27.5], 25.0)]}
    first, second = rows(result)
    assert first["aboveBaselinePerViewer"] == pytest.approx(0.25)
    assert first["ratioToReference"] == 1.0
    assert second["aboveBaselinePerViewer"] == pytest.approx(0.26)
    assert second["ratioToReference"] == pytest.approx(1.04)
    assert (second["viewersAtMinFps"], second["fpsMin"]) == (99, 27.5)
    assert second["generatorCpuPerViewer"] == pytest.approx(0.25)
    assert (second["p50Ms"], second["p99Ms"]) == (1.0, 4.0)
    assert rows({"steps": []}) == []


def test_a_room_that_stopped_forwarding_has_no_cpu_per_viewer() -> None:
    stopped = {**step(500, 1.4, [0.0] * 500, 7.5), "latency": {"copies": 0}}
    result = {"baseline": {"serverCpuPercent": 2.4},
              "steps": [step(32, 15.5, [30.0] * 32, 6.3), stopped]}
    row = rows(result)[1]
    assert row["aboveBaselinePerViewer"] is None and row["ratioToReference"] is None
    assert (row["viewersAtMinFps"], row["p99Ms"]) == (0, None)


def test_validation_sums_the_viewers_checks() -> None:
    good = {"samples": 20, "sampleFailures": 0, "keyframesVerified": 2, "foreign": 0,
            "duplicates": 0, "reordered": 1, "late": 0, "stray": 0, "error": None,
            "firstProblem": None}
    bad = {**good, "sampleFailures": 20, "firstProblem": "SRTP authentication failed"}
    total = validation([{"checks": {"0": good, "1": bad}}, {"subscribers": {}}])
    assert total["viewers"] == 2 and total["viewersFailing"] == 1
    assert (total["samples"], total["sampleFailures"], total["reordered"]) == (40, 20, 2)
    assert total["problems"] == ["SRTP authentication failed"]
