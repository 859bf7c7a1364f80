"""The DICOM viewer's HTTP edge: one frame of a DICOM material as PNG, windowed on request.

``GET /api/v1/materials/{id}/frames/{n}?center=&width=``: frame ``n`` (0-based), decoded on
demand from the file on disk in a worker thread (one frame in memory, a few renders at a
time), with the same read rules and audit as the preview (``materials.open_material``).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from consult_api import dicom, materials
from consult_api.errors import NotFound
from consult_api.http import CLOCK, DATA_DIR, actor_of, in_db, path_id

# At most this many frames are decoded at once per app: each holds one frame in memory.
CONCURRENT_RENDERS = 2
RENDERS = web.AppKey("dicom_renders", asyncio.Semaphore)
FRAME_PATH = "/api/v1/materials/{id}/frames/{n}"


async def material_frame(request: web.Request) -> web.Response:
    actor = actor_of(request)
    material_id = path_id(request, "material")
    index = dicom.parse_frame_index(request.match_info["n"])
    center = dicom.parse_level(request.query.get("center"), "center")
    width = dicom.parse_level(request.query.get("width"), "width")
    now = request.app[CLOCK]()
    m = await in_db(request, lambda s: materials.open_material(s, actor, material_id,
                                                              "material.frame", now))
    if m.kind != "dicom":
        raise NotFound("this material has no image frames", code="frame-not-found")
    default = None
    if m.window_center is not None and m.window_width is not None:
        default = dicom.Window(m.window_center, m.window_width)
    path = materials.pixel_path(m, request.app[DATA_DIR])
    async with request.app[RENDERS]:
        body = await asyncio.to_thread(dicom.render_frame, path, index, center, width, default)
    return web.Response(body=body, content_type="image/png",
                        headers={"Cache-Control": "private, no-cache"})


def add_routes(app: web.Application) -> None:
    app[RENDERS] = asyncio.Semaphore(CONCURRENT_RENDERS)
    app.router.add_get(FRAME_PATH, material_frame)
