"""The composition root: the one place that wires configuration, media and signalling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from aiortc import RTCIceServer

from config import ConfigError, Settings
from contracts.catalogue import DEFAULT_LANGUAGE, Catalogue
from devices.binding import BindingError, parse_bindings
from huizhen.device_hub import DeviceHub
from huizhen.metrics import SnapshotCollector, setup_metrics
from huizhen.recording_access import recording_authorizer
from huizhen.recording_room_state import WithRecordingState
from mediaserver import LocalRoomBus, MediaConfig, MediaServer, RoomBus, RoomLimits, SeatLimits
from recorder.disk_guard import MIB, DiskPolicy
from recorder.http import VodRenderer, setup_recording_routes, subprocess_runner
from recorder.library import RetentionPolicy, retention_context
from recorder.service import RecorderService
from recorder.vod_auto import AutoRenderPolicy, AutoRenders
from signaling import (
    AUTHORITY,
    MEDIA_SERVER,
    ROOM_SERVICES,
    SIGNALING_CONFIG,
    SignalingConfig,
    TokenAuthority,
    setup_routes,
)
from signaling.app_keys import CLIENT_STATS, EDGE_ROOMS, HEALTH_CHECKS
from signaling.client_stats import ClientStatsBook
from signaling.services import NoRoomServices
from signaling.turn import TurnServer
from signaling.whip import setup_whip_routes

WEB_ROOT = Path(__file__).resolve().parent.parent / "web_client"


def token_authority(settings: Settings) -> TokenAuthority:
    auth = settings.auth
    return TokenAuthority(auth.token_secret, auth.issuer, auth.audience)


def media_config(settings: Settings) -> MediaConfig:
    return MediaConfig(
        # The server's own ICE agent uses STUN only; TURN credentials are for browsers.
        ice_servers=tuple(
            RTCIceServer(urls=[u for u in s.urls if u.startswith("stun:")])
            for s in settings.ice_servers if any(u.startswith("stun:") for u in s.urls)
        ),
        ice_addresses=settings.media.ice_addresses,
        keyframe_interval=settings.media.keyframe_interval,
        retransmission_buffer=settings.media.retransmission_buffer,
        connect_timeout=settings.media.connect_timeout,
        empty_room_grace=settings.media.empty_room_grace,
        simulcast=settings.media.simulcast,
        setup_concurrency=settings.media.setup_concurrency,
        admit_cpu=settings.media.admit_cpu,
    )


def room_limits(settings: Settings) -> RoomLimits:
    media = settings.media
    return RoomLimits(
        seats=SeatLimits(publishers=media.room_publishers, viewers=media.room_viewers),
        publications_per_participant=media.publications_per_participant,
        subscriptions_per_participant=media.subscriptions_per_participant,
        pending_per_participant=media.pending_per_participant,
        answer_timeout=media.answer_timeout,
    )


def signaling_config(settings: Settings) -> SignalingConfig:
    sig = settings.signaling
    return SignalingConfig(
        ice_servers=tuple(s.to_json() for s in settings.ice_servers),
        turn=turn_server(settings),
        ice_transport_policy=settings.ice_transport_policy,
        max_message_bytes=settings.server.max_message_bytes,
        join_timeout=sig.join_timeout,
        messages_per_second=sig.messages_per_second,
        message_burst=sig.message_burst,
        outgoing_queue=sig.outgoing_queue,
        sockets_per_token=sig.sockets_per_token,
        peer_connections_per_token=sig.peer_connections_per_token,
        sockets_per_address=sig.sockets_per_address,
    )


def turn_server(settings: Settings) -> TurnServer | None:
    """The TURN server whose credentials are minted per participant, if configured."""
    turn = settings.turn
    if turn is None:
        return None
    return TurnServer(urls=turn.urls, secret=turn.secret.encode("utf-8"), ttl_s=turn.ttl)


def create_app(settings: Settings, *, web_root: Path = WEB_ROOT) -> web.Application:
    """Build the aiohttp application; nothing is started until it runs."""
    app = web.Application(client_max_size=1024 * 1024)
    cluster = None
    if settings.cluster.enabled:
        # Imported only with Redis configured: one node (the demo) never loads the client.
        from huizhen.cluster import cluster_directory, setup_cluster

        cluster = cluster_directory(settings)
        if cluster is not None:  # registered first, so the node leaves after its rooms closed
            setup_cluster(app, cluster)
    media = MediaServer(media_config(settings), room_limits(settings), directory=cluster)
    app[MEDIA_SERVER] = media
    app[AUTHORITY] = token_authority(settings)
    app[SIGNALING_CONFIG] = signaling_config(settings)

    async def media_lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await media.close()

    app.cleanup_ctx.append(media_lifecycle)
    if cluster is not None and settings.cluster.cascade:
        setup_cascade(app, media)
    hub = device_hub(settings, LocalRoomBus(media.directory))
    if hub is not None:
        app[ROOM_SERVICES] = hub

        async def devices_lifecycle(app: web.Application) -> AsyncIterator[None]:
            await hub.start()
            yield
            await hub.stop()

        # Registered after the media server, so it is cleaned up before it.
        app.cleanup_ctx.append(devices_lifecycle)
    recorder = setup_recording(app, settings, media)
    if recorder is not None:  # `joined` says when the room's recording is stopped
        app[ROOM_SERVICES] = WithRecordingState(app.get(ROOM_SERVICES) or NoRoomServices(),
                                                recorder)
    client_stats = app[CLIENT_STATS] = ClientStatsBook()
    setup_metrics(app, settings.metrics, SnapshotCollector(
        media.stats, lambda: hub.listener.stats if hub and hub.listener else None,
        lambda: recorder.written if recorder is not None else None, client_stats.snapshot))
    setup_front_door(app, settings)
    setup_routes(app, web_root)
    setup_whip_routes(app)
    return app


def setup_cascade(app: web.Application, media: MediaServer) -> None:
    """Relay rooms living on other nodes to this node's viewers (``[cluster] cascade``)."""
    from huizhen.cascade import EdgeLinks

    edges = app[EDGE_ROOMS] = EdgeLinks(media, app[AUTHORITY])

    async def cascade_lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await edges.close()  # registered after the media server: closed before it

    app.cleanup_ctx.append(cascade_lifecycle)


