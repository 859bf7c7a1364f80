"""Which camera and which monitor belong to which room (bed), from configuration (pure).

Camera addresses:
  ``visca-udp://HOST[:52381]``            Sony VISCA over IP (8-byte header, sequence numbers)
  ``visca-tcp://HOST:PORT``               raw VISCA over TCP (PTZOptics and others)
  ``visca-serial:///dev/ttyUSB0?baud=9600&address=1``
Monitor addresses:
  ``hl7:DEVICE-ID``                       samples arriving on the HL7 listener from that device
                                          (OBX-18 EUI-64 or MSH-3), e.g. ``hl7:080019FFFE0B4020``
  ``nonin:///dev/ttyUSB1``                Nonin ASCII oximeter on a serial port
  ``cms50d:///dev/ttyUSB2``               Contec CMS50D+ live packets on a serial port
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

CAMERA_SCHEMES = ("visca-udp", "visca-tcp", "visca-serial")
SERIAL_MONITOR_SCHEMES = ("nonin", "cms50d")
DEFAULT_VISCA_UDP_PORT = 52381


class BindingError(ValueError):
    """A bed binding in the configuration is malformed."""


@dataclass(frozen=True)
class CameraAddress:
    scheme: str
    host: str = ""
    port: int = 0
    device: str = ""
    baudrate: int = 9600
    address: int = 1


@dataclass(frozen=True)
class MonitorAddress:
    scheme: str  # "hl7", "nonin" or "cms50d"
    device_id: str = ""  # hl7: the sender's device id
    device: str = ""  # serial: the port path


@dataclass(frozen=True)
class BedBinding:
    room: str
    camera: CameraAddress | None = None
    monitor: MonitorAddress | None = None


def parse_camera(url: str) -> CameraAddress:
    parts = urlsplit(url)
    if parts.scheme not in CAMERA_SCHEMES:
        raise BindingError(f"camera address must start with {', '.join(CAMERA_SCHEMES)}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        address = int(query.get("address", "1"))
        baudrate = int(query.get("baud", "9600"))
        port = parts.port
    except ValueError:
        raise BindingError(f"camera address {url!r} has a bad number") from None
    if not 1 <= address <= 7:
        raise BindingError("VISCA camera address must be 1 to 7")
    if parts.scheme == "visca-serial":
        if not parts.path:
            raise BindingError("visca-serial needs a device path, e.g. visca-serial:///dev/ttyUSB0")
        if baudrate not in (9600, 19200, 38400):
            raise BindingError("VISCA serial speed must be 9600, 19200 or 38400 baud")
        return CameraAddress(parts.scheme, device=parts.path, baudrate=baudrate, address=address)
    if not parts.hostname:
        raise BindingError(f"{parts.scheme} needs a host")
    if parts.scheme == "visca-tcp" and port is None:
        raise BindingError("visca-tcp needs a port")
    return CameraAddress(parts.scheme, host=parts.hostname,
                         port=port or DEFAULT_VISCA_UDP_PORT, address=address)


def parse_monitor(url: str) -> MonitorAddress:
    scheme, _, rest = url.partition(":")
    if scheme == "hl7":
        if not rest:
            raise BindingError("hl7 monitors are named by device id, e.g. hl7:080019FFFE0B4020")
        return MonitorAddress("hl7", device_id=rest)
    if scheme in SERIAL_MONITOR_SCHEMES:
        path = urlsplit(url).path
        if not path:
            raise BindingError(f"{scheme} needs a serial device path, e.g. {scheme}:///dev/ttyUSB1")
        return MonitorAddress(scheme, device=path, device_id=f"{scheme}:{path}")
    raise BindingError("monitor address must start with hl7:, nonin:// or cms50d://")


def parse_bindings(raw: Sequence[Mapping[str, Any]]) -> list[BedBinding]:
    bindings: list[BedBinding] = []
    rooms: set[str] = set()
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise BindingError(f"devices.beds[{index}] must be a table")
        room = item.get("room")
        if not isinstance(room, str) or not room:
            raise BindingError(f"devices.beds[{index}] needs a room")
        if room in rooms:
            raise BindingError(f"room {room!r} is bound twice")
        rooms.add(room)
        unknown = set(item) - {"room", "camera", "monitor"}
        if unknown:
            raise BindingError(f"devices.beds[{index}] has unknown keys {sorted(unknown)}")
        camera = item.get("camera")
        monitor = item.get("monitor")
        try:
            bindings.append(BedBinding(
                room=room,
                camera=parse_camera(camera) if camera else None,
                monitor=parse_monitor(monitor) if monitor else None,
            ))
        except BindingError as exc:
            raise BindingError(f"devices.beds[{index}] ({room}): {exc}") from None
    return bindings
