"""Bed bindings from configuration: rooms to cameras and monitors."""

from __future__ import annotations

import pytest

from devices.binding import (
    BindingError,
    CameraAddress,
    MonitorAddress,
    parse_bindings,
    parse_camera,
    parse_monitor,
)


def test_camera_addresses():
    assert parse_camera("visca-udp://10.1.2.3") == CameraAddress("visca-udp", "10.1.2.3", 52381)
    assert parse_camera("visca-tcp://cam.local:5678?address=2") == CameraAddress(
        "visca-tcp", "cam.local", 5678, address=2)
    assert parse_camera("visca-serial:///dev/ttyUSB0?baud=38400") == CameraAddress(
        "visca-serial", device="/dev/ttyUSB0", baudrate=38400)


@pytest.mark.parametrize(("url", "message"), [
    ("http://x", "must start with"),
    ("visca-tcp://host", "needs a port"),
    ("visca-serial://", "device path"),
    ("visca-serial:///dev/ttyS0?baud=115200", "9600, 19200 or 38400"),
    ("visca-udp://h?address=9", "1 to 7"),
    ("visca-udp://h:notaport", "bad number"),
])
def test_bad_camera_addresses(url, message):
    with pytest.raises(BindingError, match=message):
        parse_camera(url)


def test_monitor_addresses():
    assert parse_monitor("hl7:080019FFFE0B4020") == MonitorAddress("hl7", "080019FFFE0B4020")
    assert parse_monitor("nonin:///dev/ttyUSB1") == MonitorAddress(
        "nonin", "nonin:/dev/ttyUSB1", "/dev/ttyUSB1")
    for bad in ("hl7:", "serial:///dev/x", "cms50d://"):
        with pytest.raises(BindingError):
            parse_monitor(bad)


def test_bindings_refuse_duplicates_and_unknown_keys():
    beds = parse_bindings([{"room": "bed-1", "camera": "visca-udp://127.0.0.1:52381",
                            "monitor": "hl7:DEV1"}, {"room": "bed-2"}])
    assert [b.room for b in beds] == ["bed-1", "bed-2"]
    assert beds[1].camera is None and beds[1].monitor is None
    with pytest.raises(BindingError, match="bound twice"):
        parse_bindings([{"room": "a"}, {"room": "a"}])
    with pytest.raises(BindingError, match="unknown keys"):
        parse_bindings([{"room": "a", "cam": "x"}])
    with pytest.raises(BindingError, match=r"beds\[0\] \(a\): camera address"):
        parse_bindings([{"room": "a", "camera": "ftp://x"}])
