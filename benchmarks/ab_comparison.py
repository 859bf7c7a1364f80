"""The A/B comparison of ``benchmarks.forwarding --against DIR`` (pure: runs in, summary out).

Each round runs the huizhen scenario twice, the baseline checkout's server ("base") then
this checkout's ("new"), with the same clients. From each run come four figures; the
summary holds their medians over the rounds, the ratios new/base of the medians, and a
PASS/FAIL per figure against "no worse than TOLERANCE" (a report, never an exit status).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TOLERANCE = 0.05
SIDES = ("base", "new")

Figures = dict[str, float | None]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    lower_is_better: bool

    def judge(self, ratio: float | None) -> str:
        if ratio is None:
            return "n/a"
        good = (ratio <= 1 + TOLERANCE if self.lower_is_better else ratio >= 1 - TOLERANCE)
        return "PASS" if good else "FAIL"


METRICS = (
    Metric("cpuPerSubscriberPercent", "server CPU per subscriber above the 0-subscriber "
           "baseline", "%", lower_is_better=True),
    Metric("latencyP50Ms", "hop latency p50", " ms", lower_is_better=True),
    Metric("latencyP99Ms", "hop latency p99", " ms", lower_is_better=True),
    Metric("fpsMin", "fps min over the subscribers", "", lower_is_better=False),
)


def run_figures(run: Mapping[str, Any] | None) -> Figures:
    """The compared figures of one huizhen scenario run (``run_huizhen``'s result)."""
    figures: Figures = dict.fromkeys(m.key for m in METRICS)
    forwarding = (run or {}).get("forwarding")
    baseline = (run or {}).get("baseline")
    if not forwarding or not forwarding.get("subscribers"):
        return figures
    if baseline:
        figures["cpuPerSubscriberPercent"] = ((forwarding["serverCpuPercent"]
                                               - baseline["serverCpuPercent"])
                                              / forwarding["subscribers"])
    latency = forwarding.get("latency") or {}
    if latency.get("copies"):
        figures["latencyP50Ms"] = latency.get("p50Ms")
        figures["latencyP99Ms"] = latency.get("p99Ms")
    figures["fpsMin"] = forwarding["fps"]["min"]
    return figures


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(new: float | None, base: float | None) -> float | None:
    """new / base, or None when either is missing or base is not positive (noise)."""
    if new is None or base is None or base <= 0:
        return None
    return new / base


def compare(runs: Sequence[Mapping[str, Mapping[str, Any] | None]]) -> dict[str, Any]:
    """``runs``: per round, ``{"base": run, "new": run}`` (a run is None if it failed)."""
    figures = [{side: run_figures(entry.get(side)) for side in SIDES} for entry in runs]
    medians = {side: {m.key: median(f[side][m.key] for f in figures) for m in METRICS}
               for side in SIDES}
    rounds = [{"round": index, **f} for index, f in enumerate(figures, start=1)]
    ratios = {m.key: ratio(medians["new"][m.key], medians["base"][m.key]) for m in METRICS}
    checks = [{"check": m.label, "metric": m.key, "ratio": ratios[m.key],
               "result": m.judge(ratios[m.key])} for m in METRICS]
    results = {c["result"] for c in checks}
    overall = "FAIL" if "FAIL" in results else "PASS" if "PASS" in results else "n/a"
    return {"tolerance": TOLERANCE, "rounds": rounds, "medians": medians, "ratios": ratios,
            "checks": checks, "result": overall}


_COLUMNS = (("CPU/sub above 0", 16, ".3f", "%"), ("p50 ms", 11, ".2f", ""),
            ("p99 ms", 11, ".2f", ""), ("fps min", 8, ".1f", ""))


def _cell(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _line(label: str, cells: Iterable[str]) -> str:
    widths = (width for _, width, _, _ in _COLUMNS)
    return f"{label:<14} " + " ".join(f"{cell:>{w}}" for cell, w in zip(cells, widths,
                                                                       strict=True))


def _figures_line(label: str, figures: Mapping[str, float | None]) -> str:
    return _line(label, (_cell(figures[m.key], spec, suffix)
                         for m, (_, _, spec, suffix) in zip(METRICS, _COLUMNS, strict=True)))


def report_lines(summary: Mapping[str, Any]) -> list[str]:
    """The printed table: every run, the medians, the ratios and the PASS/FAIL lines."""
    header = _line("run", (title for title, _, _, _ in _COLUMNS))
    lines = [header, "-" * len(header)]
    for entry in summary["rounds"]:
        lines += [_figures_line(f"round {entry['round']} {side}", entry[side])
                  for side in SIDES]
    lines += [_figures_line(f"median {side}", summary["medians"][side]) for side in SIDES]
    lines.append(_line("new/base", (_cell(summary["ratios"][m.key], ".3f", "x")
                                    for m in METRICS)))
    limit = round(100 * summary["tolerance"])
    for check, metric in zip(summary["checks"], METRICS, strict=True):
        bound = (f"<= {1 + summary['tolerance']:.2f}" if metric.lower_is_better
                 else f">= {1 - summary['tolerance']:.2f}")
        lines.append(f"{check['result']:<4}  {check['check']}: new/base "
                     f"{_cell(check['ratio'], '.3f')} (no worse than {limit} %: {bound})")
    lines.append(f"{summary['result']:<4}  overall: new within {limit} % of base (or better) "
                 "on every measured figure")
    return lines
