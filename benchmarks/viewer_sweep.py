"""The forwarding benchmark's ``--sizes`` sweep: one server, one publisher, growing rooms.

    python -m benchmarks.forwarding --light --sizes 100,250,500

One server and one publisher for the whole sweep. First the 0-viewer baseline window,
then viewers are added in steps, 32 first (the reference) and then up to each size,
each step's viewers in a process of their own; after each step's warm-up the window is
measured (``forwarding.measure``). Per size it prints the server's CPU per viewer above
the baseline and its ratio to the 32-viewer figure of the same run, the hop latency
p50/p99, the viewers at >= 28 fps (count, and the minimum fps), the loss, the load
generator's own CPU (all viewer processes, and per viewer) and, for light viewers,
what their sampled decryptions found.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks import forwarding
from benchmarks.forwarding import Child, _fmt, log

REFERENCE_VIEWERS = 32
MIN_FPS = 28.0  # issue 13: every viewer at >= 28 fps
JOINS_SETTLED_PER_SECOND = 25  # extra warm-up: 1 s per 25 viewers added in a step
CPU_TOLERANCE = 0.10  # per-viewer CPU at most 10 % above the 32-viewer figure


def parse_sizes(text: str) -> list[int]:
    """``"100,250,500"`` -> [32, 100, 250, 500]: ascending, the reference size first."""
    try:
        sizes = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of viewer counts: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("viewer counts must be >= 1")
    return sorted(sizes | {REFERENCE_VIEWERS})


def validation(replies: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums of the light viewers' own checks (since each joined) from their snapshots."""
    checks = [c for reply in replies for c in (reply.get("checks") or {}).values() if c]
    total = {key: sum(int(c.get(key) or 0) for c in checks)
             for key in ("samples", "sampleFailures", "keyframesVerified", "foreign",
                         "duplicates", "reordered", "late", "stray")}
    total["viewers"] = len(checks)
    total["viewersFailing"] = sum(bool(c.get("sampleFailures")) or not c.get("samples")
                                  or bool(c.get("error")) for c in checks)
    problems = sorted({str(c.get("firstProblem") or c.get("error")) for c in checks
                       if c.get("firstProblem") or c.get("error")})
    total["problems"] = problems[:5]
    return total


