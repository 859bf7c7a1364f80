"""The one-command demo: the server on embedded defaults plus a simulated bedside.

The bedside is a moving test-pattern camera with a clock (published like a ward PC
would), a VISCA PTZ camera simulator on a loopback UDP port, and an HL7 monitor
simulator sending vitals and a pleth waveform over MLLP. Nothing external is needed.

Unless ``--no-records``, the same process also runs the consultation workspace (the records
service) on its own loopback port, with a demo province (``huizhen.demo_records``) whose
consultation is scheduled now; the bedside publishes into that consultation's live room,
so an expert who signs in and joins live sees the simulated camera, PTZ and vitals.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from config import Settings
from contracts.roles import Role
from devices.hl7.simulator import MonitorProfile, MonitorSimulator
from devices.visca.simulated_camera import SimulatedCamera
from devices.visca.simulator import CameraSimulator
from huizhen import demo_records
from huizhen.app import WEB_ROOT, create_app, token_authority
from huizhen.bedside import SimulatedBedside
from huizhen.demo_records import Seeded
from huizhen.running import StartupError, bind, serving, serving_on, wait_for_stop

logger = logging.getLogger(__name__)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def with_simulated_devices(settings: Settings, room: str, camera_port: int, hl7_port: int,
                           monitor_id: str) -> Settings:
    """Bind the demo room to the simulators, unless the configuration binds beds itself."""
    if settings.devices.beds:
        return settings
    devices = dataclasses.replace(
        settings.devices,
        hl7_listen=f"127.0.0.1:{hl7_port}",
        beds=({"room": room, "camera": f"visca-udp://127.0.0.1:{camera_port}",
               "monitor": f"hl7:{monitor_id}"},),
    )
    return dataclasses.replace(settings, devices=devices)


async def _run_monitor(simulator: MonitorSimulator) -> None:
    while True:  # the listener may not be up yet, or may restart: keep trying
        try:
            await simulator.run()
        except (OSError, ConnectionError) as exc:
            logger.info("simulated monitor reconnecting (%s)", type(exc).__name__)
        await asyncio.sleep(1.0)


DEFAULT_ROOM = "demo-bed-1"


@dataclass(frozen=True)
class DemoWorkspace:
    """The records service's part of the demo, prepared before anything serves."""

    sockets: list[socket.socket]
    url: str
    base: str
    seeded: Seeded


def _close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def workspace_base(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def prepare_workspace(settings: Settings) -> DemoWorkspace:
    """Bind the records service's port (loopback: checked by the caller), then migrate and
    seed the demo database in a worker thread; a port in use or a seeding problem is one
    line (``StartupError``)."""
    records = settings.records
    sockets = bind(records.host, records.port)
    try:
        data_dir = settings.storage.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        url = demo_records.database_url(data_dir)
        seeded = await asyncio.to_thread(demo_records.prepare, url, datetime.now(UTC))
    except BaseException as exc:
        _close_all(sockets)
        if isinstance(exc, demo_records.DemoSeedError):
            raise StartupError(str(exc)) from None
        raise
    return DemoWorkspace(sockets, url, workspace_base(records.host, records.port), seeded)


def workspace_app(settings: Settings, workspace: DemoWorkspace) -> web.Application:
    from consult_api.app import create_app as create_records_app

    return create_records_app(
        workspace.url, settings.records.token_secret, data_dir=settings.storage.data_dir,
        max_upload=settings.records.max_upload_bytes, room_tokens=token_authority(settings),
        secure_cookies=False, web_root=WEB_ROOT, media_url=settings.server.base_url)


def workspace_lines(workspace: DemoWorkspace) -> list[str]:
    """What the demo prints about the workspace: Chinese first, then English. The demo
    passwords appear here only (the service listens on loopback only)."""
    c = workspace.seeded.consultation_id
    lines = [
        f" 会诊工作台 / consultation workspace:  {workspace.base}/",
        f"   演示会诊 #{c} 已排期，正在进行：以会诊专家登录，在“我的工作列表”中点“进入视频会诊”",
        f"   demo consultation #{c} is scheduled now: sign in as the expert, open "
        "\"My worklist\" and \"Join live session\"",
        " 注意：以下为公开的演示账号，仅供本机演示，切勿用于真实患者 / "
        "Warning: public demo accounts, for this demo on this machine only, never for real "
        "patients",
        "   用户名 / 密码 / 角色 (username / password / role):",
    ]
    lines += [f"   {p.username} / {p.password} / {p.role_zh} {p.role.value}"
              f"  ({p.display_name}, {p.hospital})" for p in demo_records.PEOPLE]
    return lines


async def run_demo(settings: Settings, room: str | None = None, duration: float = 0.0,
                   alarms: bool = False, records: bool = True) -> None:
    """The media server and the simulated bedside; with ``records``, also the consultation
    workspace (the records service) on its own loopback port, seeded with a demo province
    whose consultation is live now: the bedside publishes into that consultation's room."""
    workspace = await prepare_workspace(settings) if records else None
    if workspace is not None:
        room = workspace.seeded.room
    room = room or DEFAULT_ROOM
    camera = CameraSimulator(SimulatedCamera())
    _, camera_port = await camera.serve_udp("127.0.0.1", 0)
    profile = MonitorProfile()
    settings = with_simulated_devices(settings, room, camera_port, _free_port("127.0.0.1"),
                                      profile.device_id)
    base = settings.server.base_url
    authority = token_authority(settings)
    ttl = settings.auth.default_ttl
    bedside = SimulatedBedside(
        base.replace("http", "ws", 1) + "/ws",
        authority.mint(room=room, role=Role.WARD, name="Bedside camera (simulated)", ttl=ttl),
    )
    hl7 = settings.devices.hl7_address
    monitor_task: asyncio.Task[None] | None = None
    async with contextlib.AsyncExitStack() as stack:
        if workspace is not None:  # its sockets close even if the media server cannot start
            stack.callback(_close_all, workspace.sockets)
        await stack.enter_async_context(
            serving(create_app(settings), settings.server.host, settings.server.port))
        try:
            await bedside.start()
            if hl7 is not None:
                monitor = MonitorSimulator(hl7[0], hl7[1], interval=1.0, profile=profile,
                                           alarm_demo=alarms)
                monitor_task = asyncio.create_task(_run_monitor(monitor))
            if workspace is not None:
                await stack.enter_async_context(
                    serving_on(workspace_app(settings, workspace), workspace.sockets))
            beds = settings.devices.beds
            devices = json.dumps(beds[0]) if beds else "none"
            expert = authority.mint(room=room, role=Role.EXPERT, name="Demo expert", ttl=ttl)
            ward = authority.mint(room=room, role=Role.WARD, name="Demo ward nurse", ttl=ttl)
            text = (
                "\n huizhen demo is running (Ctrl-C stops it)\n"
                f"   room:         {room}\n"
                f"   expert page:  {base}/expert.html#token={expert}\n"
                f"   ward page:    {base}/ward.html#token={ward}\n"
                f"   health:       {base}/api/v1/health\n"
                f"   devices:      {devices}\n"
            )
            if workspace is not None:
                text += "\n" + "\n".join(workspace_lines(workspace)) + "\n"
            print(text, flush=True)
            await wait_for_stop(duration)
        finally:
            if monitor_task is not None:
                monitor_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await monitor_task
            await bedside.stop()
    await camera.close()
