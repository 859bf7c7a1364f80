"""HTTP routes: the signalling WebSocket, health, statistics, and the web client."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from aiohttp import web

from contracts.roles import STATS
from mediaserver.stats import ProducerStats, RoomStats, TransportStats
from signaling.app_keys import (
    AUTHORITY,
    CLIENT_STATS,
    EDGE_ROOMS,
    HEALTH_CHECKS,
    LATENCY_PROBE,
    MEDIA_SERVER,
    QUOTAS,
    ROOM_SERVICES,
    SIGNALING_CONFIG,
    SOCKETS,
)
from signaling.client_stats import ClientStatsBook
from signaling.messages import error_json
from signaling.quotas import QuotaLimits, Quotas
from signaling.services import NoRoomServices
from signaling.session import CLOSE_POLICY, SignalingSession
from signaling.tokens import TokenError

logger = logging.getLogger(__name__)

# The live pages: scripts and styles from this origin only, the signalling WebSocket to the
# same host (listed as ws:/wss: too, for browsers that do not count them as 'self'), WebRTC
# and recorded video as blob:/mediastream:, the data: favicon.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; "
            "img-src 'self' data: blob:; connect-src 'self'{sockets}; "
            "media-src 'self' blob: mediastream:; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; form-action 'self'")
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def page_csp(host: str | None) -> str:
    """The pages' CSP; the WebSocket sources name the host only when it is a plain host."""
    sockets = f" ws://{host} wss://{host}" if host and _HOST.fullmatch(host) else ""
    return PAGE_CSP.format(sockets=sockets)


