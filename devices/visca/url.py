"""Camera URLs as the configuration writes them (config/default.toml, ``devices.beds``).

    visca-udp://HOST[:PORT]                  Sony VISCA over IP (port 52381 by default)
    visca-tcp://HOST:PORT                    raw VISCA over TCP
    visca-raw-udp://HOST:PORT                raw VISCA over UDP (no header)
    visca-serial:///dev/ttyUSB0?baud=9600    RS-232/RS-422 (baud 9600, 19200 or 38400)

Any of them takes ``?address=N`` (camera 1..7 on a serial chain; 1 over IP).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from devices.visca.camera import PtzCamera
from devices.visca.ip_transport import RawUdpTransport, SonyUdpTransport, TcpTransport
from devices.visca.serial_transport import SerialTransport
from devices.visca.sony_ip import DEFAULT_PORT
from devices.visca.transport import ViscaTransport

SCHEMES = ("visca-udp", "visca-tcp", "visca-raw-udp", "visca-serial")


def _query(url: str) -> dict[str, str]:
    query: dict[str, str] = {}
    for key, values in parse_qs(urlsplit(url).query, strict_parsing=False).items():
        if key not in ("baud", "address"):
            raise ValueError(f"camera URL option {key!r} is unknown (baud, address)")
        if len(values) != 1 or not values[0].isdigit():
            raise ValueError(f"camera URL option {key} must be one number")
        query[key] = values[0]
    return query


def transport_from_url(url: str) -> ViscaTransport:
    """The transport a camera URL names; ValueError says what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"camera URL scheme {parts.scheme!r} is none of {', '.join(SCHEMES)}")
    query = _query(url)
    if parts.scheme == "visca-serial":
        if parts.netloc or not parts.path:
            raise ValueError("serial camera URL must look like visca-serial:///dev/ttyUSB0")
        return SerialTransport(parts.path, int(query.get("baud", "9600")))
    if "baud" in query:
        raise ValueError("baud applies to visca-serial URLs only")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"camera URL {url!r}: {exc}") from None
    if not host:
        raise ValueError(f"camera URL {url!r} names no host")
    if parts.scheme == "visca-udp":
        return SonyUdpTransport(host, port or DEFAULT_PORT)
    if port is None:
        raise ValueError(f"{parts.scheme} camera URL needs a port")
    if parts.scheme == "visca-tcp":
        return TcpTransport(host, port)
    return RawUdpTransport(host, port)


def camera_from_url(url: str, **options: Any) -> PtzCamera:
    """A :class:`PtzCamera` for a camera URL; ``options`` go to its constructor."""
    address = _query(url).get("address")
    if address is not None:
        options.setdefault("address", int(address))
    return PtzCamera(transport_from_url(url), **options)
