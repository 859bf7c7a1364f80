"""Sony VISCA PTZ cameras: a sans-I/O protocol core, pluggable transports, and a simulator.

``codec`` (packets), ``sony_ip`` (VISCA-over-IP header and sequence numbers) and
``session`` (flow control) are pure; ``serial_transport`` and ``ip_transport`` carry the
bytes; ``camera.PtzCamera`` is the API the application uses; ``simulated_camera`` and
``simulator`` stand in for a camera in tests and demos (``python -m devices.visca``);
``url`` turns the configuration's camera URLs into transports and cameras.
"""

from devices.visca.camera import PtzCamera
from devices.visca.codec import BRC_H700, EVI_D70, CameraProfile, PanTilt, Version
from devices.visca.errors import (
    CameraOffline,
    MalformedReply,
    ViscaCommandError,
    ViscaError,
    ViscaTimeout,
)
from devices.visca.ip_transport import RawUdpTransport, SonyUdpTransport, TcpTransport
from devices.visca.serial_transport import SerialTransport
from devices.visca.transport import ViscaTransport
from devices.visca.url import camera_from_url, transport_from_url

__all__ = [
    "BRC_H700",
    "EVI_D70",
    "CameraOffline",
    "CameraProfile",
    "MalformedReply",
    "PanTilt",
    "PtzCamera",
    "RawUdpTransport",
    "SerialTransport",
    "SonyUdpTransport",
    "TcpTransport",
    "Version",
    "ViscaCommandError",
    "ViscaError",
    "ViscaTimeout",
    "ViscaTransport",
    "camera_from_url",
    "transport_from_url",
]
