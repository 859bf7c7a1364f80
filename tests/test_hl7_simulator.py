"""The monitor simulator against the real listener (and against a receiver that misbehaves)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hl7
import pytest

from devices.hl7.ack import Acknowledgement, build_ack
from devices.hl7.oru import decode_oru, read_header
from devices.hl7.simulator import MonitorProfile, MonitorSimulator
from devices.hl7.storage import SampleStore
from tests.test_hl7_fixtures import RecordingSink, running_listener

VITALS = {"hr", "spo2", "pr", "rr", "temp", "nibp_sys", "nibp_dia", "nibp_mean", "pleth"}


def test_messages_decode_to_plausible_vitals() -> None:
    simulator = MonitorSimulator("127.0.0.1", 9, interval=5.0, seed=7)
    start = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
    values: dict[str, list[float]] = {}
    for minute in range(30):
        _, raw = simulator.next_message(start + timedelta(seconds=5 * minute))
        for sample in decode_oru(raw).samples:
            if sample.value is not None:
                values.setdefault(sample.vital or "", []).append(sample.value)
    assert 45 <= min(values["hr"]) <= max(values["hr"]) <= 140
    assert 88 <= min(values["spo2"]) <= max(values["spo2"]) <= 100
    assert 35.5 <= min(values["temp"]) <= max(values["temp"]) <= 39.5
    assert max(values["hr"]) - min(values["hr"]) < 30  # slowly varying, not noise
    assert len(values["nibp_sys"]) == 1  # NIBP every 5 minutes: once in 150 s


def test_waveform_is_continuous_and_chunked() -> None:
    simulator = MonitorSimulator("127.0.0.1", 9, interval=5.0, seed=1)
    start = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
    waves = []
    for i in range(2):
        _, raw = simulator.next_message(start + timedelta(seconds=5 * i))
        waves += [s for s in decode_oru(raw).samples if s.vital == "pleth"]
    assert len(waves) == 10  # 5 one-second chunks per message
    assert all(len(w.values or ()) == 100 and w.sample_rate == 100.0 for w in waves)
    starts = [w.observed_at for w in waves]
    assert starts == [start - timedelta(seconds=5) + timedelta(seconds=i) for i in range(10)]


def test_gb18030_profile() -> None:
    profile = MonitorProfile(charset="GB 18030-2000", patient_id="住院東0042",
                             patient_name=("王", "東億"))
    _, raw = MonitorSimulator("127.0.0.1", 9, profile=profile).next_message(datetime.now(UTC))
    assert "東".encode("gb18030") in raw
    assert {s.patient_id for s in decode_oru(raw).samples} == {"住院東0042"}


async def test_simulator_against_the_listener(tmp_path: Path) -> None:
    async with SampleStore(data_dir=tmp_path) as store, \
            running_listener(store.store) as listener:
        simulator = MonitorSimulator("127.0.0.1", listener.port, interval=0.05, seed=3)
        stats = await asyncio.wait_for(simulator.run(count=4), 10)
        rows = [r.sample for r in await store.samples_since()]
    assert (stats.messages, stats.acked, stats.resent, stats.connects) == (4, 4, 0, 1)
    assert listener.stats.connections_accepted == 1  # one persistent connection
    assert {s.vital for s in rows} == VITALS
    assert {s.device_id for s in rows} == {"0012A1FFFE000001"}
    assert {s.patient_id for s in rows} == {"SIM0001"}
    pleth = [s for s in rows if s.vital == "pleth"]
    assert pleth and all(s.sample_rate == 100.0 and s.values for s in pleth)
    assert len([s for s in rows if s.vital == "hr"]) == 4


async def test_alarm_demo_against_the_listener() -> None:
    """--alarm-demo: SpO2 held at 82 (flagged LL) between an ORU^R40 start and end; every
    message, alarms included, is acknowledged AA."""
    sink = RecordingSink()
    async with running_listener(sink) as listener:
        simulator = MonitorSimulator("127.0.0.1", listener.port, interval=0.02, seed=3,
                                     alarm_demo=True)
        stats = await asyncio.wait_for(simulator.run(count=6), 10)
    assert (stats.messages, stats.acked) == (8, 8)  # 6 ORU^R01 + alarm start and end
    spo2 = [(s.value, s.abnormal_flags, s.reference_range)
            for batch in sink.batches for s in batch if s.vital == "spo2"]
    assert spo2[2:4] == [(82.0, ("LL",), "90-100")] * 2
    assert all(flags in ((), ("H",), ("L",)) for _, flags, _ in spo2[:2] + spo2[4:])


def test_orf_profile() -> None:
    profile = MonitorProfile(message_type="ORF^R04^ORF_R04")
    _, raw = MonitorSimulator("127.0.0.1", 9, profile=profile).next_message(datetime.now(UTC))
    assert b"|ORF^R04^ORF_R04|" in raw
    assert read_header(raw).message_code == "ORF" and decode_oru(raw).samples
    with pytest.raises(ValueError, match="unsupported message type"):
        MonitorProfile(message_type="ADT^A01")


async def test_resends_on_ae_until_stored(tmp_path: Path) -> None:
    async with SampleStore(data_dir=tmp_path) as store:
        sink = RecordingSink(failures=2, then=store.store)
        async with running_listener(sink) as listener:
            simulator = MonitorSimulator("127.0.0.1", listener.port, interval=0.05,
                                         retry_delay=0.01)
            stats = await asyncio.wait_for(simulator.run(count=1), 10)
        rows = await store.samples_since()
    assert (stats.acked, stats.resent, stats.failed) == (1, 2, 0)
    assert listener.stats.store_failures == 2
    assert len({r.sample.observed_at for r in rows if r.sample.vital == "hr"}) == 1  # stored once


async def test_gives_up_after_three_resends() -> None:
    async with running_listener(RecordingSink(failures=100)) as listener:
        simulator = MonitorSimulator("127.0.0.1", listener.port, interval=0.05,
                                     retry_delay=0.01)
        stats = await asyncio.wait_for(simulator.run(count=1), 10)
    assert (stats.acked, stats.resent, stats.failed) == (0, 3, 1)
    assert listener.stats.messages == 4


@contextlib.asynccontextmanager
async def fake_receiver(answer: Callable[[bytes, int], bytes | None]
                        ) -> AsyncIterator[tuple[int, list[int]]]:
    """A receiver that answers each frame with ``answer(payload, n)`` (None: hang up)."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                data = await reader.readuntil(b"\x1c\r")
                reply = answer(data[1:-2], sum(connections))
                if reply is None:
                    break
                writer.write(b"\x0b" + reply + b"\x1c\r")
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        server.close()
        await server.wait_closed()


