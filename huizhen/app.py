"""The composition root: the one place that wires configuration, media and signalling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from aiortc import RTCIceServer

from config import Settings
from mediaserver import LatencyProbe, MediaConfig, MediaServer
from signaling import (
    AUTHORITY,
    LATENCY_PROBE,
    MEDIA_SERVER,
    SIGNALING_CONFIG,
    SignalingConfig,
    TokenAuthority,
    setup_routes,
)

WEB_ROOT = Path(__file__).resolve().parent.parent / "web_client"


def token_authority(settings: Settings) -> TokenAuthority:
    auth = settings.auth
    return TokenAuthority(auth.token_secret, auth.issuer, auth.audience)


def media_config(settings: Settings, probe: LatencyProbe | None = None) -> MediaConfig:
    return MediaConfig(
        # The server's own ICE agent uses STUN only; TURN credentials are for browsers.
        ice_servers=tuple(
            RTCIceServer(urls=[u for u in s.urls if u.startswith("stun:")])
            for s in settings.ice_servers if any(u.startswith("stun:") for u in s.urls)
        ),
        ice_addresses=settings.media.ice_addresses,
        keyframe_interval=settings.media.keyframe_interval,
        retransmission_buffer=settings.media.retransmission_buffer,
        probe=probe,
    )


def create_app(settings: Settings, *, probe: LatencyProbe | None = None,
               web_root: Path = WEB_ROOT) -> web.Application:
    """Build the aiohttp application; nothing is started until it runs."""
    app = web.Application(client_max_size=1024 * 1024)
    media = MediaServer(media_config(settings, probe))
    app[MEDIA_SERVER] = media
    app[AUTHORITY] = token_authority(settings)
    app[SIGNALING_CONFIG] = SignalingConfig(
        ice_servers=tuple(s.to_json() for s in settings.ice_servers),
        max_message_bytes=settings.server.max_message_bytes,
    )
    if probe is not None:
        app[LATENCY_PROBE] = probe

    async def media_lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await media.close()

    app.cleanup_ctx.append(media_lifecycle)
    setup_routes(app, web_root)
    return app
