"""HL7 ingest benchmark: ORU^R01 messages per CPU-second of the server, every ACK after
the fsync'd commit that covers it.

    python -m benchmarks.hl7_ingest [--clients 8] [--windows 8,1] [--seconds 10]

One run measures, on this machine and one after the other:

1. durable: the server (``HL7Listener`` + ``SampleStore``, SQLite in a temp dir with
   WAL and synchronous=FULL, group commit) in its own process; ``--clients`` MLLP
   connections from another process, each sending 4-OBX ORU^R01 messages continuously,
   once per ``--windows`` entry: messages in flight per connection (8: a gateway or
   central station that pipelines, the headline figure; 1: stop-and-wait, as a
   bedside monitor does). The server process's CPU time (user + system, all its
   threads, read with psutil) over the measuring window gives **messages per second
   per core**.
2. baseline parse-only: ``read_header`` + ``decode_oru`` of the same messages in a
   loop (``benchmarks.hl7_parse.parse_only_rate`` when it exists).
3. baseline store-only: group-committed ``SampleStore.store_message`` of the decoded
   messages from as many concurrent callers as there are messages in flight, no
   parsing, no network: messages per CPU-second of this process.

"ACK after fsync", checked, not assumed: each AA carries in its own MSH-10 the number
of the group commit that covered the message (``...B<n>``); the server records when
each commit returned (``time.monotonic``, one clock for both processes on Linux) and
the clients when each AA arrived. Every AA must arrive after its commit returned and
name a commit that happened; the run prints commits, ACKs and violations (0).

A report: the exit status is 0 whatever the numbers (``--check`` makes it 1 when the
rate is below 5,000 messages/s per core or an ACK preceded its commit).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import psutil

from devices.hl7.listener import HL7Listener, ListenerConfig
from devices.hl7.oru import decode_oru, read_header
from devices.hl7.storage import MessageKey, SampleStore

HOST = "127.0.0.1"
TARGET_PER_CORE = 5000.0
_BATCH = re.compile(rb"\|ACK[^|\r]*\|[^|\r]*B(\d+)\|")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- messages --------------------------------------------------------------------------------

def four_obx_message(client: int, sequence: int) -> bytes:
    """A 4-OBX ORU^R01 (HR, SpO2, RR, temperature) of bed ``client``, control id unique."""
    device = f"0012A1FFFE{client:06X}"
    when = f"20240601{(sequence // 3600) % 24:02d}{(sequence // 60) % 60:02d}" \
           f"{sequence % 60:02d}+0800"

    def obx(n: int, code: str, value: str, unit: str) -> str:
        return f"OBX|{n}|NM|{code}|1.1.1.{n}|{value}|{unit}|||||R|||{when}||||{device}^EUI-64"

    return ("\r".join([
        f"MSH|^~\\&|MON^{device}^EUI-64|ICU3|HUIZHEN||{when}||ORU^R01^ORU_R01|"
        f"C{client:03d}S{sequence:09d}|P|2.6|||NE|AL||UNICODE UTF-8",
        f"PID|||BENCH{client:04d}^^^HOSP^MR",
        "PV1||I|ICU3^^12",
        f"OBR|1|{device}{sequence}^MON|{device}{sequence}^MON|182777000^monitoring of "
        f"patient^SCT|||{when}",
        obx(1, "147842^MDC_ECG_HEART_RATE^MDC", str(60 + sequence % 40),
            "264864^MDC_DIM_BEAT_PER_MIN^MDC"),
        obx(2, "150456^MDC_PULS_OXIM_SAT_O2^MDC", str(90 + sequence % 10),
            "262688^MDC_DIM_PERCENT^MDC"),
        obx(3, "151562^MDC_RESP_RATE^MDC", str(12 + sequence % 8),
            "264928^MDC_DIM_RESP_PER_MIN^MDC"),
        obx(4, "150344^MDC_TEMP^MDC", f"{36 + sequence % 20 / 10:.1f}",
            "268192^MDC_DIM_DEGC^MDC"),
    ]) + "\r").encode()


def control_id_of(message: bytes) -> str:
    return message.split(b"|", 10)[9].decode()


def ack_batch(ack: bytes) -> int:
    """The group commit number an AA names in its own MSH-10 (0 if none)."""
    match = _BATCH.search(ack)
    return int(match.group(1)) if match else 0


# --- the server process ----------------------------------------------------------------------

def serve(data_dir: str, clients: int, pipe: Connection | None = None,
          port_file: str | None = None, decode_workers: int = 2) -> None:
    """Run listener + store until told to stop (``pipe``) or killed (``port_file``)."""
    asyncio.run(_serve(data_dir, clients, pipe, port_file, decode_workers))


async def _serve(data_dir: str, clients: int, pipe: Connection | None,
                 port_file: str | None, decode_workers: int) -> None:
    commit_times: list[float] = []

    def committed(number: int, _messages: int) -> None:
        commit_times.append(time.monotonic())
        assert len(commit_times) == number

    store = SampleStore(data_dir=data_dir, on_commit=committed)
    await store.open()
    listener = HL7Listener(store, ListenerConfig(
        host=HOST, port=0, max_connections=max(64, clients * 2),
        max_connections_per_address=max(8, clients * 2), decode_workers=decode_workers))
    await listener.start()
    await listener.warm_up()
    if port_file is not None:
        Path(port_file + ".tmp").write_text(str(listener.port))
        os.replace(port_file + ".tmp", port_file)
    if pipe is None:
        await asyncio.Event().wait()  # until killed
        return
    pipe.send(listener.port)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, pipe.recv)  # "stop"
    await listener.stop(grace=2.0)
    durability = await store.durability()
    rows = len(await store.samples_since(limit=100_000_000))
    messages = await store.message_count()
    await store.close()
    pipe.send({"commit_times": commit_times, "store": asdict(store.stats),
               "listener": asdict(listener.stats), "durability": durability,
               "rows": rows, "messages": messages})


# --- the clients process ---------------------------------------------------------------------

@dataclass
class ClientResult:
    acked: int = 0
    """AA received inside the window."""
    not_acked: int = 0
    latencies: list[float] = field(default_factory=list)
    """Send -> ACK seconds inside the window."""
    acks: list[tuple[int, float]] = field(default_factory=list)
    """(commit number, arrival time) of every AA, inside the window or not."""
    acked_ids: list[str] = field(default_factory=list)
    """Control ids of every message acknowledged AA."""


async def drive_clients(port: int, clients: int, window: int, seconds: float, warmup: float,
                        pipe: Connection | None = None, keep_ids: bool = False
                        ) -> ClientResult:
    """``clients`` persistent connections, ``window`` messages in flight on each."""
    loop = asyncio.get_running_loop()
    window_start = loop.time() + warmup
    window_end = window_start + seconds
    result = ClientResult()

    async def marks() -> None:
        await asyncio.sleep(max(0.0, window_start - loop.time()))
        if pipe is not None:
            pipe.send("start")
        await asyncio.sleep(max(0.0, window_end - loop.time()))
        if pipe is not None:
            pipe.send("end")

    async def client(number: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        in_flight: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        slots = asyncio.Semaphore(window)
        sequence = 0

        async def send() -> None:
            nonlocal sequence
            while loop.time() < window_end:
                await slots.acquire()
                message = four_obx_message(number, sequence)
                sequence += 1
                in_flight.put_nowait((loop.time(), control_id_of(message)))
                writer.write(b"\x0b" + message + b"\x1c\r")
                await writer.drain()
            in_flight.put_nowait((0.0, ""))

        sender = asyncio.create_task(send())
        try:
            while True:
                began, control_id = await in_flight.get()
                if not control_id:
                    break
                ack = await reader.readuntil(b"\x1c\r")
                done = loop.time()
                slots.release()
                if b"\rMSA|AA|" in ack:
                    result.acks.append((ack_batch(ack), time.monotonic()))
                    if keep_ids:
                        result.acked_ids.append(control_id)
                    if window_start <= done < window_end:
                        result.acked += 1
                        result.latencies.append(done - began)
                elif window_start <= done < window_end:
                    result.not_acked += 1
        finally:
            sender.cancel()
            writer.close()

    await asyncio.gather(marks(), *(client(i) for i in range(clients)))
    return result


def _client_process(port: int, clients: int, window: int, seconds: float, warmup: float,
                    pipe: Connection) -> None:
    result = asyncio.run(drive_clients(port, clients, window, seconds, warmup, pipe))
    pipe.send(asdict(result))
    pipe.close()


# --- the durable run -------------------------------------------------------------------------

@dataclass
class DurableResult:
    messages: int
    errors: int
    seconds: float
    messages_per_s: float
    server_cpu_s: float
    server_system_s: float
    """Of which in the kernel (sockets, fsync)."""
    messages_per_core_s: float
    ack_p50_ms: float | None
    ack_p99_ms: float | None
    commits: int
    messages_per_commit: float
    acks_total: int
    acks_before_commit: int
    acks_naming_no_commit: int
    rows: int
    stored_messages: int
    durability: dict[str, str]


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 2)


def run_durable(data_dir: str, clients: int, window: int, seconds: float,
                warmup: float) -> DurableResult:
    context = multiprocessing.get_context("spawn")
    server_end, server_child = context.Pipe()
    server = context.Process(target=serve, args=(data_dir, clients, server_child))
    server.start()
    port = server_end.recv()
    clients_end, clients_child = context.Pipe()
    driver = context.Process(target=_client_process,
                             args=(port, clients, window, seconds, warmup, clients_child),
                             daemon=True)
    driver.start()
    process = psutil.Process(server.pid)
    assert clients_end.recv() == "start"
    cpu0, wall0 = process.cpu_times(), time.monotonic()
    assert clients_end.recv() == "end"
    cpu1, wall1 = process.cpu_times(), time.monotonic()
    client = ClientResult(**clients_end.recv())
    driver.join(30)
    server_end.send("stop")
    report = server_end.recv()
    server.join(30)
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    commit_times: list[float] = report["commit_times"]
    before = sum(1 for batch, arrived in client.acks
                 if 0 < batch <= len(commit_times) and arrived < commit_times[batch - 1])
    unnamed = sum(1 for batch, _ in client.acks if not 0 < batch <= len(commit_times))
    store = report["store"]
    return DurableResult(
        messages=client.acked, errors=client.not_acked, seconds=wall1 - wall0,
        messages_per_s=client.acked / (wall1 - wall0), server_cpu_s=cpu,
        server_system_s=cpu1.system - cpu0.system,
        messages_per_core_s=client.acked / cpu if cpu else float("nan"),
        ack_p50_ms=_ms(percentile(client.latencies, 0.5)),
        ack_p99_ms=_ms(percentile(client.latencies, 0.99)),
        commits=store["commits"],
        messages_per_commit=(store["messages"] + store["duplicates"]) / max(1, store["commits"]),
        acks_total=len(client.acks), acks_before_commit=before, acks_naming_no_commit=unnamed,
        rows=report["rows"], stored_messages=report["messages"],
        durability=report["durability"])


# --- baselines -------------------------------------------------------------------------------

def parse_only(payloads: Sequence[bytes], seconds: float) -> tuple[float, str]:
    """Messages decoded per CPU-second (one core), and where the figure comes from."""
    try:
        from benchmarks.hl7_parse import parse_only_rate  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        return float(parse_only_rate(payloads, seconds)), "benchmarks.hl7_parse"
    count, cpu0 = 0, time.process_time()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for payload in payloads:
            decode_oru(payload, None, read_header(payload))
        count += len(payloads)
    return count / (time.process_time() - cpu0), "read_header + decode_oru loop"


async def store_only(data_dir: str, payloads: Sequence[bytes], callers: int,
                     seconds: float) -> tuple[float, float, int]:
    """Group-committed ``store_message`` from ``callers`` concurrent callers:
    (messages/s, messages per CPU-second of this process, commits)."""
    decoded = [decode_oru(p) for p in payloads]
    async with SampleStore(data_dir=data_dir) as store:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        count = 0

        async def caller(number: int) -> None:
            nonlocal count
            sequence = 0
            while loop.time() < end:
                message = decoded[sequence % len(decoded)]
                header = message.header
                await store.store_message(
                    MessageKey(header.sending_application, header.sending_facility,
                               f"{number}-{sequence}"), message.samples, message.alarms)
                sequence += 1
                count += 1

        cpu0, wall0 = time.process_time(), loop.time()
        await asyncio.gather(*(caller(i) for i in range(callers)))
        cpu, wall = time.process_time() - cpu0, loop.time() - wall0
        return count / wall, count / cpu, store.stats.commits


# --- the report ------------------------------------------------------------------------------

def benchmark(args: argparse.Namespace) -> tuple[DurableResult, dict[str, float]]:
    payloads = [four_obx_message(c, s) for c in range(8) for s in range(8)]
    samples = len(decode_oru(payloads[0]).samples)
    windows = [int(w) for w in str(args.windows).split(",")]
    runs: list[tuple[int, DurableResult]] = []
    with tempfile.TemporaryDirectory(prefix="hl7-ingest-", dir=args.tmp_dir) as tmp:
        for window in windows:
            log(f"durable: server process, SQLite in {tmp}, {args.clients} connections x "
                f"{window} in flight, {args.seconds:g} s ...")
            runs.append((window, run_durable(str(Path(tmp) / f"durable-{window}"),
                                             args.clients, window, args.seconds,
                                             args.warmup)))
        durable = runs[0][1]
        log(f"baseline parse-only, {args.baseline_seconds:g} s ...")
        parse_rate, parse_source = parse_only(payloads, args.baseline_seconds)
        log(f"baseline store-only, {args.baseline_seconds:g} s ...")
        store_rate, store_per_core, store_commits = asyncio.run(store_only(
            str(Path(tmp) / "store"), payloads, args.clients * windows[0],
            args.baseline_seconds))
    expected = 1.0 / (1.0 / parse_rate + 1.0 / store_per_core)
    print()
    print(f"HL7 ORU^R01 ingest: {samples} OBX per message, {args.clients} connections, "
          f"SQLite {durable.durability}, {os.cpu_count()} CPUs")
    print()
    print(f"{'scenario':<44} {'msg/s':>9} {'msg/CPU-s':>10} {'ack p50':>8} {'ack p99':>8} "
          f"{'msg/commit':>10}")
    for window, run in runs:
        p50 = "-" if run.ack_p50_ms is None else f"{run.ack_p50_ms:.1f}"
        p99 = "-" if run.ack_p99_ms is None else f"{run.ack_p99_ms:.1f}"
        name = f"durable, {window} in flight per connection"
        print(f"{name:<44} {run.messages_per_s:>9.0f} {run.messages_per_core_s:>10.0f} "
              f"{p50:>8} {p99:>8} {run.messages_per_commit:>10.1f}")
    print(f"{'baseline parse-only (' + parse_source + ')':<44} {'-':>9} {parse_rate:>10.0f}")
    print(f"{'baseline store-only (group commit, no parse)':<44} {store_rate:>9.0f} "
          f"{store_per_core:>10.0f}")
    print("(msg/CPU-s: messages per second of one core; durable: the server process's "
          "CPU time, all threads)")
    print()
    print(f"durable ({windows[0]} in flight): {durable.messages} messages AA in "
          f"{durable.seconds:.2f} s, server CPU "
          f"{durable.server_cpu_s:.2f} s ({durable.server_system_s:.2f} s in the kernel) -> "
          f"{durable.messages_per_core_s:.0f} messages/s per "
          f"core (target {TARGET_PER_CORE:.0f}); errors {durable.errors}")
    print(f"  ratio durable / parse-only per core: "
          f"{durable.messages_per_core_s / parse_rate:.2f}; durable / store-only: "
          f"{durable.messages_per_core_s / store_per_core:.2f}; durable / (parse + store "
          f"serial bound {expected:.0f}): {durable.messages_per_core_s / expected:.2f}")
    for window, run in runs:
        print(f"  {window} in flight: commits {run.commits} (one fsync each, "
              f"{run.messages_per_commit:.1f} messages per commit), AA received "
              f"{run.acks_total}, AA before its commit returned: {run.acks_before_commit}, "
              f"AA naming no commit: {run.acks_naming_no_commit}")
    print(f"  store-only commits: {store_commits}")
    print(f"  database after the run: {durable.stored_messages} messages, {durable.rows} "
          f"sample rows ({samples} per message)")
    ordered = all(r.acks_before_commit == 0 and r.acks_naming_no_commit == 0 for _, r in runs)
    verdict = "PASS" if durable.messages_per_core_s >= TARGET_PER_CORE and ordered else "FAIL"
    print(f"{verdict}  >= {TARGET_PER_CORE:.0f} messages/s per core of server CPU with every "
          f"AA after its fsync'd commit")
    return durable, {"parse_only_per_core": parse_rate, "store_only_per_s": store_rate,
                     "store_only_per_core": store_per_core}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hl7_ingest",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--windows", default="8,1",
                        help="messages in flight per connection, one durable run each; the "
                             "first is the headline (1: stop-and-wait)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--baseline-seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--tmp-dir", default=None,
                        help="where the SQLite files go (its disk decides the fsync rate)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the target is missed or an ACK preceded its commit")
    args = parser.parse_args(argv)
    durable, _ = benchmark(args)
    ok = (durable.messages_per_core_s >= TARGET_PER_CORE and durable.acks_before_commit == 0
          and durable.acks_naming_no_commit == 0)
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    threading.current_thread().name = "main"
    raise SystemExit(main())
