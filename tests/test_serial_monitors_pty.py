"""SerialMonitor over REAL ptys: the reader opens the slave path with pyserial, as it would
/dev/ttyUSB0 (a pty ignores baud rate and parity). Simulators write to the master."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import serial

from devices.serial_monitors import (
    CMS50D,
    NONIN,
    ConnectionState,
    SerialMonitor,
    SerialProtocol,
)
from devices.serial_monitors.simulator import (
    CMS50DSimulator,
    NoninSimulator,
    PtyDevice,
    SimulatedPatient,
    run_simulator,
)
from devices.vitals import SampleSink, VitalSample

FAST: dict[str, Any] = {"backoff_initial": 0.02, "backoff_max": 0.16, "watch_interval": 0.05}
REPO = Path(__file__).resolve().parent.parent


class Collector:
    """A SampleSink that keeps everything, in order."""

    def __init__(self) -> None:
        self.samples: list[VitalSample] = []
        self.calls = 0

    async def __call__(self, samples: Sequence[VitalSample]) -> None:
        self.calls += 1
        self.samples.extend(samples)

    def of(self, vital: str) -> list[VitalSample]:
        return [s for s in self.samples if s.vital == vital]


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


@pytest.fixture
def device() -> Iterator[PtyDevice]:
    with PtyDevice() as pty_device:
        yield pty_device


@contextlib.asynccontextmanager
async def monitoring(port: str | os.PathLike[str], protocol: SerialProtocol, sink: SampleSink,
                     **options: Any) -> AsyncIterator[SerialMonitor]:
    monitor = SerialMonitor(port, protocol, sink, f"{protocol.name}-bed-1", **{**FAST, **options})
    await monitor.start()
    try:
        yield monitor
    finally:
        await monitor.stop()


async def connected(monitor: SerialMonitor, connections: int = 1) -> None:
    await eventually(lambda: monitor.state == ConnectionState.CONNECTED
                     and monitor.connections == connections)


# ----------------------------------------------------------------------- Nonin


async def test_nonin_simulator_lines_become_spo2_and_pulse_rate_samples(device: PtyDevice):
    simulator = NoninSimulator(SimulatedPatient(seed=3))
    sink = Collector()
    async with monitoring(device.port, NONIN, sink) as monitor:
        await connected(monitor)
        writer = asyncio.create_task(run_simulator(simulator, device, speed=50))  # 20 ms a line
        await eventually(lambda: len(sink.of("pr")) >= 10)
        writer.cancel()
    patient = simulator.patient
    seconds = range(len(sink.of("spo2")))
    assert [s.value for s in sink.of("spo2")] == [patient.spo2(t) for t in seconds]
    assert [s.value for s in sink.of("pr")] == [patient.pulse_rate(t) for t in seconds]
    assert {(s.code, s.code_system, s.unit, s.status) for s in sink.of("spo2")} == {
        ("150456", "MDC", "%", "R")}
    assert {(s.code, s.unit, s.loinc) for s in sink.of("pr")} == {("149530", "/min", "8889-8")}
    assert all(s.device_id == "nonin-bed-1" and s.observed_at.tzinfo is not None
               for s in sink.samples)
    times = [s.observed_at for s in sink.of("spo2")]
    assert times == sorted(times)


async def test_nonin_dashes_garbage_and_split_lines(device: PtyDevice):
    simulator = NoninSimulator(SimulatedPatient(seed=4))
    patient = simulator.patient
    sink = Collector()
    async with monitoring(device.port, NONIN, sink) as monitor:
        await connected(monitor)
        device.write(simulator.output(0))
        line = simulator.output(1)
        device.write(line[:9])                    # a line split across reads
        await asyncio.sleep(0.05)
        device.write(line[9:])
        device.write(b"\x00\xff\xfe noise\r\n\x13")  # line noise
        simulator.finger_out = True
        device.write(simulator.output(2))
        simulator.finger_out = False
        device.write(simulator.output(3).replace(b"\r\n", b"\n"))
        await eventually(lambda: len(sink.samples) == 8)
        await asyncio.sleep(0.05)
    assert len(sink.samples) == 8
    assert [s.value for s in sink.of("spo2")] == [patient.spo2(0), patient.spo2(1), None,
                                                  patient.spo2(3)]
    assert [s.value for s in sink.of("pr")] == [patient.pulse_rate(0), patient.pulse_rate(1),
                                                None, patient.pulse_rate(3)]
    dashes = [s for s in sink.samples if s.value is None]
    assert [(s.vital, s.status, s.text) for s in dashes] == [("spo2", "X", "no-reading"),
                                                            ("pr", "X", "no-reading")]


# ----------------------------------------------------------------------- CMS50D+


async def test_cms50d_packets_give_numerics_at_reduced_cadence_and_pleth_batches(
        device: PtyDevice):
    simulator = CMS50DSimulator(SimulatedPatient(seed=5))
    patient = simulator.patient
    sink = Collector()
    data = b"".join(simulator.output(n / 60) for n in range(130))
    # garbage before, and between packets 59 and 60, and packets split across writes
    data = b"\x00\x13\xff" + data[:300] + b"\x01\x02\x7f" + data[300:]
    async with monitoring(device.port, CMS50D, sink) as monitor:
        await connected(monitor)
        for offset in range(0, len(data), 64):
            device.write(data[offset:offset + 64])
            await asyncio.sleep(0.002)
        await eventually(lambda: len(sink.of("pleth")) == 2 and len(sink.of("spo2")) == 3)
        simulator.finger_out = True
        device.write(b"".join(simulator.output(n / 60) for n in range(130, 200)))
        await eventually(lambda: len(sink.of("spo2")) == 5)
        await asyncio.sleep(0.05)
    pleth = sink.of("pleth")
    assert [len(s.values or ()) for s in pleth] == [60, 60, 10]  # the last cut by finger out
    assert [v for s in pleth for v in s.values or ()] == [
        float(patient.pleth(n / 60)) for n in range(130)]
    assert {(s.code, s.sample_rate) for s in pleth} == {("150452", 60.0)}
    # numerics at packets 0, 60, 120, then at once when the finger came out, and 60 later
    expected = [patient.spo2(n / 60) for n in (0, 60, 120)]
    assert [s.value for s in sink.of("spo2")] == [*expected, None, None]
    expected = [patient.pulse_rate(n / 60) for n in (0, 60, 120)]
    assert [s.value for s in sink.of("pr")] == [*expected, None, None]
    assert {(s.status, s.text) for s in sink.samples if s.value is None and not s.values} == {
        ("X", "finger-out")}
    assert pleth[1].observed_at > pleth[0].observed_at


# ----------------------------------------------------------------------- unplug / replug


async def test_unplugged_device_is_reported_retried_with_backoff_and_resumed(tmp_path: Path):
    link = tmp_path / "oximeter"
    simulator = CMS50DSimulator(SimulatedPatient(seed=6))
    states: list[ConnectionState] = []
    sink = Collector()
    first = PtyDevice()
    assert first.slave_path is not None
    os.symlink(first.slave_path, link)
    try:
        async with monitoring(link, CMS50D, sink, on_state=states.append) as monitor:
            await connected(monitor)
            first.write(b"".join(simulator.output(n / 60) for n in range(60)))
            await eventually(lambda: len(sink.of("pleth")) == 1)

            first.unplug()  # the device disappears: EOF/EIO, then its path is gone
            os.unlink(link)  # as udev removes /dev/serial/by-id links (and no other pty
            #                  that reuses the number, maybe another test's, gets opened)
            await eventually(lambda: monitor.state == ConnectionState.DISCONNECTED)
            await eventually(lambda: monitor.failed_opens >= 4)
            await eventually(lambda: monitor.retry_delay == FAST["backoff_max"])  # 0.02 .. 0.16
            assert monitor.running and monitor.connections == 1

            second = PtyDevice()
            assert second.slave_path is not None
            os.symlink(second.slave_path, link)
            with second:
                await connected(monitor, connections=2)
                assert monitor.failed_opens == 0 and monitor.retry_delay is None
                second.write(b"".join(simulator.output(n / 60) for n in range(60, 120)))
                await eventually(lambda: len(sink.of("pleth")) == 2)
    finally:
        first.close()
    assert states == ["connected", "disconnected", "connected", "disconnected"]
    assert sink.of("pleth")[1].values == tuple(
        float(simulator.patient.pleth(n / 60)) for n in range(60, 120))


async def test_a_vanished_port_path_is_noticed_without_a_read_error(tmp_path: Path):
    link = tmp_path / "spo2"
    sink = Collector()
    simulator = NoninSimulator()
    with PtyDevice(link) as device:
        assert device.slave_path is not None
        async with monitoring(link, NONIN, sink) as monitor:
            await connected(monitor)
            os.unlink(link)  # the pty lives on and is silent: only the path check can tell
            await eventually(lambda: monitor.state == ConnectionState.DISCONNECTED)
            await eventually(lambda: monitor.failed_opens >= 2)
            os.symlink(device.slave_path, link)
            await connected(monitor, connections=2)
            device.write(simulator.output(0))
            await eventually(lambda: len(sink.of("spo2")) == 1)


# ----------------------------------------------------------------------- lifecycle


async def test_start_and_stop_are_idempotent_and_release_the_port(device: PtyDevice):
    sink = Collector()
    monitor = SerialMonitor(device.port, NONIN, sink, "n1", **FAST)
    await monitor.stop()  # never started: nothing to do
    await monitor.start()
    await monitor.start()
    await connected(monitor)
    await asyncio.sleep(0.05)
    assert monitor.connections == 1
    await monitor.stop()
    await monitor.stop()
    assert not monitor.running and monitor.state == ConnectionState.DISCONNECTED
    serial.Serial(device.port, exclusive=True).close()  # nobody holds the port any more
    await monitor.start()  # and it can start again
    await connected(monitor, connections=2)
    await monitor.stop()


async def test_stop_cancels_a_blocked_sink_and_a_pending_retry(device: PtyDevice,
                                                               tmp_path: Path):
    entered = asyncio.Event()

    async def stuck(samples: Sequence[VitalSample]) -> None:
        entered.set()
        await asyncio.Event().wait()

    monitor = SerialMonitor(device.port, NONIN, stuck, "n1", **FAST)
    await monitor.start()
    await connected(monitor)
    device.write(b"SPO2=097 HR=072\r\n")
    await asyncio.wait_for(entered.wait(), 5)
    await asyncio.wait_for(monitor.stop(), 1)
    assert monitor.state == ConnectionState.DISCONNECTED

    missing = SerialMonitor(tmp_path / "no-such-port", NONIN, Collector(), "n2", **FAST)
    await missing.start()
    await eventually(lambda: missing.failed_opens >= 2)
    await asyncio.wait_for(missing.stop(), 1)
    assert not missing.running and missing.retry_delay is None


async def test_a_failing_sink_loses_its_batch_but_not_the_feed(device: PtyDevice):
    delivered: list[VitalSample] = []

    async def flaky(samples: Sequence[VitalSample]) -> None:
        if not delivered and samples[0].value == 97:
            delivered.append(samples[0])
            raise RuntimeError("database unavailable")
        delivered.extend(samples)

    async with monitoring(device.port, NONIN, flaky) as monitor:
        await connected(monitor)
        device.write(b"SPO2=097 HR=072\r\n")
        await eventually(lambda: len(delivered) == 1)
        device.write(b"SPO2=098 HR=071\r\n")
        await eventually(lambda: len(delivered) == 3)
        assert monitor.state == ConnectionState.CONNECTED
    assert [s.value for s in delivered[1:]] == [98.0, 71.0]


# ----------------------------------------------------------------------- standalone simulator


async def test_the_standalone_simulator_prints_a_port_that_serves_data(tmp_path: Path):
    link = tmp_path / "cms50d"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devices.serial_monitors.simulator", "--protocol", "cms50d",
        "--link", str(link), cwd=REPO, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        port = (await asyncio.wait_for(process.stdout.readline(), 10)).decode().strip()
        assert port == str(link) and os.path.realpath(link).startswith("/dev/")
        sink = Collector()
        async with monitoring(port, CMS50D, sink):
            await eventually(lambda: len(sink.of("pr")) >= 1)
        assert 96 <= (sink.of("spo2")[0].value or 0) <= 99
        assert 60 <= (sink.of("pr")[0].value or 0) <= 90
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert not link.exists()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
