"""Simulated oximeters (pure parts) and the pty device; the backoff."""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devices.serial_monitors.backoff import Backoff
from devices.serial_monitors.cms50d import CMS50DPacket, CMS50DParser
from devices.serial_monitors.nonin import NoninParser
from devices.serial_monitors.simulator import (
    CMS50DSimulator,
    NoninSimulator,
    PtyDevice,
    SimulatedPatient,
)

NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def test_the_patient_varies_slowly_within_range():
    patient = SimulatedPatient(seed=7)
    seconds = range(0, 600)
    spo2 = [patient.spo2(t) for t in seconds]
    pulse_rate = [patient.pulse_rate(t) for t in seconds]
    assert (min(spo2), max(spo2)) == (96, 99)
    assert 60 <= min(pulse_rate) <= 62 and 88 <= max(pulse_rate) <= 90
    assert max(abs(a - b) for a, b in itertools.pairwise(spo2)) <= 1
    assert max(abs(a - b) for a, b in itertools.pairwise(pulse_rate)) <= 2
    assert SimulatedPatient(seed=8).spo2(0) != patient.spo2(0) or (
        SimulatedPatient(seed=8).pulse_rate(0) != patient.pulse_rate(0))


def test_the_pleth_wave_beats_at_the_pulse_rate():
    patient = SimulatedPatient(seed=1)
    dt = 1 / 60
    times = [n * dt for n in range(60 * 60)]
    wave = [patient.pleth(t) for t in times]
    assert 0 <= min(wave) <= 15 and 95 <= max(wave) <= 127
    beats = sum(patient.beat_started(t, dt) for t in times[1:])
    mean_rate = sum(patient.pulse_rate(t) for t in range(60)) / 60
    assert abs(beats - mean_rate) <= 2
    # one peak per beat: count the wave's crossings of its midline upwards
    crossings = sum(1 for a, b in itertools.pairwise(wave) if a < 60 <= b)
    assert abs(crossings - beats) <= 1


def test_nonin_simulator_lines_parse_back():
    simulator = NoninSimulator(SimulatedPatient(seed=2))
    parser = NoninParser("n")
    spo2, pulse_rate = parser.feed(simulator.output(12.0), NOW)
    assert spo2.value == simulator.patient.spo2(12.0)
    assert pulse_rate.value == simulator.patient.pulse_rate(12.0)
    simulator.finger_out = True
    assert simulator.output(13.0) == b"SPO2=--- HR=---\r\n"


def test_cms50d_simulator_packets_parse_back():
    simulator = CMS50DSimulator(SimulatedPatient(seed=2))
    packet = CMS50DPacket.parse(simulator.output(3.5))
    assert packet.pleth == simulator.patient.pleth(3.5)
    assert (packet.spo2, packet.pulse_rate) == (simulator.patient.spo2(3.5),
                                                simulator.patient.pulse_rate(3.5))
    assert not packet.sensor_off and packet.signal_strength > 0
    simulator.finger_out = True
    packet = CMS50DPacket.parse(simulator.output(4.0))
    assert packet.finger_out and (packet.spo2, packet.pulse_rate) == (127, 255)
    assert CMS50DParser("c").feed(simulator.output(4.0), NOW)[0].text == "finger-out"


def test_pty_device_unplug_and_plug_move_its_link(tmp_path: Path):
    link = tmp_path / "oximeter"
    with PtyDevice(link) as device:
        first = device.slave_path
        assert first is not None and os.path.realpath(link) == first
        assert device.port == str(link)
        assert device.write(b"SPO2=097 HR=072\r\n") == 17
        device.paused = True
        assert device.write(b"x") == 0
        device.unplug()
        assert not device.plugged and not link.exists() and device.write(b"x") == 0
        device.plug()
        assert device.slave_path is not None
        assert os.path.realpath(link) == device.slave_path
    assert not link.exists()
    with PtyDevice() as device, pytest.raises(RuntimeError):
        device.unplug()
        _ = device.port


def test_backoff_doubles_to_its_maximum_and_resets():
    backoff = Backoff(0.5, 10.0)
    assert [backoff.next_delay() for _ in range(8)] == [0.5, 1, 2, 4, 8, 10, 10, 10]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)
