"""The cascade hop's price: the same 1 -> N broadcast on one node and on three.

    python -m benchmarks.cascade [--viewers 100] [--seconds 15] [--warmup 8] [--rounds 1]

Two scenarios, each with its own processes and its own key prefix in the real Redis
(``--redis-url``, 127.0.0.1:6379 by default):

1. **one node**: one node of a cluster (``benchmarks.server --cluster-prefix``), the
   publisher (``benchmarks.publisher``: 640x480 30 fps VP8 pinned at 1.5 Mbit/s) and N
   light viewers (``benchmarks.light_viewers``), all on it;
2. **three nodes**: A, B and C; the publisher joins at A, the room's origin; N/2 viewers
   join at B and N/2 at C and are served where they joined: B and C relay the room from
   A (A sends each packet once to each of them), and fan it out to their own viewers.

Each scenario measures a window with the publisher alone (every node's CPU: the
baseline) and then the window with the N viewers. ``--rounds 2`` runs one, three,
three, one (a load drifting on a shared machine favours neither). Printed per
scenario: each node's CPU in both windows, the viewers at >= 28 fps and the lowest fps,
loss, each node's hop latency p50/p99 (on A of the three nodes: publisher to edge; on B
and C: edge to viewer), and the load generator's own CPU. Then the ratios:

- all nodes' CPU above their baselines, three nodes / one node: what the cascade hop
  costs in all (the edges' second forwarding step and the origin's copies to the edges);
- the origin's CPU above baseline, three nodes / one node: what the origin saves when
  its viewers live on other nodes;
- CPU per viewer on an edge (above its baseline) / CPU per viewer on the one node.

All nodes share this machine's two cores, so the three-node figures are CPU seconds, not
capacity: on separate machines each edge's share is what one edge machine carries. A
report: it never asserts. Results also go to ``benchmarks/results/cascade-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import psutil
from redis import Redis

from benchmarks.common import DEFAULT_REDIS_URL, SECRET_ENV
from benchmarks.forwarding import (
    RESULTS_DIR,
    ROOT,
    Child,
    ChildError,
    ProcessGroup,
    StatsClient,
    _terminate,
    free_port,
    log,
    machine_busy_seconds,
    process_group,
    start_subscribers,
    subscriber_counters,
    summarise,
    viewer_figures,
    wait_for_ingest,
    wait_for_media,
)

MIN_FPS = 28.0


def start_node(group: ProcessGroup, name: str, prefix: str, redis_url: str) -> tuple[Child, int]:
    port = free_port()
    node = group.start(name, "server", "--port", str(port), "--cluster-prefix", prefix,
                       "--redis-url", redis_url)
    node.expect("ready", 30)
    return node, port


def window(seconds: float, nodes: dict[str, Child], publisher: Child,
           viewers: dict[str, list[Child]], stats: dict[str, StatsClient]) -> dict[str, Any]:
    """One measured window: every node's CPU and hop latency, every viewer's frames."""
    everyone = [*nodes.values(), publisher, *(c for cs in viewers.values() for c in cs)]
    subs0 = {node: subscriber_counters(cs) for node, cs in viewers.items()}
    for client in stats.values():
        client.get(reset=True)
    wall0, busy0 = time.monotonic(), machine_busy_seconds()
    cpu0 = {c.name: c.cpu_seconds() for c in everyone}
    time.sleep(seconds)
    cpu1 = {c.name: c.cpu_seconds() for c in everyone}
    wall = time.monotonic() - wall0
    busy = machine_busy_seconds() - busy0
    latency = {name: client.get().get("latency") or {} for name, client in stats.items()}
    subs1 = {node: subscriber_counters(cs) for node, cs in viewers.items()}
    cpu = {name: 100.0 * (cpu1[name] - cpu0[name]) / wall for name in cpu0}
    per_viewer = {node: viewer_figures(subs0[node], subs1[node]) for node in viewers}
    everybody = [v for vs in per_viewer.values() for v in vs]
    generator = sum(cpu[c.name] for cs in viewers.values() for c in cs)
    return {
        "seconds": wall,
        "nodeCpuPercent": {name: cpu[node.name] for name, node in nodes.items()},
        "publisherCpuPercent": cpu[publisher.name],
        "generatorCpuPercent": generator,
        "machineCpuPercent": 100.0 * busy / wall,
        "viewers": {node: len(vs) for node, vs in per_viewer.items()},
        "fps": summarise([v["fps"] for v in everybody]),
        "viewersAtMinFps": sum(v["fps"] >= MIN_FPS for v in everybody),
        "lossPercent": summarise([v["lossPercent"] for v in everybody]),
        "latency": {name: {k: lat.get(k) for k in ("p50Ms", "p99Ms", "copies")}
                    for name, lat in latency.items()},
    }


def run_scenario(args: argparse.Namespace, env: dict[str, str], log_dir: Path,
                 three: bool, number: int) -> dict[str, Any]:
    name = "three" if three else "one"
    prefix = f"bench-cascade-{secrets.token_hex(4)}:"
    redis = Redis.from_url(args.redis_url)
    try:
        with process_group(env, log_dir, f"{name}{number}") as group:
            names = ("A", "B", "C") if three else ("A",)
            started = {n: start_node(group, f"node-{n}", prefix, args.redis_url)
                       for n in names}
            nodes = {n: child for n, (child, _) in started.items()}
            ports = {n: port for n, (_, port) in started.items()}
            stats = {n: StatsClient(port) for n, port in ports.items()}
            publisher = group.start("publisher", "publisher", "--mode", "huizhen",
                                    "--port", str(ports["A"]), "--grain-bits",
                                    str(args.grain_bits))
            stream = str(publisher.expect("ready", 60)["stream"])
            wait_for_ingest(stats["A"], 20)
            log(f"{name} node(s): publisher streaming at A ({stream}); baseline window")
            time.sleep(args.baseline_warmup)
            baseline = window(args.baseline_seconds, nodes, publisher, {}, stats)
            where = ("B", "C") if three else ("A",)
            counts = [args.viewers // len(where) + (i < args.viewers % len(where))
                      for i in range(len(where))]
            viewers: dict[str, list[Child]] = {}
            first = 0
            for node, count in zip(where, counts, strict=True):
                log(f"{name} node(s): {count} light viewers joining at {node}")
                viewers[node] = start_subscribers(group, "huizhen", ports[node], count, 1,
                                                  stream, first=first, light=True,
                                                  name=f"viewers-{node}-")
                first += count
            for children in viewers.values():
                wait_for_media(children, 30)
            time.sleep(args.warmup)
            loaded = window(args.seconds, nodes, publisher, viewers, stats)
            relays = {n: s.get() for n, s in stats.items() if n != "A"}
    finally:
        keys = list(redis.scan_iter(match=f"{prefix}*"))
        if keys:
            redis.delete(*keys)
        redis.close()
    result = {"scenario": name, "baseline": baseline, "viewers": loaded,
              "relayedFrom": {n: [r.get("relayedFrom") for r in s.get("rooms", [])]
                              for n, s in relays.items()}}
    above = {n: loaded["nodeCpuPercent"][n] - baseline["nodeCpuPercent"][n] for n in names}
    result["aboveBaseline"] = above
    result["aboveBaselineTotal"] = sum(above.values())
    per_node_viewers = loaded["viewers"]
    result["cpuPerViewer"] = {n: above[n] / per_node_viewers[n]
                              for n in per_node_viewers if per_node_viewers[n]}
    return result


def print_scenario(result: dict[str, Any]) -> None:
    base, loaded = result["baseline"], result["viewers"]
    n = sum(loaded["viewers"].values())
    print(f"\n{result['scenario']} node(s), {n} viewers "
          f"({', '.join(f'{k}: {v}' for k, v in loaded['viewers'].items())}):")
    for node, cpu in loaded["nodeCpuPercent"].items():
        lat = loaded["latency"].get(node) or {}
        per = result["cpuPerViewer"].get(node)
        print(f"  node {node}: CPU {base['nodeCpuPercent'][node]:6.1f} % alone, "
              f"{cpu:6.1f} % with viewers ({result['aboveBaseline'][node]:+.1f} %"
              + (f", {per:.3f} % per viewer" if per is not None else "")
              + f"); hop p50 {_ms(lat.get('p50Ms'))} p99 {_ms(lat.get('p99Ms'))} "
              f"({lat.get('copies') or 0} copies)")
    fps = loaded["fps"]
    print(f"  viewers: {loaded['viewersAtMinFps']}/{n} at >= {MIN_FPS:g} fps (min "
          f"{fps['min']:.1f}, median {fps['median']:.1f}); loss max "
          f"{loaded['lossPercent']['max']:.2f} %; load generator "
          f"{loaded['generatorCpuPercent']:.1f} % "
          f"({loaded['generatorCpuPercent'] / max(1, n):.3f} % per viewer); machine "
          f"{loaded['machineCpuPercent']:.0f} % of {psutil.cpu_count()} cores")
    if any(result["relayedFrom"].values()):
        print(f"  relayed rooms: {result['relayedFrom']}")


def _ms(value: float | None) -> str:
    return f"{value:.2f} ms" if value is not None else "-"


def compare(ones: list[dict[str, Any]], threes: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over the rounds of the three ratios (see the module's docstring)."""
    one_total = statistics.median(r["aboveBaselineTotal"] for r in ones)
    three_total = statistics.median(r["aboveBaselineTotal"] for r in threes)
    one_origin = statistics.median(r["aboveBaseline"]["A"] for r in ones)
    three_origin = statistics.median(r["aboveBaseline"]["A"] for r in threes)
    one_per_viewer = statistics.median(r["cpuPerViewer"]["A"] for r in ones)
    edge_per_viewer = statistics.median(
        statistics.mean(r["cpuPerViewer"][n] for n in ("B", "C")) for r in threes)
    return {"totalThreeOverOne": three_total / one_total,
            "originThreeOverOne": three_origin / one_origin,
            "edgePerViewerOverOne": edge_per_viewer / one_per_viewer,
            "oneTotal": one_total, "threeTotal": three_total,
            "oneOrigin": one_origin, "threeOrigin": three_origin,
            "onePerViewer": one_per_viewer, "edgePerViewer": edge_per_viewer}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cascade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--baseline-seconds", type=float, default=8.0)
    parser.add_argument("--baseline-warmup", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of the two scenarios: one, three, then three, one, ...")
    parser.add_argument("--grain-bits", type=int, default=3, choices=range(9))
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.viewers < 2 or args.rounds < 1:
        parser.error("--viewers >= 2 and --rounds >= 1")
    signal.signal(signal.SIGTERM, _terminate)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    output = args.output or RESULTS_DIR / f"cascade-{stamp}.json"
    log_dir = RESULTS_DIR / f"cascade-{stamp}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ[SECRET_ENV] = secrets.token_urlsafe(32)  # every process of this run
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    ones: list[dict[str, Any]] = []
    threes: list[dict[str, Any]] = []
    order = [three for number in range(args.rounds)
             for three in ((False, True) if number % 2 == 0 else (True, False))]
    try:
        for number, three in enumerate(order):
            result = run_scenario(args, env, log_dir, three, number)
            (threes if three else ones).append(result)
            print_scenario(result)
    except ChildError as exc:
        raise SystemExit(f"a benchmark process failed: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    ratios = compare(ones, threes)
    print(f"\n1 -> {args.viewers} broadcast, medians of {args.rounds} round(s):")
    print(f"  all nodes' CPU above baseline: one node {ratios['oneTotal']:.1f} %, three "
          f"nodes {ratios['threeTotal']:.1f} %: three / one = {ratios['totalThreeOverOne']:.2f}")
    print(f"  the origin's CPU above baseline: {ratios['oneOrigin']:.1f} % -> "
          f"{ratios['threeOrigin']:.1f} %: three / one = {ratios['originThreeOverOne']:.2f}")
    print(f"  CPU per viewer: one node {ratios['onePerViewer']:.3f} %, on an edge "
          f"{ratios['edgePerViewer']:.3f} %: edge / one = {ratios['edgePerViewerOverOne']:.2f}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"benchmark": "cascade", "viewers": args.viewers,
                                  "rounds": {"one": ones, "three": threes},
                                  "ratios": ratios}, indent=2) + "\n", "utf-8")
    print(f"\nresults: {output}\nprocess logs: {log_dir}")


if __name__ == "__main__":
    main()
