"""HTTP routes of the ICD-10 code table: search for the report editor's diagnosis field."""

from __future__ import annotations

from aiohttp import web

from consult_api import icd10
from consult_api.http import actor_of, in_db


async def search_codes(request: web.Request) -> web.Response:
    """``GET /api/v1/icd10?q=&limit=``: any signed-in user; ``{"codes": [...]}``."""
    actor_of(request)
    wanted = icd10.parse_search(request.query)
    found = await in_db(request, lambda s: [icd10.code_json(c)
                                            for c in icd10.search(s, wanted)])
    return web.json_response({"codes": found})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/icd10", search_codes)
