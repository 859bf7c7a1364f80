"""The forwarding benchmark's layer-selection comparison (pure: runs in, summary out)."""

from __future__ import annotations

import pytest

from benchmarks.forwarding import compare_layers, parse_args


def run(baseline_cpu: float, cpu: float, subscribers: int = 8, fps: float = 30.0
        ) -> dict[str, object]:
    return {"baseline": {"serverCpuPercent": baseline_cpu},
            "forwarding": {"serverCpuPercent": cpu, "subscribers": subscribers,
                           "fps": {"min": fps}}}


def test_medians_ratio_and_verdict():
    rounds = [{"off": run(4.0, 12.0), "on": run(4.0, 12.8)},
              {"on": run(4.2, 13.0, fps=29.0), "off": run(4.2, 12.2)}]
    summary = compare_layers(rounds)
    assert summary["medians"]["off"]["aboveBaseline"] == pytest.approx(1.0)
    assert summary["medians"]["on"]["aboveBaseline"] == pytest.approx(1.1)
    assert summary["ratios"]["aboveBaseline"] == pytest.approx(1.1)
    assert summary["medians"]["on"]["fpsMin"] == pytest.approx(29.5)
    assert summary["result"] == "PASS"
    worse = compare_layers([{"off": run(4.0, 12.0), "on": run(4.0, 13.0)}])
    assert worse["result"] == "FAIL"


def test_a_failed_run_gives_no_verdict():
    assert compare_layers([{"off": None, "on": run(4.0, 12.0)}])["result"] == "n/a"


def test_both_sides_need_rounds_and_subscribers():
    assert parse_args(["--layer-selection", "both"]).layer_selection == "both"
    with pytest.raises(SystemExit):
        parse_args(["--layer-selection", "both", "--subscribers", "0"])
