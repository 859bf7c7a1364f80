"""Response headers that make browsers handle the records service's answers safely, and a
download's ``Content-Disposition`` that no file name can break out of.

Every response: ``X-Content-Type-Options: nosniff`` (a material is never sniffed into HTML
or script), ``Referrer-Policy: no-referrer`` and ``X-Frame-Options: DENY``. Every ``/api/``
response (patient data): ``Cache-Control: no-store``, and a CSP that allows nothing, in case
a browser ever renders one. HTML pages: the CSP of ``PAGE_CSP`` (scripts, styles and
connections only from this origin; no inline script, no framing).

Set in ``on_response_prepare``, so that errors, 404s and file responses get them too.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from aiohttp import web

PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; "
            "img-src 'self' data: blob:; connect-src 'self'; media-src 'self' blob:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"
EVERYWHERE = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
              "X-Frame-Options": "DENY"}

FALLBACK_NAME = "download"
MAX_FALLBACK = 150
# Outside a quoted-string these break the header or mean something to a file system.
_UNSAFE_ASCII = re.compile(r'[^\x20-\x7e]|["\\/;%*:?<>|]')


async def _security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    headers = response.headers
    for name, value in EVERYWHERE.items():
        headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        headers["Cache-Control"] = "no-store"
        headers.setdefault("Content-Security-Policy", API_CSP)
    elif response.content_type == "text/html":
        headers["Content-Security-Policy"] = PAGE_CSP


def add_security_headers(app: web.Application) -> None:
    """Give every response of ``app`` the headers above (one line in ``create_app``)."""
    app.on_response_prepare.append(_security_headers)


def safe_filename(name: str) -> str:
    """The last path part of ``name`` without control characters, or ``download``."""
    cleaned = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    base = cleaned.replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    return base or FALLBACK_NAME


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _UNSAFE_ASCII.sub("_", folded)


def attachment_disposition(name: str) -> str:
    """``attachment`` with an ASCII ``filename`` for old clients (accents folded, other
    characters dropped or replaced; ``download`` when nothing is left of the name but its
    extension) and the real name as RFC 5987 ``filename*`` (percent-encoded UTF-8): neither
    can carry a quote, CR/LF or a path part."""
    base = safe_filename(name)
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    ascii_stem, ascii_ext = _ascii(stem)[:MAX_FALLBACK], _ascii(ext)[:20]
    if not ascii_stem.strip(" ._-"):
        ascii_stem = FALLBACK_NAME
    fallback = ascii_stem + (f".{ascii_ext}" if ascii_ext else "")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(base, safe='')}"
