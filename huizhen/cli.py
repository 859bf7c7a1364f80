"""Command line: ``huizhen serve``, ``huizhen token``, ``huizhen demo``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from aiohttp import web

from config import ConfigError, Settings, load_settings
from huizhen.app import create_app, token_authority


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.config)
    except ConfigError as exc:
        sys.exit(f"huizhen: {exc}")


async def _run_until_signal(runner: web.AppRunner, settings: Settings,
                            after_start: object = None) -> None:
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if after_start is not None:
            await after_start  # type: ignore[misc]
        await stop.wait()
    finally:
        await runner.cleanup()


def cmd_serve(args: argparse.Namespace) -> None:
    settings = _settings(args)
    print(f"huizhen listening on {settings.server.base_url}", flush=True)
    asyncio.run(_run_until_signal(web.AppRunner(create_app(settings)), settings))


def cmd_token(args: argparse.Namespace) -> None:
    settings = _settings(args)
    try:
        token = token_authority(settings).mint(
            room=args.room, role=args.role, name=args.name,
            ttl=args.ttl or settings.auth.default_ttl, subject=args.subject,
        )
    except ValueError as exc:
        sys.exit(f"huizhen: {exc}")
    print(token)


def cmd_demo(args: argparse.Namespace) -> None:
    from huizhen.demo import run_demo

    settings = _settings(args)
    asyncio.run(run_demo(settings, args.room, args.duration))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="huizhen", description=__doc__)
    parser.add_argument("--config", help="TOML file over the embedded defaults")
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the media and signalling server").set_defaults(
        func=cmd_serve)
    token = commands.add_parser("token", help="mint a room token")
    token.add_argument("--room", required=True)
    token.add_argument("--role", required=True,
                       choices=["ward", "expert", "observer", "operator"])
    token.add_argument("--name", required=True, help="display name (staff, never a patient)")
    token.add_argument("--ttl", type=int, default=0, help="lifetime in seconds")
    token.add_argument("--subject", help="stable user id (default: random)")
    token.set_defaults(func=cmd_token)
    demo = commands.add_parser("demo", help="server plus a simulated bedside camera")
    demo.add_argument("--room", default="demo-bed-1")
    demo.add_argument("--duration", type=float, default=0.0,
                      help="stop after this many seconds (0: run until Ctrl-C)")
    demo.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    args.func(args)


if __name__ == "__main__":
    main()
