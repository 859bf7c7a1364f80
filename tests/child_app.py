"""What the child-process test servers (memory_child, codec_spy) share: serve an app on
loopback, say ``ready`` on stdout (``tests.conftest.child_server`` waits for it), run forever."""

from __future__ import annotations

import asyncio

from aiohttp import web


async def serve_forever(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()
