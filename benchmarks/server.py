"""The real huizhen server with the latency probe, on a loopback port (benchmark child).

    python -m benchmarks.server --port 18080

Prints ``{"event": "ready", "url": ..., "pid": ...}`` once it accepts connections;
stops when stdin closes or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from aiohttp import web

from benchmarks.common import HOST, bench_settings, emit, quiet_logging, serve_control
from huizhen.app import create_app
from mediaserver import LatencyProbe


async def run(port: int, record_dir: str | None) -> None:
    settings = bench_settings(port, record_dir)
    app = create_app(settings, probe=LatencyProbe())
    # aiohttp waits up to shutdown_timeout for open WebSocket handlers to end, and the
    # app does not close them on shutdown: cap the wait (the orchestrator stops the
    # clients first anyway).
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=3.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, port)
        await site.start()
        emit("ready", url=f"http://{HOST}:{port}", pid=os.getpid())
        await serve_control()
    finally:
        await asyncio.wait_for(runner.cleanup(), 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", default=None,
                        help="record every room into this directory (recorder scenario)")
    args = parser.parse_args()
    quiet_logging()
    asyncio.run(run(args.port, args.record))


if __name__ == "__main__":
    main()