def ack_for(payload: bytes, code: str) -> bytes:
    header = read_header(payload)
    return build_ack(header, Acknowledgement(code), control_id="X",  # type: ignore[arg-type]
                     now=datetime.now(UTC)).encode()


async def test_ar_drops_the_message_and_reconnects() -> None:
    async with fake_receiver(lambda payload, _: ack_for(payload, "AR")) as (port, connections):
        simulator = MonitorSimulator("127.0.0.1", port, interval=0.05)
        stats = await asyncio.wait_for(simulator.run(count=2), 10)
    assert (stats.rejected, stats.resent, stats.connects) == (2, 0, 2)
    assert len(connections) == 2


async def test_no_ack_reconnects_and_resends_the_same_message() -> None:
    seen: list[str] = []

    def answer(payload: bytes, _: int) -> bytes | None:
        seen.append(str(hl7.parse(payload.decode()).segment("MSH")[10]))
        return None if len(seen) == 1 else ack_for(payload, "AA")

    async with fake_receiver(answer) as (port, connections):
        simulator = MonitorSimulator("127.0.0.1", port, interval=0.05, retry_delay=0.01)
        stats = await asyncio.wait_for(simulator.run(count=1), 10)
    assert (stats.acked, stats.resent, stats.connects) == (1, 1, 2)
    assert len(connections) == 2
    assert len(seen) == 2 and seen[0] == seen[1]  # same MSH-10


async def test_command_line(tmp_path: Path) -> None:
    async with SampleStore(data_dir=tmp_path) as store, \
            running_listener(store.store) as listener:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devices.hl7.simulator", "--host", "127.0.0.1",
            "--port", str(listener.port), "--count", "2", "--interval", "0.05",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
        rows = await store.samples_since(vital="hr")
    assert process.returncode == 0, output.decode()
    assert b"sent 2 messages: 2 acknowledged AA" in output
    assert len(rows) == 2
