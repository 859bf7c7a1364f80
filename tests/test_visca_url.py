"""Camera URLs from the configuration become the right transport, or a precise error."""

from __future__ import annotations

import pytest

from devices.visca import (
    RawUdpTransport,
    SerialTransport,
    SonyUdpTransport,
    TcpTransport,
    camera_from_url,
    transport_from_url,
)


def test_each_scheme() -> None:
    udp = transport_from_url("visca-udp://10.20.3.12")
    assert isinstance(udp, SonyUdpTransport) and (udp.host, udp.port) == ("10.20.3.12", 52381)
    udp = transport_from_url("visca-udp://10.20.3.12:52380")
    assert isinstance(udp, SonyUdpTransport) and udp.port == 52380
    tcp = transport_from_url("visca-tcp://[::1]:5678")
    assert isinstance(tcp, TcpTransport) and (tcp.host, tcp.port) == ("::1", 5678)
    raw = transport_from_url("visca-raw-udp://cam.ward3:1259")
    assert isinstance(raw, RawUdpTransport) and (raw.host, raw.port) == ("cam.ward3", 1259)
    serial = transport_from_url("visca-serial:///dev/ttyUSB0?baud=38400")
    assert isinstance(serial, SerialTransport)
    assert (serial.port, serial.baudrate) == ("/dev/ttyUSB0", 38400)
    default = transport_from_url("visca-serial:///dev/ttyS1")
    assert isinstance(default, SerialTransport) and default.baudrate == 9600


def test_address_option() -> None:
    camera = camera_from_url("visca-serial:///dev/ttyUSB0?address=3", name="bed-12")
    assert camera.address == 3 and camera.name == "bed-12"
    with pytest.raises(ValueError, match="reaches camera address 1 only"):
        camera_from_url("visca-udp://10.0.0.9?address=2")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("rtsp://10.0.0.9", "scheme 'rtsp' is none of"),
        ("visca-tcp://10.0.0.9", "needs a port"),
        ("visca-raw-udp://10.0.0.9", "needs a port"),
        ("visca-udp://:52381", "names no host"),
        ("visca-udp://10.0.0.9:99999", "Port out of range"),
        ("visca-udp://10.0.0.9?baud=9600", "baud applies to visca-serial URLs only"),
        ("visca-serial:///dev/ttyUSB0?baud=4800", "baud rate must be one of"),
        ("visca-serial:///dev/ttyUSB0?baud=fast", "baud must be one number"),
        ("visca-serial:///dev/ttyUSB0?parity=even", "option 'parity' is unknown"),
        ("visca-serial://dev/ttyUSB0", "must look like visca-serial:///dev/ttyUSB0"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        camera_from_url(url)
