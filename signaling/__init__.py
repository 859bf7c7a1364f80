"""signaling: the aiohttp WebSocket signalling layer (protocol in PROTOCOL.md)."""

from contracts.roles import ROLE_GRANTS
from signaling.app_keys import (
    AUTHORITY,
    LATENCY_PROBE,
    MEDIA_SERVER,
    ROOM_SERVICES,
    SIGNALING_CONFIG,
    SignalingConfig,
)
from signaling.messages import PROTOCOL_VERSION
from signaling.routes import setup_routes
from signaling.services import Caller, NoRoomServices, RoomServices, ServiceError
from signaling.tokens import Grant, TokenAuthority, TokenError

__all__ = [
    "AUTHORITY",
    "LATENCY_PROBE",
    "MEDIA_SERVER",
    "PROTOCOL_VERSION",
    "ROLE_GRANTS",
    "ROOM_SERVICES",
    "SIGNALING_CONFIG",
    "Caller",
    "Grant",
    "NoRoomServices",
    "RoomServices",
    "ServiceError",
    "SignalingConfig",
    "TokenAuthority",
    "TokenError",
    "setup_routes",
]
