"""The one-command demo: the server on embedded defaults plus a simulated bedside.

The bedside is a moving test-pattern camera with a clock (published like a ward PC
would), a VISCA PTZ camera simulator on a loopback UDP port, and an HL7 monitor
simulator sending vitals and a pleth waveform over MLLP. Nothing external is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket

from config import Settings
from devices.hl7.simulator import MonitorProfile, MonitorSimulator
from devices.visca.simulated_camera import SimulatedCamera
from devices.visca.simulator import CameraSimulator
from huizhen.app import create_app, token_authority
from huizhen.bedside import SimulatedBedside
from huizhen.running import serving, wait_for_stop

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


async def run_demo(settings: Settings, room: str, duration: float = 0.0,
                   alarms: bool = False) -> None:
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
        authority.mint(room=room, role="ward", name="Bedside camera (simulated)", ttl=ttl),
    )
    hl7 = settings.devices.hl7_address
    monitor_task: asyncio.Task[None] | None = None
    async with serving(create_app(settings), settings.server.host, settings.server.port):
        try:
            await bedside.start()
            if hl7 is not None:
                monitor = MonitorSimulator(hl7[0], hl7[1], interval=1.0, profile=profile,
                                           alarm_demo=alarms)
                monitor_task = asyncio.create_task(_run_monitor(monitor))
            beds = settings.devices.beds
            devices = json.dumps(beds[0]) if beds else "none"
            expert = authority.mint(room=room, role="expert", name="Demo expert", ttl=ttl)
            ward = authority.mint(room=room, role="ward", name="Demo ward nurse", ttl=ttl)
            print(
                "\n huizhen demo is running (Ctrl-C stops it)\n"
                f"   room:         {room}\n"
                f"   expert page:  {base}/expert.html#token={expert}\n"
                f"   ward page:    {base}/ward.html#token={ward}\n"
                f"   health:       {base}/api/v1/health\n"
                f"   devices:      {devices}\n",
                flush=True,
            )
            await wait_for_stop(duration)
        finally:
            if monitor_task is not None:
                monitor_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await monitor_task
            await bedside.stop()
    await camera.close()
