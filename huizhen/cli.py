"""Command line: ``huizhen serve``, ``huizhen token``, ``huizhen demo``, and the records
service's ``records``, ``records-admin`` and ``records-import-icd10``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

from config import ConfigError, Settings, load_settings
from config.listen_check import Service, startup_problem
from contracts.roles import TOKEN_ROLES
from huizhen.app import WEB_ROOT, create_app, token_authority
from huizhen.log_format import TEXT_FORMAT, use_log_format
from huizhen.running import StartupError, bind, serving, serving_on, wait_for_stop

# Exit code of a refusal to start with unsafe settings (demo or short secrets).
EXIT_UNSAFE = 2
# Exit code of a configuration mistake (sysexits' EX_CONFIG). Like EXIT_UNSAFE, a service
# manager should not restart on it (config/deploy/*.service: RestartPreventExitStatus);
# other start-up failures (a port still in use, a database not up yet) exit 1 and may
# pass on a restart.
EXIT_CONFIG = 78


def _config_mistake(exc: ConfigError) -> NoReturn:
    print(f"huizhen: {exc}", file=sys.stderr, flush=True)
    sys.exit(EXIT_CONFIG)


def _settings(args: argparse.Namespace) -> Settings:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        _config_mistake(exc)
    use_log_format(settings.logging.format)
    return settings


def _safe_settings(args: argparse.Namespace, service: Service) -> Settings:
    """The settings, once they are known to be safe for ``service`` where it listens."""
    settings = _settings(args)
    problem = startup_problem(settings, service)
    if problem is not None:
        print(f"huizhen: {problem}", file=sys.stderr, flush=True)
        sys.exit(EXIT_UNSAFE)
    return settings


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run a service; a start-up mistake ends it with one line on stderr, not a traceback."""
    try:
        asyncio.run(main)
    except ConfigError as exc:
        _config_mistake(exc)
    except StartupError as exc:
        sys.exit(f"huizhen: {exc}")


async def _serve(settings: Settings) -> None:
    async with serving(create_app(settings), settings.server.host, settings.server.port):
        print(f"huizhen listening on {settings.server.base_url}", flush=True)
        await wait_for_stop()


def cmd_serve(args: argparse.Namespace) -> None:
    _run(_serve(_safe_settings(args, "serve")))


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
    from consult_api.webhooks import parse_targets

    records = settings.records
    try:
        webhooks = parse_targets(records.webhooks)
    except ValueError as exc:
        sys.exit(f"huizhen: records.webhooks: {exc}")
    # Bound first: a port in use is reported before importing and migrating log anything.
    sockets = bind(records.host, records.port)
    from sqlalchemy.exc import SQLAlchemyError

    from consult_api.app import create_app as create_records_app
    from consult_api.db import upgrade

    data_dir = settings.storage.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    url = records.database_for(data_dir)
    try:
        await asyncio.to_thread(upgrade, url)  # the schema is migrated before serving
    except BaseException as exc:
        for sock in sockets:
            sock.close()
        if isinstance(exc, SQLAlchemyError):
            # The driver's first line says why (refused, no such database, no permission);
            # the URL is not repeated, it may carry a password.
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise StartupError(f"cannot open the records database: {reason}") from None
        raise
    app = create_records_app(
        url, records.token_secret, data_dir=data_dir, max_upload=records.max_upload_bytes,
        recorder_token=settings.recorder.handoff_token or None,
        room_tokens=token_authority(settings), webhooks=webhooks,
        secure_cookies=records.secure_cookies,
        web_root=WEB_ROOT,
        media_url=records.media_url or settings.server.base_url,
    )
    async with serving_on(app, sockets):
        print(f"huizhen records service listening on http://{records.host}:{records.port}",
              flush=True)
        await wait_for_stop()


def cmd_records(args: argparse.Namespace) -> None:
    _run(_serve_records(_safe_settings(args, "records")))


RECORDS_ADMIN_MAX_TTL = 30 * 24 * 3600


