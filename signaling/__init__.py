"""signaling: the aiohttp WebSocket signalling layer (protocol in PROTOCOL.md)."""

from signaling.app_keys import (
    AUTHORITY,
    LATENCY_PROBE,
    MEDIA_SERVER,
    SIGNALING_CONFIG,
    SignalingConfig,
)
from signaling.messages import PROTOCOL_VERSION
from signaling.routes import setup_routes
from signaling.tokens import ROLE_GRANTS, Grant, TokenAuthority, TokenError

__all__ = [
    "AUTHORITY",
    "LATENCY_PROBE",
    "MEDIA_SERVER",
    "PROTOCOL_VERSION",
    "ROLE_GRANTS",
    "SIGNALING_CONFIG",
    "Grant",
    "SignalingConfig",
    "TokenAuthority",
    "TokenError",
    "setup_routes",
]
