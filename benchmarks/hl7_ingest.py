"""HL7 ingest benchmark: ORU^R01 messages per second acknowledged AA after a durable commit.

    python -m benchmarks.hl7_ingest [--clients 8] [--seconds 10] [--baseline-seconds 5]

One run measures, on this machine and one after the other:

1. durable: ``HL7Listener`` + ``SampleStore`` (SQLite in a temp dir, WAL and
   synchronous=FULL: every ACK follows an fsync'd commit). N clients in a separate
   process, each on one persistent MLLP connection, send the next message as soon as
   the previous one is acknowledged (as monitors do), for ``--seconds``.
2. baseline "listener, null sink": the same listener and clients, a sink that
   stores nothing: MLLP + decoding + ACK, the ceiling without storage.
3. baseline "SampleStore.store direct": N concurrent callers of ``store()`` with the
   same samples, no network and no parsing.
4. baseline "raw sqlite3 commits": one thread, the same rows per transaction, same
   PRAGMAs, plain ``sqlite3``: the disk's fsync rate is the ceiling of 1 and 3.

It prints messages/s and samples/s, the clients' send->ACK latency (p50/p99) and the
listener process's CPU, and the ratios of the durable rate to the baselines
(``--output FILE`` also writes them as JSON). A report: it never asserts, the exit
status is 0 whatever the numbers. Everything runs on 127.0.0.1; the clients share the
machine's cores with the listener, so run it on a quiet machine.

For other measurements (e.g. monitor -> room -> browser latency) reuse
``run_ingest(sink, on_stored=...)``: it starts a listener with your sink and
callback, drives the clients and returns an ``IngestResult``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from devices.hl7.listener import HL7Listener, ListenerConfig, StoredCallback
from devices.hl7.oru import decode_oru
from devices.hl7.simulator import MonitorProfile, MonitorSimulator
from devices.hl7.storage import SampleStore
from devices.vitals import SampleSink, VitalSample

HOST = "127.0.0.1"
MESSAGES_PER_CLIENT = 64


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- messages and clients ------------------------------------------------------------------

def make_messages(client: int, count: int = MESSAGES_PER_CLIENT,
                  interval: float = 1.0) -> list[bytes]:
    """``count`` realistic ORU^R01 of one monitor: 5 numerics (+NIBP in the first) and
    one second of 100 Hz pleth (one NA OBX + its sample rate), like the simulator."""
    profile = MonitorProfile(device_id=f"0012A1FFFE{client:06X}",
                             patient_id=f"BENCH{client:04d}")
    simulator = MonitorSimulator(HOST, 0, interval=interval, profile=profile, seed=client)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return [simulator.next_message(start + timedelta(seconds=i * interval))[1]
            for i in range(count)]


@dataclass
class ClientResult:
    acked: int = 0
    """AA acknowledgements received inside the window."""
    not_acked: int = 0
    """AE/AR received inside the window."""
    latencies: list[float] = field(default_factory=list)
    """Send -> ACK seconds of the messages acknowledged inside the window."""


async def drive_clients(host: str, port: int, clients: int, seconds: float,
                        warmup: float) -> ClientResult:
    """N persistent MLLP connections, stop-and-wait, counting ACKs inside the window."""
    loop = asyncio.get_running_loop()
    window_start = loop.time() + warmup
    window_end = window_start + seconds
    result = ClientResult()

    async def client(number: int) -> None:
        messages = make_messages(number)
        reader, writer = await asyncio.open_connection(host, port)
        sent = 0
        try:
            while loop.time() < window_end:
                message = messages[sent % len(messages)]
                control = message.split(b"|", 10)[9]
                unique = b"%08d%06d" % (number, sent)
                message = message.replace(b"|" + control + b"|", b"|" + unique[-len(control):]
                                          + b"|", 1)
                began = loop.time()
                writer.write(b"\x0b" + message + b"\x1c\r")
                await writer.drain()
                ack = await reader.readuntil(b"\x1c\r")
                done = loop.time()
                sent += 1
                if window_start <= done < window_end:
                    if b"\rMSA|AA|" in ack:
                        result.acked += 1
                        result.latencies.append(done - began)
                    else:
                        result.not_acked += 1
        finally:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return result


def _client_process(port: int, clients: int, seconds: float, warmup: float,
                    pipe: Connection) -> None:
    result = asyncio.run(drive_clients(HOST, port, clients, seconds, warmup))
    pipe.send(asdict(result))
    pipe.close()


# --- one listener run ----------------------------------------------------------------------

@dataclass
class IngestResult:
    name: str
    seconds: float
    messages: int
    samples: int
    errors: int
    messages_per_s: float
    samples_per_s: float
    ack_p50_ms: float | None
    ack_p99_ms: float | None
    listener_cpu_percent: float
    """CPU of this process (listener, store threads) over the window, % of one core."""


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_ingest(sink: SampleSink, *, name: str = "ingest", clients: int = 8,
                     seconds: float = 10.0, warmup: float = 1.0,
                     on_stored: StoredCallback | None = None) -> IngestResult:
    """Start a listener with ``sink`` (and ``on_stored``), drive ``clients`` from a
    separate process for ``warmup`` + ``seconds``, and measure the window."""
    listener = HL7Listener(sink, ListenerConfig(host=HOST, port=0,
                                                max_connections=max(64, clients)),
                           on_stored=on_stored)
    await listener.start()
    parent, child = multiprocessing.get_context("spawn").Pipe(duplex=False)
    process = multiprocessing.get_context("spawn").Process(
        target=_client_process, args=(listener.port, clients, seconds, warmup, child),
        daemon=True)
    try:
        process.start()
        child.close()
        await asyncio.sleep(warmup + 0.5)  # the client process takes ~0.5 s to start
        cpu0, wall0, samples0 = time.process_time(), time.monotonic(), \
            listener.stats.samples_stored
        await asyncio.sleep(seconds)
        cpu1, wall1, samples1 = time.process_time(), time.monotonic(), \
            listener.stats.samples_stored
        loop = asyncio.get_running_loop()
        client = ClientResult(**await loop.run_in_executor(None, parent.recv))
    finally:
        await loop.run_in_executor(None, process.join, 30)
        if process.is_alive():
            process.kill()
        await listener.stop(grace=2.0)
    wall = wall1 - wall0
    return IngestResult(
        name=name, seconds=seconds, messages=client.acked,
        samples=samples1 - samples0, errors=client.not_acked,
        messages_per_s=client.acked / seconds, samples_per_s=(samples1 - samples0) / wall,
        ack_p50_ms=_ms(_percentile(client.latencies, 0.5)),
        ack_p99_ms=_ms(_percentile(client.latencies, 0.99)),
        listener_cpu_percent=100.0 * (cpu1 - cpu0) / wall)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 2)


# --- baselines -----------------------------------------------------------------------------

async def null_sink(samples: Sequence[VitalSample]) -> None:
    """Stores nothing: the listener's cost without storage."""