def _records_base_url(host: str, port: int) -> str:
    """The records service's address for links printed on the server itself."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def cmd_records_admin(args: argparse.Namespace) -> None:
    """Bootstrap the records service: a hospital and its first admin (found again, not
    duplicated, when run twice with the same hospital and username); prints a one-time
    set-password link and, with ``--api-token``, an API token (at most 30 days)."""
    from datetime import UTC, datetime

    from consult_api import accounts
    from consult_api.errors import ConsultError

    # Refuse bad arguments in one line, before the database (and its logging) starts.
    if args.api_token and not accounts.API_TOKEN_MIN_TTL <= args.ttl <= RECORDS_ADMIN_MAX_TTL:
        print(f"huizhen: --ttl must be from {accounts.API_TOKEN_MIN_TTL} to "
              f"{RECORDS_ADMIN_MAX_TTL} seconds (30 days)", file=sys.stderr)
        sys.exit(2)
    try:
        username = accounts.normalise_username(args.username)
    except ConsultError as exc:
        print(f"huizhen: --username: {exc.message}", file=sys.stderr)
        sys.exit(2)

    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from consult_api import records
    from consult_api.db import make_engine, make_sessionmaker, upgrade
    from consult_api.models import Hospital, User
    from consult_api.workflow import Role

    settings = _settings(args)
    secret = settings.records.token_secret
    data_dir = settings.storage.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.records.database_for(data_dir)
    upgrade(url)
    now = datetime.now(UTC)

    def bootstrap(session: Session) -> tuple[str, datetime, str | None]:
        hospital_id = session.scalar(sa.select(Hospital.id).where(
            Hospital.name == args.hospital).order_by(Hospital.id).limit(1))
        if hospital_id is None:
            hospital_id = records.add_hospital(session, args.hospital, args.level)
        user = session.scalars(sa.select(User).where(User.username == username)).one_or_none()
        if user is None:
            user_id = records.add_user(session, hospital_id, args.name, Role.ADMIN)
            session.get_one(User, user_id).username = username
        elif user.role != Role.ADMIN.value or user.hospital_id != hospital_id:
            raise ConsultError(f"the username {username} belongs to another account")
        else:
            user_id = user.id
        link, expires = accounts.issue_link(session, secret, user_id, now)
        token = None
        if args.api_token:
            token = accounts.issue_api_token(session, secret, user_id, "records-admin",
                                             args.ttl, now)[1]
        return link, expires, token

    engine = make_engine(url)
    try:
        link, expires, token = records.run_in_session(make_sessionmaker(engine), bootstrap)
    except ConsultError as exc:
        print(f"huizhen: {exc.message}", file=sys.stderr)
        sys.exit(2)
    finally:
        engine.dispose()
    base = _records_base_url(settings.records.host, settings.records.port)
    print(f"{base}{link}")
    if token is not None:
        print(token)
    print(f"open the link before {expires.isoformat(timespec='minutes')} to set the password "
          f"of {username}", file=sys.stderr)


def cmd_records_import_icd10(args: argparse.Namespace) -> None:
    """Upsert an ICD-10 code table (CSV: code,name_zh[,name_en]) into the records database:
    all rows or none; prints the counts."""
    from pathlib import Path

    from consult_api import icd10

    edition = args.edition.strip()
    if not edition or len(edition) > icd10.MAX_EDITION:
        sys.exit(f"huizhen: --edition must be 1 to {icd10.MAX_EDITION} characters")
    try:
        codes = icd10.read_file(Path(args.file))
    except icd10.ImportProblem as exc:
        sys.exit(f"huizhen: {exc}")
    # Only now the migration machinery (it logs as it loads): a bad file is one line.
    from sqlalchemy.exc import SQLAlchemyError

    from consult_api import records
    from consult_api.db import make_engine, make_sessionmaker, upgrade

    settings = _settings(args)
    data_dir = settings.storage.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.records.database_for(data_dir)
    try:
        upgrade(url)
        engine = make_engine(url)
        try:
            counts = records.run_in_session(make_sessionmaker(engine),
                                            lambda s: icd10.upsert(s, codes, edition))
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        sys.exit(f"huizhen: the records database refused the import ({type(exc).__name__}); "
                 f"nothing was imported")
    print(f"icd10: {counts.added} added, {counts.updated} updated, "
          f"{counts.unchanged} unchanged ({len(codes)} rows, edition {edition})")


def cmd_demo(args: argparse.Namespace) -> None:
    """The demo; unless ``--no-records`` also the workspace, whose demo accounts have public
    passwords: it listens on loopback only, whatever the settings say."""
    from config.listen_check import address, is_loopback

    settings = _safe_settings(args, "serve")
    records = not args.no_records
    if records:
        if args.room is not None:
            sys.exit("huizhen: --room needs --no-records (with the workspace, the simulated "
                     "bedside publishes into the demo consultation's live room)")
        where = settings.records
        if not is_loopback(where.host):
            print(f"huizhen: refusing to serve the demo accounts on "
                  f"{address(where.host, where.port)}: the demo's records service listens on "
                  f"loopback only (set HUIZHEN_RECORDS_HOST=127.0.0.1, or use --no-records)",
                  file=sys.stderr, flush=True)
            sys.exit(EXIT_UNSAFE)
        problem = startup_problem(settings, "records")
        if problem is not None:
            print(f"huizhen: {problem}", file=sys.stderr, flush=True)
            sys.exit(EXIT_UNSAFE)
    from huizhen.demo import run_demo

    _run(run_demo(settings, args.room, args.duration, alarms=args.alarms, records=records))


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
                                help="create (once) a hospital and its first records admin; "
                                     "prints a set-password link")
    admin.add_argument("--hospital", required=True)
    admin.add_argument("--level", required=True, choices=["province", "prefecture", "county"])
    admin.add_argument("--name", required=True, help="the admin's display name")
    admin.add_argument("--username", required=True, help="the admin's sign-in name")
    admin.add_argument("--api-token", action="store_true",
                       help="also print an API token for scripts")
    admin.add_argument("--ttl", type=int, default=3600,
                       help="API token lifetime in seconds (at most 30 days)")
    admin.set_defaults(func=cmd_records_admin)
    icd = commands.add_parser("records-import-icd10",
                              help="import an ICD-10 code table (CSV: code,name_zh[,name_en]) "
                                   "into the records database")
    icd.add_argument("file", help="the CSV file (UTF-8 or GB18030)")
    icd.add_argument("--edition", default="国家临床版 2.0",
                     help="the edition the codes come from (default: %(default)s)")
    icd.set_defaults(func=cmd_records_import_icd10)
    token = commands.add_parser("token", help="mint a room token")
    token.add_argument("--room", required=True)
    token.add_argument("--role", required=True, choices=TOKEN_ROLES)
    token.add_argument("--name", required=True, help="display name (staff, never a patient)")
    token.add_argument("--ttl", type=int, default=0, help="lifetime in seconds")
    token.add_argument("--subject", help="stable user id (default: random)")
    token.set_defaults(func=cmd_token)
    demo = commands.add_parser("demo", help="server plus a simulated bedside camera, and the "
                                             "consultation workspace with demo accounts")
    demo.add_argument("--room", help="the bed's room (with --no-records; default demo-bed-1)")
    demo.add_argument("--no-records", action="store_true",
                      help="do not start the consultation workspace (records service)")
    demo.add_argument("--duration", type=float, default=0.0,
                      help="stop after this many seconds (0: run until Ctrl-C)")
    demo.add_argument("--alarms", action="store_true",
                      help="the simulated monitor raises and clears an SpO2 alarm every few "
                           "seconds (flagged values and IHE PCD-04 alarm reports)")
    demo.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=TEXT_FORMAT)
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    args.func(args)


if __name__ == "__main__":
    main()
