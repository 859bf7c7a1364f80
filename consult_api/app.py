"""The aiohttp app: thin handlers over ``schemas`` (parse), ``records`` (I/O) and the cores,
and ``create_app``, which wires them and every area's ``*_routes`` module.

Database work runs in worker threads (SQLAlchemy sessions are synchronous). Errors of the
``ConsultError`` hierarchy map to their HTTP status (``http.errors_middleware``), with their
safe message and code; anything else is a generic 500 (logged, never sent to the client).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from consult_api import (
    artefacts,
    audit,
    audit_routes,
    dicom_routes,
    domain_routes,
    icd10_routes,
    live_pages,
    materials,
    recording_routes,
    records,
    reports,
    session_routes,
    statistics,
    users_routes,
    web_routes,
)
from consult_api.auth import service_token_matches
from consult_api.db import make_engine, make_sessionmaker
from consult_api.errors import (
    InvalidRequest,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from consult_api.filetype import MEDIA_TYPES
from consult_api.http import (
    CLOCK,
    DATA_DIR,
    DATABASE_URL,
    MAX_BODY,
    MAX_UPLOAD,
    MEDIA_URL,
    PASSWORD_HASHER,
    PEPPER,
    RECORDER_TOKEN,
    ROOM_TOKEN_GRACE,
    ROOM_TOKEN_MAX_TTL,
    ROOM_TOKEN_MIN_TTL,
    ROOM_TOKENS,
    SECURE_COOKIES,
    SESSIONS,
    WEB_ROOT,
    Clock,
    RoomTokenMinter,
    actor_of,
    errors_middleware,
    in_db,
    json_body,
    path_id,
    query_int,
    query_text,
    utc_now,
)
from consult_api.openapi import OPENAPI_PATH, document
from consult_api.passwords import default_hasher
from consult_api.safe_headers import add_security_headers, attachment_disposition
from consult_api.schemas import (
    consultation_detail,
    consultation_summary,
    parse_consultation,
    parse_consultation_filter,
    parse_hospital,
    parse_schedule,
    parse_transition,
)
from consult_api.webhooks import RetryPolicy, WebhookTarget

__all__ = ["DEFAULT_MAX_UPLOAD", "RoomTokenMinter", "create_app"]

DEFAULT_MAX_UPLOAD = 200 * 1024 * 1024
FILENAME_HEADER = "X-Filename"


async def create_consultation(request: web.Request) -> web.Response:
    actor = actor_of(request)
    data = parse_consultation(await json_body(request))
    now = request.app[CLOCK]()
    new_id = await in_db(request, lambda s: records.create_consultation(s, actor, data, now))
    return web.json_response({"id": new_id, "state": "requested"}, status=201)


async def list_consultations(request: web.Request) -> web.Response:
    """``?state=`` (the coordinators' incoming queue: ``requested``), ``?mine=1``; newest
    first, ``?limit=`` at a time, the next page from ``?before_id=<next_before_id>``."""
    actor = actor_of(request)
    state, mine = parse_consultation_filter(request.query)
    limit = query_int(request, "limit", low=1, high=records.LIST_MAX_LIMIT) \
        or records.LIST_LIMIT
    before_id = query_int(request, "before_id", low=1, high=records.ID_MAX)
    now = request.app[CLOCK]()
    found = await in_db(request, lambda s: [consultation_summary(c) for c in
                                          records.list_consultations(
                                              s, actor, now, state=state, mine=mine,
                                              limit=limit, before_id=before_id)])
    more = len(found) == limit
    return web.json_response({"consultations": found,
                              "next_before_id": found[-1]["id"] if more else None})


async def get_consultation(request: web.Request) -> web.Response:
    actor = actor_of(request)
    consultation_id = path_id(request)
    now = request.app[CLOCK]()

    def work(s: Session) -> dict[str, Any]:
        return consultation_detail(*records.read_consultation(s, actor, consultation_id, now))

    return web.json_response(await in_db(request, work))


async def post_transition(request: web.Request) -> web.Response:
    actor = actor_of(request)
    consultation_id = path_id(request)
    data = parse_transition(await json_body(request))
    now = request.app[CLOCK]()
    result = await in_db(request, lambda s: consultation_summary(
        records.transition(s, actor, consultation_id, data, now)))
    return web.json_response(result)


async def post_schedule(request: web.Request) -> web.Response:
    actor = actor_of(request)
    consultation_id = path_id(request)
    data = parse_schedule(await json_body(request))
    now = request.app[CLOCK]()
    result = await in_db(request, lambda s: consultation_summary(
        records.schedule(s, actor, consultation_id, data, now)))
    return web.json_response(result)


async def create_hospital(request: web.Request) -> web.Response:
    actor = actor_of(request)
    data = parse_hospital(await json_body(request))
    new_id = await in_db(request, lambda s: records.create_hospital(s, actor, data))
    return web.json_response({"id": new_id}, status=201)


async def list_experts(request: web.Request) -> web.Response:
    actor_of(request)
    return web.json_response({"experts": await in_db(request, records.list_experts)})


async def post_room_token(request: web.Request) -> web.Response:
    """A media-server token for the consultation's live room, valid until an hour after
    the slot ends (at least 15 minutes, at most a day), and ``page_url``: the media
    server's page for that role with the token and the person's language."""
    actor = actor_of(request)
    consultation_id = path_id(request)
    authority = request.app[ROOM_TOKENS]
    if authority is None:
        raise Unavailable("live room tokens are not configured on this server")
    now = request.app[CLOCK]()
    def work(s: Session) -> tuple[str, str, datetime, str]:
        room, role, slot_end = records.live_room(s, actor, consultation_id, now)
        return room, role, slot_end, live_pages.user_language(s, actor.user_id)

    room, role, slot_end, language = await in_db(request, work)
    ttl = int((slot_end + ROOM_TOKEN_GRACE - now).total_seconds())
    ttl = min(max(ttl, ROOM_TOKEN_MIN_TTL), ROOM_TOKEN_MAX_TTL)
    token = authority.mint(room=room, role=role, name=actor.name, ttl=ttl,
                           subject=f"consult-user-{actor.user_id}", now=now.timestamp())
    return web.json_response({"room": room, "role": role, "token": token,
                              "expires_at": int(now.timestamp()) + ttl,
                              "page_url": live_pages.page_url(request.app[MEDIA_URL], role,
                                                              token, language)})


def _filename(request: web.Request) -> str:
    try:
        raw = unquote(request.headers.get(FILENAME_HEADER, ""), errors="strict").strip()
    except UnicodeDecodeError:
        raw = ""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    if not name or len(name) > materials.MAX_FILENAME or not name.isprintable():
        raise InvalidRequest(f"the {FILENAME_HEADER} header must be a file name (percent-encoded "
                             f"UTF-8, at most {materials.MAX_FILENAME} characters)")
    return name


async def upload_material(request: web.Request) -> web.Response:
    """The raw file is the request body (any Content-Type); its name in ``X-Filename``."""
    actor = actor_of(request)
    consultation_id = path_id(request)
    filename = _filename(request)
    limit, data_dir = request.app[MAX_UPLOAD], request.app[DATA_DIR]
    if request.content_length is not None and request.content_length > limit:
        raise materials.too_large(limit)
    await in_db(request, lambda s: materials.check_upload(s, actor, consultation_id))
    received = await materials.receive(request.content.iter_chunked(materials.CHUNK),
                                       data_dir, limit)
    stored = await asyncio.to_thread(materials.store, received, data_dir)
    now = request.app[CLOCK]()
    try:
        result = await in_db(request, lambda s: materials.material_json(
            materials.add(s, actor, consultation_id, filename, stored, now)))
    except BaseException:
        await in_db(request, lambda s: materials.remove_if_unused(s, stored, data_dir))
        raise
    return web.json_response(result, status=201)


async def list_materials(request: web.Request) -> web.Response:
    actor = actor_of(request)
    consultation_id = path_id(request)
    now = request.app[CLOCK]()
    found = await in_db(request, lambda s: [materials.material_json(m) for m in
                                          materials.listing(s, actor, consultation_id, now)])
    return web.json_response({"materials": found})


async def download_material(request: web.Request) -> web.StreamResponse:
    actor = actor_of(request)
    material_id = path_id(request, "material")
    now = request.app[CLOCK]()
    m = await in_db(request, lambda s: materials.open_material(s, actor, material_id,
                                                              "material.download", now))
    return web.FileResponse(request.app[DATA_DIR] / m.stored_path, headers={
        "Content-Type": MEDIA_TYPES[m.kind],
        "Content-Disposition": attachment_disposition(m.filename)})


async def material_preview(request: web.Request) -> web.StreamResponse:
    actor = actor_of(request)
    material_id = path_id(request, "material")
    now = request.app[CLOCK]()
    m = await in_db(request, lambda s: materials.open_material(s, actor, material_id,
                                                              "material.preview", now))
    if m.preview_path is None:
        raise NotFound("this material has no preview")
    return web.FileResponse(request.app[DATA_DIR] / m.preview_path,
                            headers={"Content-Type": "image/png"})


async def post_artefacts(request: web.Request) -> web.Response:
    """The recorder's hand-off; ``Authorization: Bearer <recorder token>``."""
    expected = request.app[RECORDER_TOKEN]
    if expected is None:
        raise Unavailable("recorder hand-off is not configured on this server")
    if not service_token_matches(request.headers.get("Authorization"), expected):
        raise Unauthenticated("a valid recorder service token is required")
    data = artefacts.parse_handoff(await json_body(request), request.headers.get("Idempotency-Key"))
    now = request.app[CLOCK]()

    def work(s: Session) -> tuple[dict[str, Any], bool]:
        artefact, created = artefacts.receive(s, data, now)
        return artefacts.artefact_json(artefact), created

    result, created = await in_db(request, work)
    return web.json_response(result, status=201 if created else 200)


async def create_report(request: web.Request) -> web.Response:
    actor = actor_of(request)
    consultation_id = path_id(request)
    data = reports.parse_draft(await json_body(request))
    now = request.app[CLOCK]()
    result = await in_db(request, lambda s: reports.report_json(
        reports.create_draft(s, actor, consultation_id, data, now)))
    return web.json_response(result, status=201)


async def list_reports(request: web.Request) -> web.Response:
    actor = actor_of(request)
    consultation_id = path_id(request)
    now = request.app[CLOCK]()
    found = await in_db(request, lambda s: [reports.report_json(r) for r in
                                          reports.listing(s, actor, consultation_id, now)])
    return web.json_response({"reports": found})


async def edit_report(request: web.Request) -> web.Response:
    actor = actor_of(request)
    report_id = path_id(request, "report")
    data = reports.parse_edit(await json_body(request))
    now = request.app[CLOCK]()
    result = await in_db(request, lambda s: reports.report_json(
        reports.edit(s, actor, report_id, data, now)))
    return web.json_response(result)


async def publish_report(request: web.Request) -> web.Response:
    actor = actor_of(request)
    report_id = path_id(request, "report")
    now = request.app[CLOCK]()
    result = await in_db(request, lambda s: reports.report_json(
        reports.publish(s, actor, report_id, now)))
    return web.json_response(result)


async def amend_report(request: web.Request) -> web.Response:
    actor = actor_of(request)
    report_id = path_id(request, "report")
    data = reports.parse_amend(await json_body(request))
    now = request.app[CLOCK]()
    result = await in_db(request, lambda s: reports.report_json(
        reports.amend(s, actor, report_id, data, now)))
    return web.json_response(result, status=201)


async def list_report_templates(request: web.Request) -> web.Response:
    actor_of(request)
    specialty = query_text(request, "specialty")
    found = await in_db(request, lambda s: [reports.template_json(t) for t in
                                          reports.list_templates(s, specialty)])
    return web.json_response({"templates": found})


async def get_statistics(request: web.Request) -> web.Response:
    actor = actor_of(request)
    period = statistics.parse_period(request.query)
    return web.json_response(await in_db(request, lambda s: statistics.statistics(
        s, actor, period)))


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


def create_app(database_url: str, token_secret: str, *, clock: Clock = utc_now,
               room_tokens: RoomTokenMinter | None = None, data_dir: Path | None = None,
               max_upload: int = DEFAULT_MAX_UPLOAD,
               recorder_token: str | None = None, secure_cookies: bool = False,
               password_hasher: PasswordHasher | None = None,
               webhooks: Sequence[WebhookTarget] = (),
               webhook_retry: RetryPolicy | None = None, web_root: Path | None = None,
               media_url: str | None = None) -> web.Application:
    """The consultation records API. The schema must exist (``consult_api.db.upgrade``).

    ``token_secret`` keys the stored hashes of session cookies, API tokens and
    set-password links (at least 32 characters); ``secure_cookies`` marks the session
    cookie Secure (serve over HTTPS); ``password_hasher`` defaults to argon2id with the
    library's parameters (sign-in rehashes passwords stored with other parameters).
    ``room_tokens`` mints media-server tokens for scheduled live rooms (optional);
    ``data_dir`` holds uploaded materials (default ``data``), each at most ``max_upload``
    bytes; ``recorder_token`` is the recorder's service secret for artefact hand-offs;
    ``webhooks`` receive every state change, signed (``consult_api.webhooks``);
    ``web_root`` (``web_client/``) holds the workspace pages served at ``/`` (None: no
    pages); ``media_url`` is the media server's public URL, for live-room page links."""
    if len(token_secret) < 32:
        raise ValueError("the token secret must be at least 32 characters")
    # errors_middleware is outermost; the sign-in middleware then says who is asking; and
    # audit.middleware sees ConsultErrors before they become responses (it records refused
    # and failed attempts, by whom).
    app = web.Application(middlewares=[errors_middleware, session_routes.auth_middleware,
                                       audit.middleware],
                          client_max_size=MAX_BODY)
    app[PEPPER] = token_secret
    app[SECURE_COOKIES] = secure_cookies
    app[PASSWORD_HASHER] = password_hasher if password_hasher is not None else default_hasher()
    app[DATA_DIR] = data_dir if data_dir is not None else Path("data")
    app[MAX_UPLOAD] = max_upload
    app[RECORDER_TOKEN] = recorder_token
    app[CLOCK] = clock
    app[DATABASE_URL] = database_url
    app[ROOM_TOKENS] = room_tokens
    app[WEB_ROOT] = web_root
    app[MEDIA_URL] = media_url or ""

    async def database(app: web.Application) -> AsyncIterator[None]:
        engine = make_engine(app[DATABASE_URL])
        app[SESSIONS] = make_sessionmaker(engine)
        yield
        await asyncio.to_thread(engine.dispose)

    app.cleanup_ctx.append(database)
    app.router.add_post("/api/v1/hospitals", create_hospital)
    app.router.add_get("/api/v1/experts", list_experts)
    app.router.add_post("/api/v1/consultations", create_consultation)
    app.router.add_get("/api/v1/consultations", list_consultations)
    app.router.add_get("/api/v1/consultations/{id}", get_consultation)
    app.router.add_post("/api/v1/consultations/{id}/transitions", post_transition)
    app.router.add_post("/api/v1/consultations/{id}/schedule", post_schedule)
    app.router.add_post("/api/v1/consultations/{id}/room-token", post_room_token)
    app.router.add_post("/api/v1/consultations/{id}/materials", upload_material)
    app.router.add_get("/api/v1/consultations/{id}/materials", list_materials)
    app.router.add_get("/api/v1/materials/{id}", download_material)
    app.router.add_get("/api/v1/materials/{id}/preview", material_preview)
    app.router.add_post("/api/v1/artefacts", post_artefacts)
    app.router.add_post("/api/v1/consultations/{id}/reports", create_report)
    app.router.add_get("/api/v1/consultations/{id}/reports", list_reports)
    app.router.add_patch("/api/v1/reports/{id}", edit_report)
    app.router.add_post("/api/v1/reports/{id}/publish", publish_report)
    app.router.add_post("/api/v1/reports/{id}/amend", amend_report)
    app.router.add_get("/api/v1/report-templates", list_report_templates)
    app.router.add_get("/api/v1/statistics", get_statistics)
    app.router.add_get(OPENAPI_PATH, get_openapi)
    session_routes.add_routes(app)
    users_routes.add_routes(app)
    domain_routes.add_routes(app, webhooks, webhook_retry)
    icd10_routes.add_routes(app)
    dicom_routes.add_routes(app)
    recording_routes.add_routes(app)
    add_security_headers(app)
    audit_routes.add_routes(app)
    web_routes.add_routes(app)
    return app