def setup_front_door(app: web.Application, settings: Settings) -> None:
    """The start page (index.html) links to the consultation workspace, where people sign
    in: ``GET /api/v1/front-door`` says where it is (``records.public_url``, else the
    records service's host and port)."""
    workspace_url = settings.records.base_url + "/"

    async def front_door(request: web.Request) -> web.Response:
        return web.json_response({"workspace_url": workspace_url})

    app.router.add_get("/api/v1/front-door", front_door)


def setup_recording(app: web.Application, settings: Settings,
                    media: MediaServer) -> RecorderService | None:
    """Record every room (when enabled), and serve recordings and teaching video; returns
    the recorder service (None when recording is off)."""
    rec = settings.recorder
    directory = rec.directory_for(settings.storage.data_dir)
    # The teaching video's labels in the product's default language, from the catalogue
    # the pages use (the recorder itself does not read it).
    labels = Catalogue.load().labels("vod", DEFAULT_LANGUAGE)
    vod = settings.vod
    renderer = VodRenderer(runner=subprocess_runner(labels, vod.nice),
                           concurrency=vod.concurrency)
    recordings = setup_recording_routes(
        app, directory, recording_authorizer(app[AUTHORITY]), settings.auth.token_secret,
        renderer=renderer, secure_cookies=settings.server.base_url.startswith("https:"))
    # Rooms that close get their teaching video rendered in the background (same queue).
    auto = AutoRenders(renderer, recordings.library, AutoRenderPolicy(
        vod.auto, vod.max_auto_minutes * 60.0, vod.startup_hours))
    service: RecorderService | None = None
    if rec.enabled:
        service = RecorderService(media.directory, directory, rec.handoff_url,
                                  handoff_token=rec.handoff_token, disk=disk_policy(settings),
                                  disk_interval=rec.disk_check_interval or 5.0,
                                  reserve_bytes=rec.disk_reserve_mib * MIB,
                                  on_finished=auto.finished)
        app.setdefault(HEALTH_CHECKS, []).append(service.health)
        # A teaching video rendered after the hand-off reaches the records service too.
        renderer.on_ready = service.refresh_handoff

        async def recorder_lifecycle(app: web.Application) -> AsyncIterator[None]:
            directory.mkdir(parents=True, exist_ok=True)
            await service.start()
            await auto.start(datetime.now(UTC))
            yield
            # Cleaned up before the media server: every manifest is written first.
            await service.stop()
            await auto.close()

        app.cleanup_ctx.append(recorder_lifecycle)
    if rec.retention_days > 0 or rec.retention_max_mib > 0:
        policy = RetentionPolicy(
            keep_days=rec.retention_days or None, max_total_bytes=rec.retention_max_mib * MIB,
            require_handoff=bool(rec.handoff_url),
            keep_unclaimed_days=rec.retention_unclaimed_days)
        app.cleanup_ctx.append(retention_context(recordings.library, policy, interval=3600))
    return service


def disk_policy(settings: Settings) -> DiskPolicy | None:
    """The recorder's free-space guard (None: ``disk_check_interval`` is 0)."""
    rec = settings.recorder
    if rec.disk_check_interval <= 0:
        return None
    return DiskPolicy(warn_bytes=rec.disk_warn_mib * MIB, warn_percent=rec.disk_warn_percent,
                      stop_bytes=rec.disk_stop_mib * MIB, stop_percent=rec.disk_stop_percent,
                      resume_bytes=rec.disk_resume_mib * MIB, failure_hold=rec.disk_failure_hold)


def device_hub(settings: Settings, bus: RoomBus) -> DeviceHub | None:
    """The bedside devices of this node, or None when the configuration names none."""
    devices = settings.devices
    if not devices.beds and devices.hl7_address is None:
        return None
    try:
        bindings = parse_bindings(devices.beds)
    except BindingError as exc:
        raise ConfigError(str(exc)) from None
    data_dir = settings.storage.data_dir
    if not devices.database_url:
        data_dir.mkdir(parents=True, exist_ok=True)
    return DeviceHub(bus, bindings, devices.database_for(data_dir), devices.hl7_address,
                     devices.hl7_default_zone, hl7_options=devices.hl7_listener_options())
