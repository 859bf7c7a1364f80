"""The one-command demo: the server on embedded defaults plus a simulated bedside camera."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from aiohttp import web

from config import Settings
from huizhen.app import create_app, token_authority
from huizhen.bedside import SimulatedBedside


async def run_demo(settings: Settings, room: str, duration: float = 0.0) -> None:
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port)
    await site.start()
    base = settings.server.base_url
    ws_url = base.replace("http", "ws", 1) + "/ws"
    authority = token_authority(settings)
    ttl = settings.auth.default_ttl
    bedside = SimulatedBedside(
        ws_url, authority.mint(room=room, role="ward", name="Bedside camera (simulated)", ttl=ttl)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await bedside.start()
        expert = authority.mint(room=room, role="expert", name="Demo expert", ttl=ttl)
        ward = authority.mint(room=room, role="ward", name="Demo ward nurse", ttl=ttl)
        print(
            "\n huizhen demo is running (Ctrl-C stops it)\n"
            f"   room:         {room}\n"
            f"   expert page:  {base}/expert.html#token={expert}\n"
            f"   ward page:    {base}/ward.html#token={ward}\n"
            f"   health:       {base}/api/v1/health\n",
            flush=True,
        )
        if duration > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
        else:
            await stop.wait()
    finally:
        await bedside.stop()
        await runner.cleanup()
