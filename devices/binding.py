"""Which camera and which monitor belong to which room (bed), from configuration (pure).

Camera addresses: the URLs of ``devices.visca.url`` (``visca-udp://HOST[:52381]``,
``visca-tcp://HOST:PORT``, ``visca-raw-udp://HOST:PORT``,
``visca-serial:///dev/ttyUSB0?baud=9600&address=1``).
A bed may have a ``label``: its display name on the pages (e.g. "ICU 3 · 12 床"), at most
64 characters; a place, never a patient's name or number.
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
from urllib.parse import urlsplit

from devices.visca.url import transport_from_url

SERIAL_MONITOR_SCHEMES = ("nonin", "cms50d")


class BindingError(ValueError):
    """A bed binding in the configuration is malformed."""


@dataclass(frozen=True)
class MonitorAddress:
    scheme: str  # "hl7", "nonin" or "cms50d"
    device_id: str = ""  # the id its samples carry (hl7: the sender's device id)
    device: str = ""  # serial: the port path


@dataclass(frozen=True)
class BedBinding:
    room: str
    camera: str | None = None
    """A camera URL, as devices.visca.url understands it."""
    monitor: MonitorAddress | None = None
    label: str | None = None
    """The bed's display name on the pages (a place, never patient data)."""


MAX_LABEL = 64


def check_label(label: object) -> str:
    if not isinstance(label, str) or not label.strip():
        raise BindingError("label must be a non-empty string")
    if len(label) > MAX_LABEL:
        raise BindingError(f"label is longer than {MAX_LABEL} characters")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in label):
        raise BindingError("label must not contain control characters")
    return label.strip()


def check_camera(url: str) -> str:
    """Validate a camera URL without opening anything."""
    try:
        transport_from_url(url)
    except ValueError as exc:
        raise BindingError(str(exc)) from None
    return url


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
        unknown = set(item) - {"room", "camera", "monitor", "label"}
        if unknown:
            raise BindingError(f"devices.beds[{index}] has unknown keys {sorted(unknown)}")
        camera = item.get("camera")
        monitor = item.get("monitor")
        label = item.get("label")
        try:
            bindings.append(BedBinding(
                room=room,
                camera=check_camera(camera) if camera else None,
                monitor=parse_monitor(monitor) if monitor else None,
                label=check_label(label) if label is not None else None,
            ))
        except BindingError as exc:
            raise BindingError(f"devices.beds[{index}] ({room}): {exc}") from None
    return bindings
