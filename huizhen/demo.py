"""The one-command demo: the server on embedded defaults plus a simulated bedside camera."""

from __future__ import annotations

from config import Settings
from huizhen.app import create_app, token_authority
from huizhen.bedside import SimulatedBedside
from huizhen.running import serving, wait_for_stop


async def run_demo(settings: Settings, room: str, duration: float = 0.0) -> None:
    base = settings.server.base_url
    authority = token_authority(settings)
    ttl = settings.auth.default_ttl
    bedside = SimulatedBedside(
        base.replace("http", "ws", 1) + "/ws",
        authority.mint(room=room, role="ward", name="Bedside camera (simulated)", ttl=ttl),
    )
    async with serving(create_app(settings), settings.server.host, settings.server.port):
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
            await wait_for_stop(duration)
        finally:
            await bedside.stop()