async def store_direct(store: SampleStore, batches: list[list[VitalSample]], callers: int,
                       seconds: float) -> tuple[float, float]:
    """``callers`` concurrent loops of ``store.store(batch)``: (calls/s, samples/s)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    counts = [0, 0]

    async def caller(offset: int) -> None:
        n = offset
        while loop.time() < end:
            batch = batches[n % len(batches)]
            await store.store(batch)
            counts[0] += 1
            counts[1] += len(batch)
            n += 1

    began = loop.time()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    elapsed = loop.time() - began
    return counts[0] / elapsed, counts[1] / elapsed


def raw_sqlite_commits(path: Path, rows_per_commit: int, seconds: float) -> float:
    """Transactions/s of plain sqlite3 (WAL, synchronous=FULL), ``rows_per_commit`` each."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE samples (id INTEGER PRIMARY KEY, device_id TEXT, "
                           "patient_id TEXT, code TEXT, value REAL, \"values\" TEXT, "
                           "observed_at TEXT, received_at TEXT)")
        row = ("0012A1FFFE000001", "BENCH0001", "150456", 97.0, None,
               "2024-01-01 00:00:00.000000", "2024-01-01 00:00:00.000000")
        commits = 0
        began = time.monotonic()
        end = began + seconds
        while time.monotonic() < end:
            connection.executemany(
                "INSERT INTO samples (device_id, patient_id, code, value, \"values\", "
                "observed_at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [row] * rows_per_commit)
            connection.commit()
            commits += 1
        return commits / (time.monotonic() - began)
    finally:
        connection.close()


# --- the report ----------------------------------------------------------------------------

def _row(result: IngestResult) -> str:
    p50 = "-" if result.ack_p50_ms is None else f"{result.ack_p50_ms:.1f}"
    p99 = "-" if result.ack_p99_ms is None else f"{result.ack_p99_ms:.1f}"
    return (f"{result.name:<34} {result.messages_per_s:>9.1f} {result.samples_per_s:>10.1f} "
            f"{p50:>8} {p99:>8} {result.listener_cpu_percent:>7.0f}% {result.errors:>6}")


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    samples_per_message = len(decode_oru(make_messages(0, 2)[1]).samples)
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(), "clients": args.clients,
        "seconds": args.seconds, "baseline_seconds": args.baseline_seconds,
        "samples_per_message": samples_per_message, "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="hl7-ingest-", dir=args.tmp_dir) as tmp:
        log(f"durable: SQLite in {tmp}, {args.clients} clients, {args.seconds:g} s ...")
        async with SampleStore(data_dir=tmp) as store:
            durability = await store.durability()
            durable = await run_ingest(store.store, name="durable (SQLite WAL, FULL)",
                                       clients=args.clients, seconds=args.seconds,
                                       warmup=args.warmup)
            stored_rows = len(await store.samples_since(limit=10_000_000))
        log(f"baseline: listener with a null sink, {args.baseline_seconds:g} s ...")
        null = await run_ingest(null_sink, name="baseline: listener, null sink",
                                clients=args.clients, seconds=args.baseline_seconds,
                                warmup=args.warmup)
        log(f"baseline: SampleStore.store direct, {args.baseline_seconds:g} s ...")
        batches = [list(decode_oru(m).samples) for m in make_messages(1, 16)]
        async with SampleStore(data_dir=Path(tmp) / "direct") as direct_store:
            cpu0 = time.process_time()
            calls, direct_samples = await store_direct(direct_store, batches, args.clients,
                                                       args.baseline_seconds)
            direct_cpu = 100.0 * (time.process_time() - cpu0) / args.baseline_seconds
        log(f"baseline: raw sqlite3 commits, {args.baseline_seconds:g} s ...")
        commits = await asyncio.get_running_loop().run_in_executor(
            None, raw_sqlite_commits, Path(tmp) / "raw.sqlite3", samples_per_message,
            args.baseline_seconds)
    report.update(durable=asdict(durable), null_sink=asdict(null), durability=durability,
                  stored_rows=stored_rows,
                  store_direct={"calls_per_s": calls, "samples_per_s": direct_samples,
                                "cpu_percent": direct_cpu},
                  raw_sqlite_commits_per_s=commits)

    print()
    print(f"HL7 ORU^R01 ingest, {args.clients} clients (stop-and-wait), "
          f"{samples_per_message} samples/message, {os.cpu_count()} CPUs")
    print(f"store durability: {', '.join(f'{k}={v}' for k, v in durability.items())}")
    print()
    print(f"{'scenario':<34} {'msg/s':>9} {'samples/s':>10} {'ack p50':>8} {'ack p99':>8} "
          f"{'CPU':>8} {'errors':>6}")
    print(_row(durable))
    print(_row(null))
    print(f"{'baseline: SampleStore.store direct':<34} {calls:>9.1f} {direct_samples:>10.1f} "
          f"{'-':>8} {'-':>8} {direct_cpu:>7.0f}%")
    print(f"{'baseline: raw sqlite3 commits':<34} {commits:>9.1f} "
          f"{commits * samples_per_message:>10.1f}")
    print("(ack in ms; CPU: the listener process over the window, % of one core)")
    print()
    print(f"durable messages/s: {durable.messages_per_s:.1f} "
          f"({durable.samples_per_s:.0f} samples/s), every ACK after an fsync'd commit")
    for label, base in (("listener with a null sink", null.messages_per_s),
                        ("SampleStore.store direct", calls), ("raw sqlite3 commits", commits)):
        ratio = durable.messages_per_s / base if base else float("nan")
        print(f"  durable / {label}: {ratio:.2f}")
    print(f"rows stored in the durable run: {stored_rows}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hl7_ingest",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--tmp-dir", default=None,
                        help="where the SQLite files go (default: the system temp dir; "
                             "its disk decides the fsync rate)")
    parser.add_argument("--output", default=None,
                        help="also write the numbers as JSON to this file (e.g. "
                             "benchmarks/results/hl7-ingest.json)")
    args = parser.parse_args(argv)
    report = asyncio.run(benchmark(args))
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2))
        log(f"report: {output}")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "main"
    raise SystemExit(main())
