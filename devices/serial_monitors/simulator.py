"""Simulated serial oximeters on a pty, for demos and tests.

    python -m devices.serial_monitors.simulator --protocol nonin|cms50d [--link PATH]

prints the port to open (``--link`` if given, else the pty's slave path) as the first
line of stdout, then writes live data until interrupted. ``--unplug-every SECONDS``
unplugs the device (closes the pty) for ``--unplugged-for`` seconds now and then; with
``--link`` the link is re-pointed at each new pty, as udev does with /dev/serial/by-id.

The pieces: ``SimulatedPatient`` (pure: slowly varying SpO2 96..99 %, pulse rate
60..90 /min and a pleth wave, as functions of time), ``NoninSimulator`` and
``CMS50DSimulator`` (pure: the bytes a device sends at simulated time ``t``),
``PtyDevice`` (the pty, with ``paused``, ``unplug()`` and ``plug()``) and
``run_simulator`` (writes on schedule).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import pty
import random
import signal
import sys
import tty
from collections.abc import Sequence
from types import TracebackType
from typing import ClassVar, Protocol

from devices.serial_monitors.cms50d import (
    CMS50D,
    PULSE_RATE_UNAVAILABLE,
    SPO2_UNAVAILABLE,
    CMS50DPacket,
)
from devices.serial_monitors.nonin import NONIN, format_line
from devices.serial_monitors.protocol import SerialProtocol

_TAU = 2 * math.pi


class SimulatedPatient:
    """Deterministic vitals for a given ``seed``: SpO2 96..99 %, pulse rate 60..90 /min."""

    SPO2_PERIOD = 47.0
    PULSE_RATE_PERIOD = 71.0

    def __init__(self, seed: int = 0) -> None:
        rng = random.Random(seed)
        self._spo2_phase = rng.uniform(0, _TAU)
        self._pr_phase = rng.uniform(0, _TAU)
        self._pr_omega = _TAU / self.PULSE_RATE_PERIOD

    def spo2(self, t: float) -> int:
        return round(97.5 + 1.49 * math.sin(_TAU * t / self.SPO2_PERIOD + self._spo2_phase))

    def pulse_rate(self, t: float) -> int:
        return round(self._pulse_rate(t))

    def _pulse_rate(self, t: float) -> float:
        return 75 + 14.9 * math.sin(self._pr_omega * t + self._pr_phase)

    def beats(self, t: float) -> float:
        """Heartbeats since t=0: the integral of the pulse rate."""
        swing = (14.9 / self._pr_omega) * (
            math.cos(self._pr_phase) - math.cos(self._pr_omega * t + self._pr_phase))
        return (75 * t + swing) / 60

    def pleth(self, t: float) -> int:
        """A plethysmogram in 0..127: a systolic peak, then a smaller diastolic wave."""
        x = self.beats(t) % 1.0
        y = math.exp(-(((x - 0.2) / 0.09) ** 2)) + 0.45 * math.exp(-(((x - 0.5) / 0.12) ** 2))
        return max(0, min(127, round(10 + 95 * y)))

    def beat_started(self, t: float, dt: float) -> bool:
        return math.floor(self.beats(t)) != math.floor(self.beats(t - dt))


class OximeterSimulator(Protocol):
    protocol: ClassVar[SerialProtocol]
    interval: ClassVar[float]
    """Seconds between two outputs."""
    finger_out: bool

    def output(self, t: float) -> bytes:
        """The bytes the device sends at simulated time ``t``."""
        ...


class NoninSimulator:
    protocol: ClassVar[SerialProtocol] = NONIN
    interval: ClassVar[float] = 1.0

    def __init__(self, patient: SimulatedPatient | None = None) -> None:
        self.patient = patient or SimulatedPatient()
        self.finger_out = False

    def output(self, t: float) -> bytes:
        if self.finger_out:
            return format_line(None, None)
        return format_line(self.patient.spo2(t), self.patient.pulse_rate(t))


class CMS50DSimulator:
    protocol: ClassVar[SerialProtocol] = CMS50D
    interval: ClassVar[float] = 1 / 60

    def __init__(self, patient: SimulatedPatient | None = None) -> None:
        self.patient = patient or SimulatedPatient()
        self.finger_out = False

    def packet(self, t: float) -> CMS50DPacket:
        if self.finger_out:
            return CMS50DPacket(pleth=0, pulse_rate=PULSE_RATE_UNAVAILABLE,
                                spo2=SPO2_UNAVAILABLE, finger_out=True)
        pleth = self.patient.pleth(t)
        return CMS50DPacket(pleth=pleth, pulse_rate=self.patient.pulse_rate(t),
                            spo2=self.patient.spo2(t), signal_strength=8,
                            bargraph=pleth * 15 // 127,
                            beep=self.patient.beat_started(t, self.interval))

    def output(self, t: float) -> bytes:
        return self.packet(t).to_bytes()


def _point_link(link: str, target: str) -> None:
    """Make ``link`` a symlink to ``target``, atomically replacing what was there."""
    temporary = f"{link}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    os.symlink(target, temporary)
    os.replace(temporary, link)


class PtyDevice:
    """A serial device on a pty: writes go to the master, a reader opens ``port``.

    ``unplug()`` closes the pty: its slave path vanishes and readers get EIO, as when a USB
    adapter is pulled out. ``plug()`` opens a new pty (usually under a new path). With
    ``link``, a symlink there names the current slave: created on plug, removed on unplug.
    While ``paused`` writes are dropped: the device is there but silent.
    """

    def __init__(self, link: str | os.PathLike[str] | None = None) -> None:
        self.link = os.fspath(link) if link is not None else None
        self.paused = False
        self.slave_path: str | None = None
        self._master = -1
        self._slave = -1
        self.plug()

    @property
    def plugged(self) -> bool:
        return self._master >= 0

    @property
    def port(self) -> str:
        """The path a reader opens: the link, else the current slave path."""
        if self.link is not None:
            return self.link
        if self.slave_path is None:
            raise RuntimeError("the device is unplugged")
        return self.slave_path

    def plug(self) -> None:
        if self.plugged:
            return
        master, slave = pty.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_path = os.ttyname(slave)
        if self.link is not None:
            _point_link(self.link, self.slave_path)

    def unplug(self) -> None:
        if not self.plugged:
            return
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
        os.close(self._master)
        os.close(self._slave)
        self._master = self._slave = -1
        self.slave_path = None

    def write(self, data: bytes) -> int:
        """Bytes written; 0 when unplugged, paused, or the tty buffer is full (nobody reads)."""
        if not self.plugged or self.paused:
            return 0
        try:
            return os.write(self._master, data)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        self.unplug()

    def __enter__(self) -> PtyDevice:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


async def run_simulator(simulator: OximeterSimulator, device: PtyDevice, *,
                        speed: float = 1.0, start: float = 0.0) -> None:
    """Write ``simulator.output(t)`` to ``device`` every ``interval / speed`` seconds until
    cancelled; ``t`` runs in simulated seconds from ``start``."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    loop = asyncio.get_running_loop()
    period = simulator.interval / speed
    origin = loop.time()
    tick = 0
    while True:
        device.write(simulator.output(start + tick * simulator.interval))
        tick += 1
        delay = origin + tick * period - loop.time()
        if delay < -1.0:  # far behind (the process was stopped): carry on from now, no burst
            origin = loop.time() - tick * period
        await asyncio.sleep(max(0.0, delay))


