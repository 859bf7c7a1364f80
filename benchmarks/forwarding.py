"""Forwarding benchmark: huizhen's packet forwarding against aiortc's MediaRelay.

    python -m benchmarks.forwarding [--subscribers 32] [--relay-subscribers 4]
                                    [--seconds 20] [--warmup 8]

Runs two scenarios, one after the other, each with its own processes:

1. huizhen: the real server (``benchmarks.server``, with the latency probe), one
   publisher (``benchmarks.publisher``: 640x480 30 fps VP8 pinned at 1.5 Mbit/s) and
   N subscribers (``benchmarks.subscribers``, in one or two processes, counting RTP
   packets without decoding). First a baseline window with 0 subscribers, then the
   measured window with N.
2. MediaRelay: ``benchmarks.relay_server`` (decode once, re-encode per subscriber),
   the same publisher, fewer subscribers.

Prints a summary and pass/fail lines against the targets (a report: the exit status
does not depend on them) and writes the numbers to
``benchmarks/results/forwarding-<timestamp>.json``. See benchmarks/README.md.

Layer selection on against off (``MediaConfig.layer_selection``)::

    python -m benchmarks.forwarding --layer-selection both [--rounds 2] [--subscribers 32]

runs only the huizhen scenario, with the server's per-viewer temporal layer selection off
and on, in alternating order (off, on, then on, off, ...), and prints the server CPU per
subscriber (above each run's 0-subscriber baseline, and in all) for both, their medians,
the ratio on/off and PASS/FAIL against "within 10 %". The benchmark's publisher (aiortc)
sends no temporal layers, so what is measured is the cost of selection itself: payloads
parsed for every packet, the selector asked per copy, sequence mapping. ``on`` or
``off`` alone runs the usual scenarios with the server set so.

A/B mode, against a checkout of another revision (e.g. ``git worktree add /tmp/base REV``)::

    python -m benchmarks.forwarding --against /tmp/base [--rounds 2] [--subscribers 32]

runs only the huizhen scenario, for DIR's server ("base") and this checkout's ("new"),
in alternating order: base, new, then new, base for ``--rounds 2`` (so a machine whose
load drifts during the run does not favour one side). The server child is
``python -m benchmarks.server --port N`` with cwd=DIR and PYTHONPATH=DIR under this
interpreter (``benchmarks.checkout`` checks that DIR's modules are the ones imported); the
publisher and subscribers are this checkout's in every run. It prints each run and the
medians of server CPU per subscriber above the 0-subscriber baseline, hop latency p50/p99
and fps min, the ratios new/base and PASS/FAIL against "no worse than 5 %"
(``benchmarks.ab_comparison``; a report, not an exit status), and writes the JSON as above.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import queue
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psutil

from benchmarks import ab_comparison
from benchmarks.checkout import Checkout, CheckoutError, open_checkout, revision_of
from benchmarks.common import HOST, SECRET_ENV, TARGET_BITRATE, bench_settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SUBSCRIBERS_PER_PROCESS = 16
# Light viewers negotiating at once: each join sends every participant of the room a few
# events, and faster joins into a room of hundreds congested the server's event loop.
LIGHT_JOIN_CONCURRENCY = 4
EXPECTED_FPS = 30.0

# Targets (reported, never asserted).
TARGET_MIN_FPS = 28.5  # "~30 fps at every subscriber": within 5% of the source's 30 fps
TARGET_CPU_PER_SUBSCRIBER = 0.5  # % of one core per subscriber stream
TARGET_CPU_RATIO = 10.0  # MediaRelay CPU per subscriber / huizhen CPU per subscriber
TARGET_P99_MS = 10.0
TARGET_RECORDING_RATIO = 2.0  # recording CPU per recorded stream / forwarding CPU per viewer

_started = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", file=sys.stderr, flush=True)


class ChildError(RuntimeError):
    pass


# --------------------------------------------------------------------------- child processes


class Child:
    """A benchmark process speaking JSON lines on stdin/stdout; stderr goes to a log file."""

    def __init__(self, name: str, module: str, args: list[str], env: dict[str, str],
                 log_path: Path, cwd: Path = ROOT) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"benchmarks.{module}", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            cwd=cwd, env=env, text=True, bufsize=1,
            # Not in the terminal's process group: Ctrl-C reaches only the orchestrator,
            # which then stops the children in order.
            start_new_session=True,
        )
        self.ps = psutil.Process(self.proc.pid)
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a stray print from a library
            if isinstance(event, dict):
                self._events.put(event)
        self._events.put(None)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text("utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def _fail(self, message: str) -> ChildError:
        tail = self.log_tail()
        return ChildError(f"{self.name}: {message}" + (f"\n--- {self.log_path}:\n{tail}"
                                                       if tail else ""))

    def expect(self, name: str, timeout: float) -> dict[str, Any]:
        """The next event called ``name`` (other events are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail(f"no {name!r} within {timeout:.0f} s")
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is None:
                self.proc.wait(2)
                raise self._fail(f"exited with status {self.proc.returncode} "
                                 f"while waiting for {name!r}")
            if event.get("event") == name:
                return event
            if event.get("event") == "error":
                log(f"{self.name}: {event.get('message')}")

    def request(self, command: str, timeout: float = 10.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"cmd": command}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._fail(f"cannot send {command!r}: the process has gone") from None
        return self.expect(command, timeout)

    def cpu_seconds(self) -> float:
        try:
            times = self.ps.cpu_times()
        except psutil.Error:
            raise self._fail("has exited") from None
        return float(times.user + times.system)

    def close_stdin(self) -> None:
        """Ask the child to shut down (it stops when its stdin closes)."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def stop(self, deadline: float) -> None:
        """Wait for a graceful exit until ``deadline``, then terminate, then kill."""
        self.close_stdin()
        try:
            self.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"{self.name} did not exit: terminating")
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not terminate: killing")
                self.proc.kill()
                self.proc.wait(3)
        self._log.close()


class ProcessGroup:
    """Every child of one scenario, the server first; ``close()`` stops them all."""

    def __init__(self, env: dict[str, str], log_dir: Path, prefix: str) -> None:
        self.env = env
        self.log_dir = log_dir
        self.prefix = prefix
        self.children: list[Child] = []

    def start(self, name: str, module: str, *args: str,
              checkout: Checkout | None = None) -> Child:
        """Start ``python -m benchmarks.<module>``: this checkout's, or ``checkout``'s."""
        env, cwd = (self.env, ROOT) if checkout is None else (checkout.env, checkout.root)
        child = Child(name, module, list(args), env,
                      self.log_dir / f"{self.prefix}-{name}.log", cwd)
        self.children.append(child)
        return child

    def close(self, grace: float = 8.0) -> None:
        """Clients first (in parallel: they leave the room cleanly), then the server."""
        children, self.children = self.children, []
        for stage in (children[1:], children[:1]):
            for child in stage:
                child.close_stdin()
            deadline = time.monotonic() + grace
            for child in stage:
                try:
                    child.stop(deadline)
                except Exception as exc:  # never leave the others running
                    log(f"stopping {child.name}: {type(exc).__name__}: {exc}")
                    with contextlib.suppress(Exception):
                        child.proc.kill()


@contextlib.contextmanager
def process_group(env: dict[str, str], log_dir: Path, prefix: str) -> Iterator[ProcessGroup]:
    group = ProcessGroup(env, log_dir, prefix)
    try:
        yield group
    finally:
        log(f"stopping {prefix} processes")
        group.close()


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class StatsClient:
    """GET /api/v1/stats with an operator token."""

    def __init__(self, port: int) -> None:
        from huizhen.app import token_authority

        self.url = f"http://{HOST}:{port}/api/v1/stats"
        self.token = token_authority(bench_settings(port)).mint(
            room="*", role="operator", name="bench", ttl=3600)

    def get(self, reset: bool = False) -> dict[str, Any]:
        request = urllib.request.Request(self.url + ("?reset=1" if reset else ""),
                                         headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body: dict[str, Any] = json.load(response)
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
            raise ChildError(f"GET {self.url}: {exc}") from None
        return body


def producers(stats: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for room in stats.get("rooms", []) for p in room.get("producers", [])]


def machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def summarise(values: list[float]) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "median": 0.0, "max": 0.0}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def start_subscribers(group: ProcessGroup, mode: str, port: int, count: int,
                      processes: int, stream: str | None, first: int = 0,
                      light: bool = False, name: str = "subscribers") -> list[Child]:
    """Subscriber processes (``light``: ``benchmarks.light_viewers``, huizhen only),
    numbered from ``first``, once every one has connected or failed."""
    children = []
    for i, n in enumerate(split(count, processes)):
        args = ["--port", str(port), "--count", str(n), "--first", str(first)]
        args += ["--concurrency", str(LIGHT_JOIN_CONCURRENCY)] if light else ["--mode", mode]
        if stream is not None:
            args += ["--stream", stream]
        children.append(group.start(f"{name}{i}", "light_viewers" if light else "subscribers",
                                     *args))
        first += n
    failed: list[str] = []
    connected = busy = 0
    for child in children:
        ready = child.expect("ready", 120 + count / 2)
        connected += int(ready["connected"])
        failed += ready["failed"]
        busy += int(ready.get("busyRefusals", 0))
    for line in failed:
        log(f"FAILED {line}")
    log(f"{connected}/{count} subscribers connected"
        + (f" ({busy} joins refused with server-busy, then tried again)" if busy else ""))
    return children


def subscriber_counters(children: list[Child]) -> dict[str, tuple[float, list[int]]]:
    counters: dict[str, tuple[float, list[int]]] = {}
    for child in children:
        reply = child.request("snapshot")
        for index, values in reply["subscribers"].items():
            counters[index] = (float(reply["t"]), values)
    return counters


def wait_for_media(children: list[Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        counters = subscriber_counters(children)
        waiting = [i for i, (_, c) in counters.items() if c[2] == 0]
        if not waiting:
            log(f"frames arriving at all {len(counters)} subscribers")
            return
        if time.monotonic() > deadline:
            log(f"{len(waiting)} subscribers still without frames after {timeout:.0f} s")
            return
        time.sleep(0.5)


# --------------------------------------------------------------------------- measurement


def measure(seconds: float, server: Child, publisher: Child, subscribers: list[Child],
            stats: StatsClient | None) -> dict[str, Any]:
    """One window: CPU of every process, frames at every subscriber, server latency."""
    everyone = [server, publisher, *subscribers]
    pub0 = publisher.request("snapshot")
    subs0 = subscriber_counters(subscribers)
    if stats is not None:
        stats.get(reset=True)
    wall0, busy0 = time.monotonic(), machine_busy_seconds()
    cpu0 = {c.name: c.cpu_seconds() for c in everyone}
    time.sleep(seconds)
    cpu1 = {c.name: c.cpu_seconds() for c in everyone}
    wall1, busy1 = time.monotonic(), machine_busy_seconds()
    end_stats = stats.get() if stats is not None else None
    pub1 = publisher.request("snapshot")
    subs1 = subscriber_counters(subscribers)

    wall = wall1 - wall0
    cpu = {name: 100.0 * (cpu1[name] - cpu0[name]) / wall for name in cpu0}
    per_subscriber = viewer_figures(subs0, subs1)
    n = len(per_subscriber)
    result: dict[str, Any] = {
        "seconds": wall,
        "subscribers": n,
        "serverCpuPercent": cpu[server.name],
        "cpuPerSubscriberPercent": cpu[server.name] / n if n else None,
        "publisherCpuPercent": cpu[publisher.name],
        "subscriberProcessesCpuPercent": sum(cpu[c.name] for c in subscribers),
        "machineCpuPercent": 100.0 * (busy1 - busy0) / wall,
        "machineCores": psutil.cpu_count(),
        "publisherFps": (pub1["frames"] - pub0["frames"]) / max(1e-9, pub1["t"] - pub0["t"]),
        "publisherTargetBitrate": pub1.get("targetBitrate"),
        "fps": summarise([s["fps"] for s in per_subscriber]),
        "mbps": summarise([s["mbps"] for s in per_subscriber]),
        "lossPercent": summarise([s["lossPercent"] for s in per_subscriber]),
        "keyframes": summarise([float(s["keyframes"]) for s in per_subscriber]),
        "perSubscriber": per_subscriber,
    }
    if end_stats is not None:
        result["latency"] = end_stats.get("latency")
        consumers = [c for p in producers(end_stats) for c in p.get("consumers", [])]
        result["serverConsumers"] = len(consumers)
        result["serverConsumersStarted"] = sum(bool(c.get("started")) for c in consumers)
        result["serverRetransmissions"] = sum(int(c.get("retransmissions", 0))
                                              for c in consumers)
        result["serverKeyframeRequestsSent"] = sum(int(p.get("keyframeRequestsSent", 0))
                                                   for p in producers(end_stats))
    return result


def viewer_figures(subs0: dict[str, tuple[float, list[int]]],
                   subs1: dict[str, tuple[float, list[int]]]) -> list[dict[str, Any]]:
    """Per subscriber, between two ``subscriber_counters`` snapshots: fps, Mbit/s,
    packets, keyframes and loss."""
    per_subscriber = []
    for index, (t1, c1) in sorted(subs1.items(), key=lambda item: int(item[0])):
        t0, c0 = subs0.get(index, (t1, [0, 0, 0, 0, 0]))
        dt = max(1e-9, t1 - t0)
        packets, octets, frames, keyframes, expected = (b - a for a, b in zip(c0, c1,
                                                                               strict=True))
        per_subscriber.append({
            "index": int(index), "fps": frames / dt, "mbps": octets * 8 / dt / 1e6,
            "packets": packets, "keyframes": keyframes,
            "lossPercent": 100.0 * max(0, expected - packets) / expected if expected else 100.0,
        })
    return per_subscriber


def wait_for_ingest(stats: StatsClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = producers(stats.get())
        if found and all(p.get("packetsReceived", 0) > 0 for p in found):
            return
        if time.monotonic() > deadline:
            raise ChildError("the server received no media from the publisher")
        time.sleep(0.2)


def start_room(group: ProcessGroup, port: int, grain_bits: int,
               server_args: tuple[str, ...] = (), checkout: Checkout | None = None
               ) -> tuple[Child, StatsClient, Child, str]:
    """The huizhen server (``checkout``'s when given) and the publisher, once the server
    receives its media: (server, stats client, publisher, stream id)."""
    server = group.start("server", "server", "--port", str(port), *server_args,
                         checkout=checkout)
    server.expect("ready", 30)
    stats = StatsClient(port)
    publisher = group.start("publisher", "publisher", "--mode", "huizhen",
                            "--port", str(port), "--grain-bits", str(grain_bits))
    stream = str(publisher.expect("ready", 60)["stream"])
    wait_for_ingest(stats, 20)
    return server, stats, publisher, stream


def subscriber_processes(count: int, limit: int) -> int:
    return max(1, min(limit, math.ceil(count / SUBSCRIBERS_PER_PROCESS)))


def run_huizhen(args: argparse.Namespace, env: dict[str, str], log_dir: Path,
                prefix: str = "huizhen", checkout: Checkout | None = None,
                layer_selection: str | None = None) -> dict[str, Any]:
    """The huizhen scenario; the server is ``checkout``'s when given (clients: ours).
    ``layer_selection`` ("on"/"off"): the server's option (None: its default)."""
    port = free_port()
    result: dict[str, Any] = {}
    with process_group(env, log_dir, prefix) as group:
        where = f" of {checkout.root}" if checkout is not None else ""
        log(f"{prefix}: starting the server{where} on {HOST}:{port}")
        extra = ("--layer-selection", layer_selection) if layer_selection else ()
        server, stats, publisher, stream = start_room(group, port, args.grain_bits, extra,
                                                      checkout)
        log(f"{prefix}: publisher streaming ({stream}); baseline with 0 subscribers: "
            f"{args.baseline_warmup:g} s warm-up, {args.baseline_seconds:g} s window")
        time.sleep(args.baseline_warmup)
        result["baseline"] = measure(args.baseline_seconds, server, publisher, [], None)
        log(f"{prefix}: baseline server CPU {result['baseline']['serverCpuPercent']:.1f}%")
        if args.subscribers > 0:
            log(f"{prefix}: starting {args.subscribers} subscribers")
            processes = (1 if args.light else
                         subscriber_processes(args.subscribers, args.subscriber_processes))
            subs = start_subscribers(group, "huizhen", port, args.subscribers, processes,
                                     stream, light=args.light)
            wait_for_media(subs, 30)
            log(f"{prefix}: {args.warmup:g} s warm-up, {args.seconds:g} s window")
            time.sleep(args.warmup)
            result["forwarding"] = measure(args.seconds, server, publisher, subs, stats)
            f = result["forwarding"]
            log(f"{prefix}: server CPU {f['serverCpuPercent']:.1f}%, "
                f"fps min {f['fps']['min']:.1f}")
    return result


def run_recording(args: argparse.Namespace, env: dict[str, str], log_dir: Path
                  ) -> dict[str, Any]:
    """The same publisher and no subscriber, with the recorder on: its CPU per stream."""
    port = free_port()
    record_dir = tempfile.mkdtemp(prefix="huizhen-bench-rec-")
    try:
        with process_group(env, log_dir, "recording") as group:
            log(f"recording: starting the server with the recorder on {HOST}:{port}")
            server = group.start("server", "server", "--port", str(port),
                                 "--record", record_dir)
            server.expect("ready", 30)
            stats = StatsClient(port)
            publisher = group.start("publisher", "publisher", "--mode", "huizhen",
                                    "--port", str(port), "--grain-bits", str(args.grain_bits))
            publisher.expect("ready", 60)
            wait_for_ingest(stats, 20)
            time.sleep(args.baseline_warmup)
            result = measure(args.recording_seconds, server, publisher, [], None)
            log(f"recording: server CPU {result['serverCpuPercent']:.1f}%")
        files = [p for p in Path(record_dir).rglob("tracks/*") if p.is_file()]
        result["recordedStreams"] = len(files)
        result["recordedBytes"] = sum(p.stat().st_size for p in files)
        return result
    finally:
        shutil.rmtree(record_dir, ignore_errors=True)


def run_relay(args: argparse.Namespace, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    port = free_port()
    with process_group(env, log_dir, "relay") as group:
        log(f"MediaRelay: starting the relay server on {HOST}:{port}")
        server = group.start("server", "relay_server", "--port", str(port))
        server.expect("ready", 30)
        publisher = group.start("publisher", "publisher", "--mode", "relay", "--port", str(port),
                                "--grain-bits", str(args.grain_bits))
        publisher.expect("ready", 60)
        log(f"MediaRelay: starting {args.relay_subscribers} subscribers")
        subs = start_subscribers(
            group, "relay", port, args.relay_subscribers,
            subscriber_processes(args.relay_subscribers, args.subscriber_processes), None)
        wait_for_media(subs, 30)
        log(f"MediaRelay: {args.warmup:g} s warm-up, {args.seconds:g} s window")
        time.sleep(args.warmup)
        result = measure(args.seconds, server, publisher, subs, None)
        log(f"MediaRelay: server CPU {result['serverCpuPercent']:.1f}%, "
            f"fps min {result['fps']['min']:.1f}")
    return {"relay": result}


def run_against(args: argparse.Namespace, env: dict[str, str], log_dir: Path,
                base: Checkout, errors: list[str]) -> list[dict[str, Any]]:
    """The huizhen scenario for ``base``'s server and ours, ``--rounds`` times; per round
    ``{"base": run, "new": run}`` (None for a run that failed, in ``errors``).

    The order alternates (base-new, new-base, base-new, ...): a shared machine's load
    drifts over minutes, and always running one side second would charge it the drift.
    """
    rounds: list[dict[str, Any]] = []
    sides: tuple[tuple[str, Checkout | None], ...] = (("base", base), ("new", None))
    for index in range(1, args.rounds + 1):
        entry: dict[str, Any] = {}
        for side, checkout in (sides if index % 2 else sides[::-1]):
            prefix = f"round{index}-{side}"
            try:
                entry[side] = run_huizhen(args, env, log_dir, prefix, checkout)
            except ChildError as exc:
                entry[side] = None
                errors.append(f"{prefix}: {exc}")
                log(f"{prefix} failed: {exc}")
        rounds.append(entry)
    return rounds


LAYER_TOLERANCE = 0.10  # selection on may cost at most 10 % more CPU per subscriber


def run_layer_rounds(args: argparse.Namespace, env: dict[str, str], log_dir: Path,
                     errors: list[str]) -> list[dict[str, Any]]:
    """The huizhen scenario with layer selection off and on, ``--rounds`` times, in
    alternating order; per round ``{"off": run, "on": run}`` (None for a failed run)."""
    rounds: list[dict[str, Any]] = []
    sides = ("off", "on")
    for index in range(1, args.rounds + 1):
        entry: dict[str, Any] = {}
        for side in (sides if index % 2 else sides[::-1]):
            prefix = f"round{index}-layers-{side}"
            try:
                entry[side] = run_huizhen(args, env, log_dir, prefix, layer_selection=side)
            except ChildError as exc:
                entry[side] = None
                errors.append(f"{prefix}: {exc}")
                log(f"{prefix} failed: {exc}")
        rounds.append(entry)
    return rounds


def _cpu_figures(run: dict[str, Any] | None) -> dict[str, float | None]:
    """CPU per subscriber of one run: above its 0-subscriber baseline, and in all."""
    forwarding = (run or {}).get("forwarding")
    baseline = (run or {}).get("baseline")
    if not forwarding or not forwarding.get("subscribers"):
        return {"aboveBaseline": None, "total": None, "fpsMin": None}
    n = forwarding["subscribers"]
    above = ((forwarding["serverCpuPercent"] - baseline["serverCpuPercent"]) / n
             if baseline else None)
    return {"aboveBaseline": above, "total": forwarding["serverCpuPercent"] / n,
            "fpsMin": forwarding["fps"]["min"]}


def compare_layers(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per side of each figure, the ratios on/off and the verdict (pure)."""
    figures = [{side: _cpu_figures(entry.get(side)) for side in ("off", "on")}
               for entry in rounds]
    medians = {side: {key: ab_comparison.median(f[side][key] for f in figures)
                      for key in ("aboveBaseline", "total", "fpsMin")}
               for side in ("off", "on")}
    ratios = {key: ab_comparison.ratio(medians["on"][key], medians["off"][key])
              for key in ("aboveBaseline", "total")}
    main_ratio = ratios["aboveBaseline"]
    result = ("n/a" if main_ratio is None
              else "PASS" if main_ratio <= 1 + LAYER_TOLERANCE else "FAIL")
    return {"tolerance": LAYER_TOLERANCE, "rounds": figures, "medians": medians,
            "ratios": ratios, "result": result}


def print_layers(report: dict[str, Any]) -> None:
    comparison, cfg = report["comparison"], report["config"]
    print()
    print(f"Layer selection off vs on: {cfg['subscribers']} subscribers, 1 publisher "
          f"{cfg['video']} VP8 at {cfg['bitrate'] / 1e6:g} Mbit/s, {cfg['rounds']} round(s) "
          "in alternating order; CPU in % of ONE core per subscriber stream")
    print(f"{'run':<14} {'CPU/sub above 0':>16} {'CPU/sub':>9} {'fps min':>8}")
    rows = [(f"round {i} {side}", f[side]) for i, f in enumerate(comparison["rounds"], 1)
            for side in ("off", "on")]
    rows += [(f"median {side}", comparison["medians"][side]) for side in ("off", "on")]
    for label, f in rows:
        print(f"{label:<14} {_fmt(f['aboveBaseline'], '.3f', '%'):>16} "
              f"{_fmt(f['total'], '.3f', '%'):>9} {_fmt(f['fpsMin']):>8}")
    ratios = comparison["ratios"]
    print(f"on/off: {_fmt(ratios['aboveBaseline'], '.3f')} above the baseline, "
          f"{_fmt(ratios['total'], '.3f')} in all")
    print(f"{comparison['result']:<4}  server CPU per subscriber with layer selection on is "
          f"within {round(100 * LAYER_TOLERANCE)} % of off: on/off "
          f"{_fmt(ratios['aboveBaseline'], '.3f')} (<= {1 + LAYER_TOLERANCE:.2f})")
    for error in report["errors"]:
        print(f"ERROR {error}")


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def evaluate(huizhen: dict[str, Any] | None, relay: dict[str, Any] | None
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    comparison: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []
    h_cpu = huizhen.get("cpuPerSubscriberPercent") if huizhen else None
    r_cpu = relay.get("cpuPerSubscriberPercent") if relay else None
    ratio = r_cpu / h_cpu if h_cpu and r_cpu else None
    comparison.update(huizhenCpuPerSubscriberPercent=h_cpu,
                      relayCpuPerSubscriberPercent=r_cpu, cpuRatio=ratio)
    latency = (huizhen or {}).get("latency") or {}
    n = huizhen["subscribers"] if huizhen else 0

    def check(name: str, value: float | None, passed: bool, shown: str) -> None:
        checks.append({"check": name, "value": value,
                       "result": "n/a" if value is None else ("PASS" if passed else "FAIL"),
                       "shown": shown})

    min_fps = huizhen["fps"]["min"] if huizhen else None
    check(f"huizhen at {n} subscribers holds ~30 fps at every subscriber "
          f"(min >= {TARGET_MIN_FPS:g})", min_fps,
          min_fps is not None and min_fps >= TARGET_MIN_FPS, f"min {_fmt(min_fps)} fps")
    check(f"huizhen uses <= {TARGET_CPU_PER_SUBSCRIBER:g}% of one core per subscriber stream",
          h_cpu, h_cpu is not None and h_cpu <= TARGET_CPU_PER_SUBSCRIBER,
          _fmt(h_cpu, ".2f", "%"))
    check(f"huizhen uses >= {TARGET_CPU_RATIO:g}x less CPU per subscriber than MediaRelay",
          ratio, ratio is not None and ratio >= TARGET_CPU_RATIO, _fmt(ratio, ".1f", "x"))
    p99 = latency.get("p99Ms") if latency.get("copies") else None
    check(f"huizhen latency p99 <= {TARGET_P99_MS:g} ms", p99,
          p99 is not None and p99 <= TARGET_P99_MS, _fmt(p99, ".2f", " ms"))
    return comparison, checks


def print_report(report: dict[str, Any]) -> None:
    scenarios = report["scenarios"]
    cfg = report["config"]
    print()
    print(f"Forwarding benchmark: 1 publisher {cfg['video']} VP8 at "
          f"{cfg['bitrate'] / 1e6:g} Mbit/s (grain bits {cfg['grainBits']}); "
          f"{cfg['seconds']:g} s windows after "
          f"{cfg['warmup']:g} s warm-up; {report['machine']['cores']} cores shared by "
          "every process")
    print("CPU figures are % of ONE core (the machine has "
          f"{report['machine']['cores'] * 100}%).")
    print()
    header = (f"{'scenario':<20} {'subs':>4} {'server CPU':>10} {'CPU/sub':>8} "
              f"{'fps min/med/max':>17} {'Mbit/s':>6} {'loss':>6} {'lat p50/p99/max ms':>19} "
              f"{'pub fps':>7} {'pub CPU':>7} {'subs CPU':>8} {'machine':>7}")
    print(header)
    print("-" * len(header))
    rows = [("huizhen baseline", scenarios.get("huizhen", {}).get("baseline")),
            ("huizhen", scenarios.get("huizhen", {}).get("forwarding")),
            ("aiortc MediaRelay", scenarios.get("relay"))]
    for label, r in rows:
        if r is None:
            print(f"{label:<20} (not measured)")
            continue
        n = r["subscribers"]
        fps = (f"{r['fps']['min']:.1f}/{r['fps']['median']:.1f}/{r['fps']['max']:.1f}"
               if n else "-")
        lat = r.get("latency") or {}
        lat_text = (f"{lat['p50Ms']:.2f}/{lat['p99Ms']:.2f}/{lat['maxMs']:.1f}"
                    if lat.get("copies") else "-")
        print(f"{label:<20} {n:>4} {r['serverCpuPercent']:>9.1f}% "
              f"{_fmt(r['cpuPerSubscriberPercent'], '.2f', '%'):>8} {fps:>17} "
              f"{(_fmt(r['mbps']['median'], '.2f') if n else '-'):>6} "
              f"{(_fmt(r['lossPercent']['max'], '.1f', '%') if n else '-'):>6} {lat_text:>19} "
              f"{r['publisherFps']:>7.1f} {r['publisherCpuPercent']:>6.1f}% "
              f"{r['subscriberProcessesCpuPercent']:>7.1f}% {r['machineCpuPercent']:>6.0f}%")
    print()
    comparison = report["comparison"]
    h = scenarios.get("huizhen", {}).get("forwarding")
    r = scenarios.get("relay")
    base = scenarios.get("huizhen", {}).get("baseline")
    print(f"CPU per subscriber stream: huizhen "
          f"{_fmt(comparison['huizhenCpuPerSubscriberPercent'], '.2f', '%')} vs MediaRelay "
          f"{_fmt(comparison['relayCpuPerSubscriberPercent'], '.2f', '%')} -> "
          f"{_fmt(comparison['cpuRatio'], '.1f')} x less")
    if h is not None and base is not None and h["subscribers"]:
        marginal = (h["serverCpuPercent"] - base["serverCpuPercent"]) / h["subscribers"]
        print(f"  (huizhen above its 0-subscriber baseline of {base['serverCpuPercent']:.1f}%: "
              f"{marginal:.2f}% per subscriber stream)")
    lat = (h or {}).get("latency") or {}
    if lat.get("copies"):
        print(f"latency p50/p99: {lat['p50Ms']:.2f} / {lat['p99Ms']:.2f} ms "
              f"(max {lat['maxMs']:.1f} ms over {lat['copies']} forwarded copies)")
    else:
        print("latency p50/p99: - (no forwarded copies measured)")
    fps_parts = []
    if h is not None and h["subscribers"]:
        fps_parts.append(f"huizhen {h['fps']['min']:.1f} / {h['fps']['median']:.1f}")
    if r is not None and r["subscribers"]:
        fps_parts.append(f"MediaRelay {r['fps']['min']:.1f} / {r['fps']['median']:.1f}")
    print("fps min/median: " + (", ".join(fps_parts) or "-"))
    for check in report["checks"]:
        print(f"{check['result']:<4}  {check['check']}: {check['shown']}")
    for error in report["errors"]:
        print(f"ERROR {error}")


# --------------------------------------------------------------------------- main


def print_against(report: dict[str, Any]) -> None:
    cfg, against = report["config"], report["against"]
    print()
    print(f"A/B forwarding benchmark: base {against['base']['directory']} "
          f"({against['base']['revision'] or 'no git revision'}) vs new "
          f"{against['new']['directory']} ({against['new']['revision'] or 'no git revision'})")
    print(f"{cfg['subscribers']} subscribers, 1 publisher {cfg['video']} VP8 at "
          f"{cfg['bitrate'] / 1e6:g} Mbit/s; {cfg['seconds']:g} s windows after "
          f"{cfg['warmup']:g} s warm-up; {cfg['rounds']} round(s), base and new in "
          f"alternating order, the same clients; {report['machine']['cores']} cores "
          "shared by every process")
    print("CPU: % of ONE core per subscriber stream, above the same run's 0-subscriber "
          "baseline; latency: the server's hop, over every forwarded copy")
    print()
    for line in ab_comparison.report_lines(report["comparison"]):
        print(line)
    for error in report["errors"]:
        print(f"ERROR {error}")


def recording_vs_viewer(report: dict[str, Any]) -> dict[str, float] | None:
    """Recording CPU per recorded stream against forwarding CPU per viewer, both above the
    same 0-subscriber baseline of this run (pure; None when a scenario is missing)."""
    scenarios = report["scenarios"]
    recording = scenarios.get("recording")
    huizhen = scenarios.get("huizhen", {})
    base, forwarding = huizhen.get("baseline"), huizhen.get("forwarding")
    if not recording or not base or not forwarding or not forwarding["subscribers"]:
        return None
    per_stream = ((recording["serverCpuPercent"] - base["serverCpuPercent"])
                  / max(1, recording["recordedStreams"]))
    per_viewer = ((forwarding["serverCpuPercent"] - base["serverCpuPercent"])
                  / forwarding["subscribers"])
    return {"recordingCpuPerStreamPercent": per_stream,
            "viewerCpuPerViewerPercent": per_viewer,
            "ratio": per_stream / per_viewer if per_viewer > 0 else math.inf}


def print_recording(report: dict[str, Any]) -> None:
    scenarios = report["scenarios"]
    recording = scenarios.get("recording")
    base = scenarios.get("huizhen", {}).get("baseline")
    if not recording or not base:
        return
    streams = max(1, recording["recordedStreams"])
    extra = recording["serverCpuPercent"] - base["serverCpuPercent"]
    print(f"recorder: server CPU {recording['serverCpuPercent']:.1f}% with the recorder on vs "
          f"{base['serverCpuPercent']:.1f}% off (same publisher, 0 subscribers): "
          f"{extra / streams:.2f}% of one core per recorded stream "
          f"({recording['recordedStreams']} stream(s), "
          f"{recording['recordedBytes'] / 1e6:.1f} MB written in the window's run)")
    versus = recording_vs_viewer(report)
    if versus is not None:
        passed = versus["ratio"] <= TARGET_RECORDING_RATIO
        print(f"{'PASS' if passed else 'FAIL'}  recording CPU per stream <= "
              f"{TARGET_RECORDING_RATIO:g}x a viewer's (same run): "
              f"{versus['recordingCpuPerStreamPercent']:.2f}% per recorded stream / "
              f"{versus['viewerCpuPerViewerPercent']:.2f}% per viewer = "
              f"{versus['ratio']:.2f}x")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.forwarding",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=32,
                        help="huizhen subscribers (default 32)")
    parser.add_argument("--relay-subscribers", type=int, default=4,
                        help="MediaRelay subscribers (default 4; 0 skips MediaRelay)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="measurement window (default 20)")
    parser.add_argument("--warmup", type=float, default=8.0,
                        help="wait after the subscribers receive frames (default 8)")
    parser.add_argument("--baseline-seconds", type=float, default=None,
                        help="0-subscriber window (default: half of --seconds, at least 5)")
    parser.add_argument("--baseline-warmup", type=float, default=4.0,
                        help="wait after the publisher connects (default 4)")
    parser.add_argument("--subscriber-processes", type=int, default=2, choices=[1, 2],
                        help="processes the subscribers are spread over (default 2; "
                             f"at most {SUBSCRIBERS_PER_PROCESS} subscribers each are "
                             "preferred)")
    parser.add_argument("--grain-bits", type=int, default=3, choices=range(9),
                        help="random low bits per pixel added to the test pattern so the "
                             "pinned encoder fills ~1.5 Mbit/s (default 3; 0: bare pattern, "
                             "~0.7 Mbit/s)")
    parser.add_argument("--recording-seconds", type=float, default=10.0,
                        help="window of the recorder scenario (0 skips it)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON file (default benchmarks/results/forwarding-<time>.json)")
    parser.add_argument("--against", type=Path, default=None, metavar="DIR",
                        help="A/B mode: run the huizhen scenario for the server of the "
                             "checkout DIR and for this checkout's, interleaved, with this "
                             "checkout's clients (the MediaRelay and recorder scenarios "
                             "are skipped)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="with --against or --layer-selection both: rounds of the two "
                             "sides, in alternating order (default 2)")
    parser.add_argument("--layer-selection", choices=["on", "off", "both"], default="on",
                        help="the server's per-viewer temporal layer selection (default on); "
                             "both: only the huizhen scenario, off and on in alternating "
                             "rounds, and their CPU per subscriber compared")
    parser.add_argument("--light", action="store_true",
                        help="light viewers (benchmarks.light_viewers: real ICE and DTLS, then "
                             "SRTP counted from its headers, 1 %% decrypted and checked), in "
                             "one process per step")
    parser.add_argument("--sizes", default=None, metavar="N,N,...",
                        help="sweep: one server and publisher, viewers added up to 32 and "
                             "then each size, a window per size (only this scenario runs)")
    args = parser.parse_args(argv)
    if args.sizes is not None:
        from benchmarks.viewer_sweep import parse_sizes

        try:
            args.sizes = parse_sizes(args.sizes)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"--sizes: {exc}")
        if args.against is not None or args.layer_selection == "both":
            parser.error("--sizes runs alone (not with --against or --layer-selection both)")
    if args.against is not None and (args.rounds < 1 or args.subscribers < 1):
        parser.error("--against needs --rounds >= 1 and --subscribers >= 1")
    if args.layer_selection == "both" and (args.rounds < 1 or args.subscribers < 1):
        parser.error("--layer-selection both needs --rounds >= 1 and --subscribers >= 1")
    if args.layer_selection == "both" and args.against is not None:
        parser.error("--layer-selection both and --against are separate comparisons")
    if args.baseline_seconds is None:
        args.baseline_seconds = max(5.0, args.seconds / 2)
    if args.subscribers < 0 or args.relay_subscribers < 0 or args.seconds <= 0:
        parser.error("counts must be >= 0 and --seconds > 0")
    return args


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_ab(args: argparse.Namespace, env: dict[str, str], log_dir: Path, base: Checkout,
           report: dict[str, Any], output: Path) -> None:
    """``--against``: the interleaved rounds, their summary, the JSON and the printout."""
    report["against"] = {
        "base": {"directory": str(base.root), "revision": base.revision},
        "new": {"directory": str(ROOT), "revision": revision_of(ROOT)}}
    log(f"A/B: base {base.root} ({base.revision or 'no git revision'}) against this "
        f"checkout, {args.rounds} round(s)")
    try:
        rounds = run_against(args, env, log_dir, base, report["errors"])
    except KeyboardInterrupt:
        log("interrupted: every process has been stopped")
        raise SystemExit(130) from None
    report["scenarios"] = {"rounds": rounds}
    report["comparison"] = ab_comparison.compare(rounds)
    report["checks"] = report["comparison"]["checks"]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print_against(report)
    print(f"\nresults: {output}")
    print(f"process logs: {log_dir}")


def run_layers(args: argparse.Namespace, env: dict[str, str], log_dir: Path,
               report: dict[str, Any], output: Path) -> None:
    """``--layer-selection both``: the rounds, their summary, the JSON and the printout."""
    try:
        rounds = run_layer_rounds(args, env, log_dir, report["errors"])
    except KeyboardInterrupt:
        log("interrupted: every process has been stopped")
        raise SystemExit(130) from None
    report["scenarios"] = {"layerRounds": rounds}
    report["comparison"] = compare_layers(rounds)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print_layers(report)
    print(f"\nresults: {output}")
    print(f"process logs: {log_dir}")


def run_sizes(args: argparse.Namespace, env: dict[str, str], log_dir: Path,
              report: dict[str, Any], output: Path) -> None:
    """``--sizes``: the sweep (benchmarks.viewer_sweep), its JSON and its printout."""
    from benchmarks import viewer_sweep

    report["config"]["sizes"] = args.sizes
    sweep: dict[str, Any] = {}
    report["scenarios"]["sweep"] = sweep
    try:
        viewer_sweep.run_sweep(args, env, log_dir, sweep)
    except KeyboardInterrupt:
        log("interrupted: every process has been stopped")
        raise SystemExit(130) from None
    except RuntimeError as exc:  # ChildError, as the sweep module imported it
        report["errors"].append(f"sweep: {exc}")
        log(f"sweep failed: {exc}")
    sweep["rows"] = viewer_sweep.rows(sweep)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    if sweep["rows"]:
        viewer_sweep.print_sweep(report)
    for error in report["errors"]:
        print(f"ERROR {error}")
    print(f"\nresults: {output}")
    print(f"process logs: {log_dir}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    output = args.output or RESULTS_DIR / f"forwarding-{stamp}.json"
    log_dir = RESULTS_DIR / f"forwarding-{stamp}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # One fresh token secret for every process of this run (the orchestrator mints the
    # operator token with it too).
    os.environ[SECRET_ENV] = secrets.token_urlsafe(32)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))

    base: Checkout | None = None
    if args.against is not None:
        try:
            base = open_checkout(args.against, env)
        except CheckoutError as exc:
            raise SystemExit(f"--against: {exc}") from None

    import aiortc

    report: dict[str, Any] = {
        "benchmark": "forwarding",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {"subscribers": args.subscribers, "relaySubscribers": args.relay_subscribers,
                   "seconds": args.seconds, "warmup": args.warmup,
                   "baselineSeconds": args.baseline_seconds,
                   "baselineWarmup": args.baseline_warmup,
                   "subscriberProcesses": args.subscriber_processes,
                   "video": "640x480 30 fps", "bitrate": TARGET_BITRATE,
                   "grainBits": args.grain_bits, "layerSelection": args.layer_selection,
                   "light": args.light,
                   **({"rounds": args.rounds}
                      if base is not None or args.layer_selection == "both" else {})},
        "machine": {"cores": psutil.cpu_count(), "python": platform.python_version(),
                    "aiortc": aiortc.__version__, "platform": platform.platform()},
        "targets": {"minFps": TARGET_MIN_FPS, "cpuPerSubscriberPercent":
                    TARGET_CPU_PER_SUBSCRIBER, "cpuRatio": TARGET_CPU_RATIO,
                    "p99Ms": TARGET_P99_MS},
        "scenarios": {},
        "errors": [],
        "logs": str(log_dir),
    }
    if base is not None:
        run_ab(args, env, log_dir, base, report, output)
        return
    if args.layer_selection == "both":
        run_layers(args, env, log_dir, report, output)
        return
    if args.sizes is not None:
        run_sizes(args, env, log_dir, report, output)
        return
    try:
        try:
            report["scenarios"]["huizhen"] = run_huizhen(args, env, log_dir,
                                                           layer_selection=args.layer_selection)
        except ChildError as exc:
            report["errors"].append(f"huizhen scenario: {exc}")
            log(f"huizhen scenario failed: {exc}")
        if args.recording_seconds > 0:
            try:
                report["scenarios"]["recording"] = run_recording(args, env, log_dir)
            except ChildError as exc:
                report["errors"].append(f"recording scenario: {exc}")
                log(f"recording scenario failed: {exc}")
        if args.relay_subscribers > 0:
            try:
                report["scenarios"].update(run_relay(args, env, log_dir))
            except ChildError as exc:
                report["errors"].append(f"MediaRelay scenario: {exc}")
                log(f"MediaRelay scenario failed: {exc}")
    except KeyboardInterrupt:
        log("interrupted: every process has been stopped")
        raise SystemExit(130) from None
    comparison, checks = evaluate(report["scenarios"].get("huizhen", {}).get("forwarding"),
                                  report["scenarios"].get("relay"))
    report["comparison"] = comparison
    report["checks"] = checks
    report["recordingVsViewer"] = recording_vs_viewer(report)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print_report(report)
    print_recording(report)
    print(f"\nresults: {output}")
    print(f"process logs: {log_dir}")


if __name__ == "__main__":
    main()
