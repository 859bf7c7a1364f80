"""The audit search for admins: ``GET /api/v1/audit`` (JSON, newest first, keyset pages) and
``GET /api/v1/audit/export`` (the same filters, CSV for Excel). Both are audited."""

from __future__ import annotations

import asyncio

from aiohttp import web

from consult_api import audit
from consult_api.http import CLOCK, actor_of, in_db
from contracts.catalogue import LANGUAGES, Catalogue, negotiate

NEXT_HEADER = "X-Next-Before-Id"


async def search_audit(request: web.Request) -> web.Response:
    actor = actor_of(request)
    filters = audit.parse_filters(request.query)
    now = request.app[CLOCK]()
    entries, next_before_id = await in_db(
        request, lambda s: audit.search(s, actor, filters, now))
    return web.json_response({"entries": entries, "next_before_id": next_before_id})


def _language(request: web.Request) -> str:
    chosen = request.query.get("lang", "")
    return chosen if chosen in LANGUAGES else negotiate(request.headers.get("Accept-Language"))


async def export_audit(request: web.Request) -> web.Response:
    """CSV in the reader's language (``lang`` or Accept-Language); at most ``limit`` rows
    (10 000), the next page's ``before_id`` in the X-Next-Before-Id header."""
    actor = actor_of(request)
    filters = audit.parse_filters(request.query, export=True)
    now = request.app[CLOCK]()
    entries, next_before_id = await in_db(
        request, lambda s: audit.search(s, actor, filters, now, action="audit.export"))
    catalogue = await asyncio.to_thread(Catalogue.load)
    language = _language(request)
    body = audit.to_csv(entries, catalogue.labels("audit.column", language),
                        catalogue.labels("audit.outcome", language))
    headers = {"Content-Disposition": 'attachment; filename="audit.csv"'}
    if next_before_id is not None:
        headers[NEXT_HEADER] = str(next_before_id)
    return web.Response(body=body, content_type="text/csv", charset="utf-8", headers=headers)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/audit", search_audit)
    app.router.add_get("/api/v1/audit/export", export_audit)