async def _unplug_cycle(device: PtyDevice, every: float, unplugged_for: float) -> None:
    while True:
        await asyncio.sleep(every)
        device.unplug()
        print("unplugged", file=sys.stderr, flush=True)
        await asyncio.sleep(unplugged_for)
        device.plug()
        print(f"plugged in again at {device.slave_path}", file=sys.stderr, flush=True)
        if device.link is None:
            print(device.port, flush=True)


async def _serve(args: argparse.Namespace) -> None:
    patient = SimulatedPatient(args.seed)
    simulator: OximeterSimulator = (
        NoninSimulator(patient) if args.protocol == "nonin" else CMS50DSimulator(patient))
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    with PtyDevice(args.link) as device:
        print(device.port, flush=True)
        protocol = simulator.protocol
        print(f"{protocol.name} simulator on {device.slave_path} "
              f"({protocol.baudrate} baud {protocol.bytesize}{protocol.parity}"
              f"{protocol.stopbits:g}); Ctrl-C to stop", file=sys.stderr, flush=True)
        tasks = [loop.create_task(run_simulator(simulator, device))]
        if args.unplug_every > 0:
            tasks.append(loop.create_task(
                _unplug_cycle(device, args.unplug_every, args.unplugged_for)))
        try:
            await stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devices.serial_monitors.simulator",
        description="A simulated serial pulse oximeter on a pty; prints the port to open.")
    parser.add_argument("--protocol", choices=("nonin", "cms50d"), required=True)
    parser.add_argument("--link", help="keep a symlink at this path naming the pty")
    parser.add_argument("--seed", type=int, default=0, help="the simulated patient's seed")
    parser.add_argument("--unplug-every", type=float, default=0.0, metavar="SECONDS",
                        help="unplug the device now and then (0: never)")
    parser.add_argument("--unplugged-for", type=float, default=3.0, metavar="SECONDS")
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
