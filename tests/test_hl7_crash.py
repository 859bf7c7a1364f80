"""kill -9 of the HL7 server under load loses no acknowledged message.

The server (listener + group-committing SQLite store, WAL + synchronous=FULL) runs in
its own process; 8 connections send 4-OBX ORU^R01 messages continuously, 4 in flight
each; the server is killed with SIGKILL in the middle of it. After a restart, every
message whose AA a client received is in the database, with its 4 samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil

from benchmarks.hl7_ingest import control_id_of, four_obx_message
from devices.hl7.storage import SampleStore
from tests.conftest import stop_process

CLIENTS = 8
IN_FLIGHT = 4


def start_server(data_dir: Path, port_file: Path) -> subprocess.Popen[bytes]:
    code = ("from benchmarks.hl7_ingest import serve; import sys; "
            "serve(sys.argv[1], 8, port_file=sys.argv[2])")
    return subprocess.Popen([sys.executable, "-c", code, str(data_dir), str(port_file)],
                            cwd=Path(__file__).resolve().parent.parent)


async def wait_for_port(port_file: Path, process: subprocess.Popen[bytes]) -> int:
    for _ in range(300):
        if port_file.exists():
            return int(port_file.read_text())
        assert process.poll() is None, "the server exited"
        await asyncio.sleep(0.05)
    raise AssertionError("the server did not start")


async def send_until_the_server_dies(port: int, number: int, acked: list[str],
                                     sent: list[int]) -> None:
    """Send continuously (``IN_FLIGHT`` ahead) and record each AA, until the connection ends."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    waiting: asyncio.Queue[str] = asyncio.Queue()
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def send() -> None:
        sequence = 0
        while True:
            await slots.acquire()
            message = four_obx_message(number, sequence)
            sequence += 1
            waiting.put_nowait(control_id_of(message))
            writer.write(b"\x0b" + message + b"\x1c\r")
            await writer.drain()
            sent[number] += 1

    sender = asyncio.create_task(send())
    try:
        while True:
            control_id = await waiting.get()
            ack = await reader.readuntil(b"\x1c\r")
            slots.release()
            assert b"\rMSA|AA|" + control_id.encode() + b"\r" in ack, ack  # its own AA
            acked.append(control_id)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the server was killed
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        writer.close()


async def test_kill_9_under_load_loses_no_acknowledged_message(tmp_path: Path) -> None:
    data_dir, port_file = tmp_path / "data", tmp_path / "port"
    server = start_server(data_dir, port_file)
    try:
        port = await wait_for_port(port_file, server)
        acked: list[str] = []
        sent = [0] * CLIENTS
        clients = asyncio.gather(*(send_until_the_server_dies(port, n, acked, sent)
                                   for n in range(CLIENTS)))
        while len(acked) < 1500:  # under load: well into continuous group commits
            await asyncio.sleep(0.05)
            assert server.poll() is None
        workers = psutil.Process(server.pid).children(recursive=True)
        assert workers  # the decode workers (and multiprocessing's resource tracker)
        os.kill(server.pid, signal.SIGKILL)
        await asyncio.wait_for(clients, 30)
        assert server.wait(10) == -signal.SIGKILL
        # They do not outlive the killed server.
        _, alive = await asyncio.to_thread(psutil.wait_procs, workers, 10)
        assert alive == []
    finally:
        if server.poll() is None:
            stop_process(server)

    # Restart: the store opens the database the killed process left (WAL recovery).
    async with SampleStore(data_dir=data_dir) as store:
        stored_messages = await store.message_count()
        stored_samples = len(await store.samples_since(limit=10_000_000))
    connection = sqlite3.connect(data_dir / "vitals.sqlite3")
    try:
        stored_ids = {row[0] for row in connection.execute("SELECT control_id FROM hl7_messages")}
        per_message = set(connection.execute(
            "SELECT count(*) FROM vital_samples GROUP BY message_id").fetchall())
    finally:
        connection.close()
    missing = [c for c in acked if c not in stored_ids]
    print(f"\nkill -9 under load: {sum(sent)} messages sent, {len(acked)} acknowledged AA, "
          f"{stored_messages} in the database after restart ({stored_samples} samples), "
          f"{len(missing)} acknowledged but missing")
    assert len(acked) >= 1500 and len(set(acked)) == len(acked)
    assert missing == []
    assert stored_messages >= len(acked)  # (some stored whose AA the kill cut off)
    assert per_message == {(4,)} and stored_samples == 4 * stored_messages