def size_row(step: dict[str, Any], baseline: dict[str, Any],
             reference: dict[str, Any] | None) -> dict[str, Any]:
    """The printed figures of one size (pure)."""
    n = step["subscribers"]
    lat = step.get("latency") or {}
    # A room whose forwarding stopped (no copy in the window) has no CPU per viewer.
    forwarded = n and lat.get("copies")
    above = (step["serverCpuPercent"] - baseline["serverCpuPercent"]) / n if forwarded else None
    ref_above = reference["aboveBaselinePerViewer"] if reference else None
    fps = [s["fps"] for s in step["perSubscriber"]]
    generator = step["subscriberProcessesCpuPercent"]
    return {
        "viewers": n, "requested": step.get("requested", n),
        "serverCpuPercent": step["serverCpuPercent"], "aboveBaselinePerViewer": above,
        "ratioToReference": (above / ref_above if above is not None and ref_above
                             and ref_above > 0 else None),
        "p50Ms": lat.get("p50Ms") if lat.get("copies") else None,
        "p99Ms": lat.get("p99Ms") if lat.get("copies") else None,
        "viewersAtMinFps": sum(f >= MIN_FPS for f in fps),
        "fpsMin": min(fps) if fps else None,
        "lossMaxPercent": step["lossPercent"]["max"] if n else None,
        "lossMedianPercent": step["lossPercent"]["median"] if n else None,
        "generatorCpuPercent": generator,
        "generatorCpuPerViewer": generator / n if n else None,
        "machineCpuPercent": step["machineCpuPercent"],
        "validation": step.get("validation"),
    }


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per measured size, ``size_row`` against the first size of at least 32 viewers."""
    if "baseline" not in result:
        return []
    out: list[dict[str, Any]] = []
    reference = None
    for step in result["steps"]:
        row = size_row(step, result["baseline"], reference)
        if step["subscribers"] and reference is None and row["viewers"] >= REFERENCE_VIEWERS:
            reference = row
            row["ratioToReference"] = 1.0
        out.append(row)
    return out


def run_sweep(args: argparse.Namespace, env: dict[str, str], log_dir: Path,
              result: dict[str, Any]) -> None:
    """Fills ``result`` as it goes (a failed step leaves the ones measured before it);
    ``rows(result)`` then gives the figures."""
    port = forwarding.free_port()
    result.update(sizes=args.sizes, light=args.light, steps=[])
    with forwarding.process_group(env, log_dir, "sweep") as group:
        log(f"sweep: starting the server on port {port}")
        server, stats, publisher, stream = forwarding.start_room(group, port, args.grain_bits)
        time.sleep(args.baseline_warmup)
        result["baseline"] = forwarding.measure(args.baseline_seconds, server, publisher, [],
                                                None)
        log(f"sweep: baseline server CPU {result['baseline']['serverCpuPercent']:.1f}%")
        viewers: list[Child] = []
        for step, size in enumerate(args.sizes):
            have = result["steps"][-1]["requested"] if result["steps"] else 0
            processes = 1 if args.light else forwarding.subscriber_processes(
                size - have, args.subscriber_processes)
            log(f"sweep: adding {size - have} viewers ({size} in all)")
            viewers += forwarding.start_subscribers(
                group, "huizhen", port, size - have, processes, stream, first=have,
                light=args.light, name=f"step{step}-viewers")
            forwarding.wait_for_media(viewers, 60)
            # The joins' signalling events (O(viewers**2)) drain for a while after media flows.
            time.sleep(args.warmup + (size - have) / JOINS_SETTLED_PER_SECOND)
            measured = forwarding.measure(args.seconds, server, publisher, viewers, stats)
            measured["requested"] = size
            measured["validation"] = validation([c.request("snapshot", 30) for c in viewers])
            result["steps"].append(measured)
            log(f"sweep: {size} viewers: server CPU {measured['serverCpuPercent']:.1f}%, "
                f"fps min {measured['fps']['min']:.1f}, viewer processes "
                f"{measured['subscriberProcessesCpuPercent']:.1f}%")


def print_sweep(report: dict[str, Any]) -> None:
    sweep = report["scenarios"]["sweep"]
    cfg = report["config"]
    base = sweep["baseline"]
    print()
    print(f"Viewer sweep: 1 publisher {cfg['video']} VP8 at {cfg['bitrate'] / 1e6:g} Mbit/s, "
          f"{'light' if sweep['light'] else 'aiortc'} viewers; {cfg['seconds']:g} s windows "
          f"after {cfg['warmup']:g} s warm-up; {report['machine']['cores']} cores shared by "
          "every process")
    print(f"CPU: % of ONE core. Server baseline (publisher, 0 viewers): "
          f"{base['serverCpuPercent']:.1f}%")
    header = (f"{'viewers':>7} {'server':>7} {'/viewer>0':>9} {'x32':>5} "
              f"{'p50/p99 ms':>12} {'>=28fps':>8} {'fps min':>7} {'loss max':>8} "
              f"{'gen CPU':>7} {'gen/viewer':>10} {'machine':>7} {'samples bad/all':>15}")
    print(header)
    print("-" * len(header))
    for row in sweep["rows"]:
        v = row["validation"] or {}
        lat = f"{_fmt(row['p50Ms'], '.2f')}/{_fmt(row['p99Ms'], '.2f')}"
        print(f"{row['viewers']:>7} {row['serverCpuPercent']:>6.1f}% "
              f"{_fmt(row['aboveBaselinePerViewer'], '.3f', '%'):>9} "
              f"{_fmt(row['ratioToReference'], '.2f'):>5} {lat:>12} "
              f"{row['viewersAtMinFps']:>4}/{row['viewers']:<3} {_fmt(row['fpsMin']):>7} "
              f"{_fmt(row['lossMaxPercent'], '.2f', '%'):>8} "
              f"{row['generatorCpuPercent']:>6.1f}% "
              f"{_fmt(row['generatorCpuPerViewer'], '.3f', '%'):>10} "
              f"{row['machineCpuPercent']:>6.0f}% "
              f"{v.get('sampleFailures', '-')}/{v.get('samples', '-'):<6}")
    for row in sweep["rows"]:
        v = row["validation"] or {}
        if row["viewers"] < row["requested"]:
            print(f"  {row['requested']}: only {row['viewers']} viewers answered")
        if v.get("viewers"):
            print(f"  {row['viewers']} viewers: {v['keyframesVerified']} keyframes verified, "
                  f"{v['viewersFailing']} viewers failing validation or never sampled, "
                  f"foreign {v['foreign']}, "
                  f"duplicates {v['duplicates']}, reordered {v['reordered']}, late {v['late']}, "
                  f"stray {v['stray']}" + (f"; {v['problems']}" if v["problems"] else ""))
        ratio = row["ratioToReference"]
        held = row["viewers"] and row["viewersAtMinFps"] == row["viewers"]
        if row["viewers"] != REFERENCE_VIEWERS and not held:
            print(f"n/a   {row['requested']} viewers: the room did not hold "
                  f"({row['viewersAtMinFps']} viewers at >= {MIN_FPS:g} fps)")
        elif ratio is not None and row["viewers"] != REFERENCE_VIEWERS:
            verdict = "PASS" if ratio <= 1 + CPU_TOLERANCE else "FAIL"
            print(f"{verdict}  {row['viewers']} viewers: server CPU per viewer "
                  f"{ratio:.2f}x the 32-viewer figure (<= {1 + CPU_TOLERANCE:.2f})")
        per_viewer = row["generatorCpuPerViewer"]
        if per_viewer and held:  # a room that did not hold sent its viewers less
            print(f"      load generator: {per_viewer:.3f}% of a core per viewer -> "
                  f"{100 / per_viewer:.0f} viewers per core")
