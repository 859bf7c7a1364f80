"""The workspace pages, served by the records service itself: one front door.

``GET /`` is the workspace shell (``web_client/workspace/index.html``); ``/workspace/<file>``
its scripts and styles; ``/i18n.js`` and ``/i18n/<area>.json`` the message catalogue every
page shares. Plain files, no build step. Only plain file names are served (one path segment
of letters, digits, ``-``, ``_`` and ``.``), never a directory listing, never a symlink, never
anything outside the web root.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from consult_api.errors import NotFound
from consult_api.http import WEB_ROOT

WORKSPACE_DIR = "workspace"
CATALOGUE_DIR = "i18n"
# One path segment, no leading dot (no hidden files, no "..").
FILE_NAME = r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,99}"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def resolve(root: Path, *parts: str) -> Path:
    """The regular file ``root/parts...``, or NotFound: no symlink anywhere below ``root``,
    nothing outside it, only the content types above. Pure apart from ``lstat`` calls."""
    if any(not part or part.startswith(".") or "/" in part or "\\" in part for part in parts):
        raise NotFound("no such page")
    base = root.resolve()
    path = base
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise NotFound("no such page")
    if path.suffix not in CONTENT_TYPES or not path.is_file():
        raise NotFound("no such page")
    if base not in path.resolve().parents:
        raise NotFound("no such page")
    return path


def _file(path: Path) -> web.FileResponse:
    return web.FileResponse(path, headers={"Content-Type": CONTENT_TYPES[path.suffix]})


def _root(request: web.Request) -> Path:
    root = request.app[WEB_ROOT]
    if root is None:
        raise NotFound("this server has no workspace pages")
    return root


async def index(request: web.Request) -> web.StreamResponse:
    return _file(resolve(_root(request), WORKSPACE_DIR, "index.html"))


async def workspace_file(request: web.Request) -> web.StreamResponse:
    return _file(resolve(_root(request), WORKSPACE_DIR, request.match_info["name"]))


async def catalogue_script(request: web.Request) -> web.StreamResponse:
    return _file(resolve(_root(request), "i18n.js"))


async def catalogue_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if not name.endswith(".json"):
        raise NotFound("no such catalogue file")
    return _file(resolve(_root(request), CATALOGUE_DIR, name))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/workspace/{name:" + FILE_NAME + "}", workspace_file)
    app.router.add_get("/i18n.js", catalogue_script)
    app.router.add_get("/i18n/{name:" + FILE_NAME + "}", catalogue_file)
