"""Live forwarding CPU per viewer without and during a teaching-video render.

    python -m benchmarks.vod_live_impact [--subscribers 8] [--seconds 10] [--rounds 1]
                                         [--render-threads 0]

Runs the real server (``benchmarks.server``), one publisher (640x480 30 fps VP8) and N
subscribers in their own processes, as ``benchmarks.forwarding`` does, and generates a
two-party recording (``recorder.vod_sample``). Then it measures windows of the server's
CPU, alternating "without" and "with" a render (without, with, with, without for one
round, so a load that drifts falls on both): "with" keeps a render running for the whole
window, ``python -m recorder.vod DIR --nice 10`` as ``recorder.http`` starts it, started
again whenever one ends. The 0-viewer baseline (publisher only) is measured the same
way, with and without a render.

Printed: server CPU (% of one core), CPU per viewer above the 0-viewer baseline of the
same state, fps at the viewers, the machine's CPU, the render's CPU (the render
processes reaped during the window; the window's last render counts up to where it was
stopped, plus its 1.5 s start), and the ratio with / without of the CPU per viewer
(target: at most 1.10). A report: it never asserts.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import SECRET_ENV
from benchmarks.forwarding import (
    RESULTS_DIR,
    ROOT,
    Child,
    StatsClient,
    free_port,
    log,
    measure,
    process_group,
    start_subscribers,
    subscriber_processes,
    wait_for_ingest,
    wait_for_media,
)
from huizhen.testpattern import pattern_frame
from recorder.vod_sample import SampleParty, write_sample_recording

TARGET_RATIO = 1.10


class RenderLoop:
    """Keeps ``python -m recorder.vod DIR --nice 10`` running until ``stop()``."""

    def __init__(self, directory: Path, env: dict[str, str], threads: int) -> None:
        self.directory = directory
        self.env = env
        self.threads = threads
        self.renders = 0
        self._stop = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._run, name="render-loop", daemon=True)

    def _run(self) -> None:
        command = [sys.executable, "-m", "recorder.vod", str(self.directory), "--nice", "10"]
        if self.threads:
            command += ["--threads", str(self.threads)]
        while not self._stop.is_set():
            self._process = subprocess.Popen(command, cwd=ROOT, env=self.env,
                                             stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
            if self._process.wait() == 0:
                self.renders += 1
            elif not self._stop.is_set():
                log(f"render exited with {self._process.returncode}")
                self._stop.wait(1.0)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
        self._thread.join(15)


@contextmanager
def rendering(on: bool, directory: Path, env: dict[str, str],
              threads: int) -> Iterator[RenderLoop | None]:
    if not on:
        yield None
        return
    loop = RenderLoop(directory, env, threads)
    loop.start()
    time.sleep(1.5)  # past the render's start-up (imports, opening the inputs)
    try:
        yield loop
    finally:
        loop.stop()


def window(args: argparse.Namespace, on: bool, recording: Path, env: dict[str, str],
           server: Child, publisher: Child, subscribers: list[Child],
           stats: StatsClient | None, seconds: float) -> dict[str, Any]:
    reaped = _children_cpu()
    with rendering(on, recording, env, args.render_threads) as loop:
        result = measure(seconds, server, publisher, subscribers, stats)
        result["renders"] = loop.renders if loop is not None else 0
    # Render processes are the only children reaped meanwhile (the others live on).
    result["renderCpuPercent"] = 100.0 * (_children_cpu() - reaped) / result["seconds"]
    result["render"] = on
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace, env: dict[str, str], log_dir: Path,
        recording: Path) -> dict[str, Any]:
    port = free_port()
    order = [False, True, True, False] * args.rounds
    result: dict[str, Any] = {"baseline": [], "viewers": []}
    with process_group(env, log_dir, "live") as group:
        server = group.start("server", "server", "--port", str(port))
        server.expect("ready", 30)
        stats = StatsClient(port)
        publisher = group.start("publisher", "publisher", "--mode", "huizhen",
                                "--port", str(port), "--grain-bits", "3")
        stream = str(publisher.expect("ready", 60)["stream"])
        wait_for_ingest(stats, 20)
        time.sleep(args.warmup)
        for on in (False, True):
            log(f"0 viewers, render {'on' if on else 'off'}: {args.baseline_seconds:g} s")
            result["baseline"].append(window(args, on, recording, env, server, publisher, [],
                                             None, args.baseline_seconds))
        subs = start_subscribers(group, "huizhen", port, args.subscribers,
                                 subscriber_processes(args.subscribers, 2), stream)
        wait_for_media(subs, 30)
        time.sleep(args.warmup)
        for on in order:
            log(f"{args.subscribers} viewers, render {'on' if on else 'off'}: "
                f"{args.seconds:g} s")
            result["viewers"].append(window(args, on, recording, env, server, publisher,
                                            subs, stats, args.seconds))
    return result


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    base = {b["render"]: b["serverCpuPercent"] for b in result["baseline"]}
    print(f"\nLive forwarding during a teaching-video render: 1 publisher (640x480 VP8 30 fps), "
          f"{args.subscribers} viewers, {os.cpu_count()} CPUs, render "
          f"'python -m recorder.vod --nice 10'"
          f"{f' --threads {args.render_threads}' if args.render_threads else ''}")
    for b in result["baseline"]:
        print(f"0 viewers, render {'on ' if b['render'] else 'off'}: server "
              f"{b['serverCpuPercent']:6.1f}% of a core, machine {b['machineCpuPercent']:6.1f}%,"
              f" render {b['renderCpuPercent']:5.1f}% ({b['renders']} finished)")
    per_viewer: dict[bool, list[float]] = {False: [], True: []}
    for w in result["viewers"]:
        above = (w["serverCpuPercent"] - base[w["render"]]) / args.subscribers
        per_viewer[w["render"]].append(above)
        print(f"{args.subscribers} viewers, render {'on ' if w['render'] else 'off'}: server "
              f"{w['serverCpuPercent']:6.1f}%, per viewer above baseline {above:5.2f}%, "
              f"fps min {w['fps']['min']:5.1f}, machine {w['machineCpuPercent']:6.1f}%, "
              f"render {w['renderCpuPercent']:5.1f}% ({w['renders']} finished)")
    without = statistics.median(per_viewer[False])
    with_render = statistics.median(per_viewer[True])
    print(f"\nCPU per viewer (above the 0-viewer baseline, median): without a render "
          f"{without:.2f}%, during a render {with_render:.2f}% of a core")
    if without > 0:
        ratio = with_render / without
        print(f"ratio during / without: {ratio:.2f} (target <= {TARGET_RATIO:.2f}: "
              f"{'PASS' if ratio <= TARGET_RATIO else 'FAIL'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="each measured window")
    parser.add_argument("--baseline-seconds", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of (without, with, with, without)")
    parser.add_argument("--recording-seconds", type=float, default=20.0,
                        help="length of the generated recording that is rendered")
    parser.add_argument("--render-threads", type=int, default=0,
                        help="x264 threads of the render (0: its default)")
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = RESULTS_DIR / f"vod-live-impact-{stamp}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ[SECRET_ENV] = secrets.token_urlsafe(32)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    root = Path(tempfile.mkdtemp(prefix="vod-live-"))
    try:
        log(f"generating a {args.recording_seconds:g} s two-party recording")
        recording = write_sample_recording(root, "bench", [
            SampleParty("p-ward", "ward", tone_hz=440.0),
            SampleParty("p-expert", "expert", video_offset=5000, start_s=2.0, tone_hz=660.0),
        ], duration=args.recording_seconds, width=640, height=480, fps=30,
            picture=pattern_frame)
        result = run(args, env, log_dir, recording)
    except KeyboardInterrupt:
        log("interrupted: every process has been stopped")
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(args, result)
    print(f"process logs: {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
