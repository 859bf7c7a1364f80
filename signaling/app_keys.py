"""Typed application state shared by the signalling handlers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from mediaserver import LatencyProbe, MediaServer
from signaling.cascade import EdgeRooms
from signaling.client_stats import ClientStatsBook
from signaling.quotas import Quotas
from signaling.services import RoomServices
from signaling.tokens import TokenAuthority
from signaling.turn import TurnServer


@dataclass(frozen=True)
class SignalingConfig:
    ice_servers: tuple[dict[str, object], ...] = ()
    # Minted per participant into the join reply (signaling/turn.py); None: no TURN secret.
    turn: TurnServer | None = None
    ice_transport_policy: str = "all"  # "all" or "relay", handed to the pages
    max_message_bytes: int = 65536
    join_timeout: float = 10.0
    messages_per_second: float = 20.0
    message_burst: int = 60
    outgoing_queue: int = 512
    # WebSocket ping after this many seconds without a frame from the client; no pong
    # within half of it closes the socket (a dead client is gone within 1.5x this).
    heartbeat: float = 5.0
    # Quotas across sockets (0: unlimited); see signaling/quotas.py and PROTOCOL.md.
    sockets_per_token: int = 4
    peer_connections_per_token: int = 16
    sockets_per_address: int = 64


MEDIA_SERVER = web.AppKey("media_server", MediaServer)
AUTHORITY = web.AppKey("token_authority", TokenAuthority)
SIGNALING_CONFIG = web.AppKey("signaling_config", SignalingConfig)
LATENCY_PROBE = web.AppKey("latency_probe", LatencyProbe)
ROOM_SERVICES: web.AppKey[RoomServices] = web.AppKey("room_services")
# Relayed rooms of a cascade (several nodes, `[cluster] cascade`): absent, viewers of a
# room on another node are redirected there.
EDGE_ROOMS: web.AppKey[EdgeRooms] = web.AppKey("edge_rooms")
QUOTAS = web.AppKey("signaling_quotas", Quotas)
# The pages' `client-stats`, latest per participant and stream (read by /metrics).
CLIENT_STATS = web.AppKey("client_stats", ClientStatsBook)
# Open signalling sockets, closed with 1001 on shutdown (aiohttp would otherwise wait
# for every handler to end by itself).
SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("signaling_sockets")
# What other parts of the node say in /api/v1/health: each check returns None when all
# is well, else {"component", "status": "warning"|"degraded", "reason", ...}.
HealthCheck = Callable[[], Mapping[str, object] | None]
HEALTH_CHECKS: web.AppKey[list[HealthCheck]] = web.AppKey("health_checks")
