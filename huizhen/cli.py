"""Command line: ``huizhen serve``, ``huizhen token``, ``huizhen demo``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from config import ConfigError, Settings, load_settings
from huizhen.app import WEB_ROOT, create_app, token_authority
from huizhen.running import serving, wait_for_stop


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.config)
    except ConfigError as exc:
        sys.exit(f"huizhen: {exc}")


async def _serve(settings: Settings) -> None:
    async with serving(create_app(settings), settings.server.host, settings.server.port):
        print(f"huizhen listening on {settings.server.base_url}", flush=True)
        await wait_for_stop()


def cmd_serve(args: argparse.Namespace) -> None:
    asyncio.run(_serve(_settings(args)))


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


async def _serve_records(settings: Settings) -> None:
    from consult_api.app import create_app as create_records_app
    from consult_api.db import upgrade

    records = settings.records
    data_dir = settings.storage.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    url = records.database_for(data_dir)
    await asyncio.to_thread(upgrade, url)  # the schema is migrated before serving
    app = create_records_app(
        url, records.token_secret, data_dir=data_dir, max_upload=records.max_upload_bytes,
        recorder_token=settings.recorder.handoff_token or None,
        room_tokens=token_authority(settings), web_root=WEB_ROOT,
        media_url=records.media_url or settings.server.base_url,
    )
    async with serving(app, records.host, records.port):
        print(f"huizhen records service listening on http://{records.host}:{records.port}",
              flush=True)
        await wait_for_stop()


def cmd_records(args: argparse.Namespace) -> None:
    asyncio.run(_serve_records(_settings(args)))


def cmd_records_admin(args: argparse.Namespace) -> None:
    """Bootstrap the records service: a hospital and its first admin, and an API token."""
    from sqlalchemy.orm import Session

    from consult_api import records
    from consult_api.auth import ApiTokens
    from consult_api.db import make_engine, make_sessionmaker, upgrade
    from consult_api.workflow import Actor, Role

    settings = _settings(args)
    data_dir = settings.storage.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.records.database_for(data_dir)
    upgrade(url)
    engine = make_engine(url)
    try:
        def create(session: Session) -> Actor:
            hospital = records.add_hospital(session, args.hospital, args.level)
            user = records.add_user(session, hospital, args.name, Role.ADMIN)
            return Actor(user_id=user, role=Role.ADMIN, hospital_id=hospital)

        actor = records.run_in_session(make_sessionmaker(engine), create)
    finally:
        engine.dispose()
    print(ApiTokens(settings.records.token_secret).mint(actor, ttl=args.ttl))


def cmd_demo(args: argparse.Namespace) -> None:
    from huizhen.demo import run_demo

    settings = _settings(args)
    asyncio.run(run_demo(settings, args.room, args.duration, alarms=args.alarms))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="huizhen", description=__doc__)
    parser.add_argument("--config", help="TOML file over the embedded defaults")
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the media and signalling server").set_defaults(
        func=cmd_serve)
    commands.add_parser("records", help="run the consultation records service").set_defaults(
        func=cmd_records)
    admin = commands.add_parser("records-admin",
                                help="create a hospital and its first records admin; "
                                     "prints an API token")
    admin.add_argument("--hospital", required=True)
    admin.add_argument("--level", required=True, choices=["province", "prefecture", "county"])
    admin.add_argument("--name", required=True, help="the admin's display name")
    admin.add_argument("--ttl", type=int, default=3600, help="token lifetime in seconds")
    admin.set_defaults(func=cmd_records_admin)
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
    demo.add_argument("--alarms", action="store_true",
                      help="the simulated monitor raises and clears an SpO2 alarm every few "
                           "seconds (flagged values and IHE PCD-04 alarm reports)")
    demo.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    args.func(args)


if __name__ == "__main__":
    main()