async def security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """nosniff everywhere; no caching of the JSON API; the CSP on HTML pages."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/api/"):
        headers["Cache-Control"] = "no-store"
    elif response.content_type == "text/html":
        headers["Content-Security-Policy"] = page_csp(request.host)
        headers["X-Frame-Options"] = "DENY"


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    config = request.app[SIGNALING_CONFIG]
    # Messages up to 4x the protocol limit get an error and the connection lives on;
    # beyond that aiohttp closes the socket with 1009 (message too big).
    ws = web.WebSocketResponse(heartbeat=config.heartbeat or None,
                               max_msg_size=4 * config.max_message_bytes)
    await ws.prepare(request)
    quotas = request.app[QUOTAS]
    address = request.remote or "-"
    if not quotas.open_socket(address):
        # Upgraded first so that a browser can read why (it never sees an HTTP status).
        limit = quotas.limits.sockets_per_address
        await ws.send_json(error_json("too-many-connections",
                                      f"at most {limit} connections from one address"))
        await ws.close(code=CLOSE_POLICY, message=b"too many connections")
        return ws
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    services = request.app.get(ROOM_SERVICES) or NoRoomServices()
    session = SignalingSession(ws, request.app[MEDIA_SERVER], request.app[AUTHORITY], config,
                               services, quotas, request.app[CLIENT_STATS],
                               request.app.get(EDGE_ROOMS))
    try:
        await session.run()
    finally:
        sockets.discard(ws)
        quotas.close_socket(address)
        if not ws.closed:
            await ws.close()
    return ws


async def close_sockets(app: web.Application) -> None:
    """On shutdown, tell every client the server is going away (1001) instead of waiting."""
    sockets = app[SOCKETS]
    for ws in [*sockets]:
        await ws.close(code=1001, message=b"server shutdown")


async def health(request: web.Request) -> web.Response:
    """``ok``, or ``degraded`` while a part of the node does not work (e.g. recording
    stopped by a full disk); warnings and problems are listed. Always 200: live rooms
    still work."""
    media = request.app[MEDIA_SERVER]
    body: dict[str, object] = {"status": "ok", "rooms": len(media.directory.local_names())}
    reports = [r for check in request.app.get(HEALTH_CHECKS, ()) if (r := check()) is not None]
    if any(r.get("status") == "degraded" for r in reports):
        body["status"] = "degraded"
    if reports:
        body["checks"] = [dict(r) for r in reports]
    return web.json_response(body)


def _room_json(room: RoomStats) -> dict[str, object]:
    """A room's counters; media ports' drops (strangers, malformed, forged) per transport
    and summed over the room."""
    return {"name": room.name, "participants": room.participants,
            "publishers": room.publishers, "viewers": room.viewers,
            "producers": [_producer_json(p) for p in room.producers],
            "transports": [_transport_json(t) for t in room.transports],
            **room.dropped.as_json(),
            **({"relayedFrom": room.origin} if room.origin is not None else {})}


def _transport_json(transport: TransportStats) -> dict[str, object]:
    return {"id": transport.id, "direction": transport.direction, "state": transport.state,
            **transport.dropped.as_json()}


def _producer_json(producer: ProducerStats) -> dict[str, object]:
    """A producer and its RTP consumers (other downstreams, e.g. the recorder, are not
    listed: the JSON predates them)."""
    return {
        "id": producer.id, "kind": producer.kind, "codec": producer.codec,
        "packetsReceived": producer.packets_received,
        "keyframeRequestsSent": producer.keyframe_requests_sent,
        "layerBitrates": list(producer.layer_bitrates),
        "consumers": [{
            "id": d.id, "packetsSent": d.packets_sent, "retransmissions": d.retransmissions,
            "keyframeRequests": d.keyframe_requests, "started": d.started,
            "temporalLayer": d.temporal_layer, "spatialLayer": d.spatial_layer,
            "targetBitrate": d.target_bitrate,
            "layerSwitches": d.layer_switches, "copiesSent": d.copies_sent,
            "nacksHeld": d.nacks_held,
        } for d in producer.downstreams if d.kind == "rtp"],
    }


def require_operator(request: web.Request) -> None:
    """Refuse (401/403) a request without an operator token (the ``stats`` grant)."""
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else ""
    try:
        grant = request.app[AUTHORITY].verify(token)
    except TokenError as exc:
        raise web.HTTPUnauthorized(text=exc.message) from None
    if not grant.allows(STATS):
        raise web.HTTPForbidden(text="this token does not grant 'stats'")


async def stats(request: web.Request) -> web.Response:
    """Counters per room, producer and consumer (no names, no patient data)."""
    require_operator(request)
    snapshot = request.app[MEDIA_SERVER].stats()
    rooms = [_room_json(room) for room in snapshot.rooms]
    setup = snapshot.setup
    body: dict[str, object] = {"rooms": rooms, "setup": {
        "limit": setup.limit, "active": setup.active, "waiting": setup.waiting,
        "queuedTotal": setup.queued_total, "longestQueue": setup.longest_queue}}
    probe = request.app.get(LATENCY_PROBE)
    if probe is not None:
        summary = probe.summary()
        body["latency"] = {"copies": summary.copies, "p50Ms": summary.p50_ms,
                           "p99Ms": summary.p99_ms, "maxMs": summary.max_ms}
        if request.query.get("reset") == "1":
            probe.reset()
    return web.json_response(body)


def setup_routes(app: web.Application, web_root: Path) -> None:
    app[SOCKETS] = set()
    if CLIENT_STATS not in app:
        app[CLIENT_STATS] = ClientStatsBook()
    if QUOTAS not in app:
        config = app[SIGNALING_CONFIG]
        app[QUOTAS] = Quotas(QuotaLimits(config.sockets_per_token,
                                         config.peer_connections_per_token,
                                         config.sockets_per_address))
    app.on_shutdown.append(close_sockets)
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/ws", websocket_handler)
    app.router.add_get("/api/v1/health", health)
    app.router.add_get("/api/v1/stats", stats)

    async def index(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(web_root / "index.html")

    app.router.add_get("/", index)
    app.router.add_static("/", web_root, show_index=False, follow_symlinks=False)
