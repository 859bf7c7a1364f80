"""benchmarks.ab_comparison and benchmarks.checkout: the A/B mode of the forwarding benchmark
(``--against DIR``), without running a benchmark."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from benchmarks.ab_comparison import compare, report_lines, run_figures
from benchmarks.checkout import CheckoutError, open_checkout

ROOT = Path(__file__).resolve().parent.parent


def run(baseline_cpu: float, cpu: float, p50: float, p99: float, fps_min: float,
        subscribers: int = 8) -> dict[str, Any]:
    """A run_huizhen result, reduced to what the comparison reads."""
    return {"baseline": {"serverCpuPercent": baseline_cpu, "subscribers": 0},
            "forwarding": {"serverCpuPercent": cpu, "subscribers": subscribers,
                           "fps": {"min": fps_min, "median": 30.0, "max": 30.1},
                           "latency": {"copies": 1000, "p50Ms": p50, "p99Ms": p99,
                                       "maxMs": 20.0}}}


def test_figures_are_per_subscriber_above_the_zero_subscriber_baseline() -> None:
    assert run_figures(run(10.0, 14.0, 0.5, 2.0, 29.5)) == {
        "cpuPerSubscriberPercent": 0.5, "latencyP50Ms": 0.5, "latencyP99Ms": 2.0,
        "fpsMin": 29.5}
    no_copies = run(10.0, 14.0, 0.5, 2.0, 29.5)
    no_copies["forwarding"]["latency"] = {"copies": 0}
    assert run_figures(no_copies)["latencyP99Ms"] is None
    assert set(run_figures(None).values()) == {None}


def test_medians_ratios_and_verdicts() -> None:
    rounds = [{"base": run(10, 14, 0.50, 2.0, 29.0), "new": run(10, 14.2, 0.50, 2.2, 29.5)},
              {"base": run(10, 14, 0.60, 3.0, 30.0), "new": run(11, 15.0, 0.52, 2.9, 28.0)},
              {"base": run(10, 15, 0.40, 2.5, 29.5), "new": None}]
    summary = compare(rounds)
    assert summary["medians"]["base"] == {"cpuPerSubscriberPercent": 0.5,
                                          "latencyP50Ms": 0.5, "latencyP99Ms": 2.5,
                                          "fpsMin": 29.5}
    assert summary["medians"]["new"] == pytest.approx(
        {"cpuPerSubscriberPercent": 0.5125, "latencyP50Ms": 0.51, "latencyP99Ms": 2.55,
         "fpsMin": 28.75})
    assert summary["ratios"] == pytest.approx({"cpuPerSubscriberPercent": 1.025,
                                               "latencyP50Ms": 1.02, "latencyP99Ms": 1.02,
                                               "fpsMin": 28.75 / 29.5})
    assert [c["result"] for c in summary["checks"]] == ["PASS", "PASS", "PASS", "PASS"]
    assert summary["result"] == "PASS"
    slower = compare([{"base": run(10, 14, 0.5, 2.0, 30.0), "new": run(10, 14, 0.5, 2.2, 30.0)}])
    assert [c["result"] for c in slower["checks"]] == ["PASS", "PASS", "FAIL", "PASS"]
    assert slower["result"] == "FAIL"
    choppier = compare([{"base": run(10, 14, 0.5, 2.0, 30.0),
                         "new": run(10, 14, 0.5, 2.0, 28.4)}])
    assert choppier["checks"][3]["result"] == "FAIL"


def test_a_baseline_without_a_cost_is_not_a_ratio() -> None:
    # Noise can put the server's CPU with subscribers below its 0-subscriber baseline.
    summary = compare([{"base": run(10, 9.5, 0.5, 2.0, 30), "new": run(10, 14, 0.5, 2.0, 30)}])
    assert summary["ratios"]["cpuPerSubscriberPercent"] is None
    assert summary["checks"][0]["result"] == "n/a" and summary["result"] == "PASS"
    assert compare([{"base": None, "new": None}])["result"] == "n/a"


def test_the_report_lists_every_run_the_medians_and_the_verdicts() -> None:
    lines = report_lines(compare([{"base": run(10, 14, 0.5, 2.0, 30.0),
                                   "new": run(10, 14.8, 0.5, 2.0, 30.0)}]))
    assert lines[0].split() == ["run", "CPU/sub", "above", "0", "p50", "ms", "p99", "ms",
                                "fps", "min"]
    assert lines[2].split() == ["round", "1", "base", "0.500%", "0.50", "2.00", "30.0"]
    assert lines[3].split() == ["round", "1", "new", "0.600%", "0.50", "2.00", "30.0"]
    assert lines[6].split() == ["new/base", "1.200x", "1.000x", "1.000x", "1.000x"]
    assert lines[7] == ("FAIL  server CPU per subscriber above the 0-subscriber baseline: "
                        "new/base 1.200 (no worse than 5 %: <= 1.05)")
    assert lines[10] == ("PASS  fps min over the subscribers: new/base 1.000 "
                         "(no worse than 5 %: >= 0.95)")
    assert lines[-1].startswith("FAIL  overall")


def test_a_checkout_runs_its_own_modules(tmp_path: Path) -> None:
    checkout = open_checkout(ROOT, dict(os.environ))
    assert checkout.root == ROOT and checkout.env["PYTHONPATH"] == str(ROOT)
    with pytest.raises(CheckoutError, match="not a huizhen checkout"):
        open_checkout(tmp_path, dict(os.environ))
    # A directory with a server module but no packages: they would come from elsewhere.
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "server.py").write_text("")
    with pytest.raises(CheckoutError, match=r"huizhen would be imported from|cannot be imported"):
        open_checkout(tmp_path, dict(os.environ))
