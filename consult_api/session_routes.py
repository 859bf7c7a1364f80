"""Sign-in and who is asking: the auth middleware, sessions, the signed-in person's own
account (password, language, authenticator) and set-password links.

The middleware resolves, on every API request, the session cookie or an API bearer token to
the users row, so role, hospital and the ``disabled`` flag are as the database says now. It
never answers by itself: it stores what it found (``http.Auth``) and ``actor_of`` raises when
there is nobody, so public routes (sign-in, the OpenAPI description, the recorder's hand-off
with its own service secret) are unaffected by a stale cookie.

CSRF: an unsafe request (POST, PUT, PATCH, DELETE) made with the session cookie must carry
``X-CSRF-Token`` (the session's token, from sign-in or ``GET /api/v1/session``) and, if the
browser sent an ``Origin``, our own host; bearer-token requests are exempt (browsers never
attach them by themselves). Sign-in and link redemption refuse a foreign Origin.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from urllib.parse import urlsplit

from aiohttp import web

from consult_api import accounts
from consult_api.account_schemas import (
    parse_code,
    parse_language,
    parse_password_change,
    parse_redeem,
    parse_sign_in,
)
from consult_api.errors import ConsultError, Forbidden, Unauthenticated
from consult_api.http import (
    AUTH,
    CLOCK,
    PASSWORD_HASHER,
    PEPPER,
    SECURE_COOKIES,
    Auth,
    actor_of,
    auth_of,
    in_db,
    json_body,
)
from consult_api.lockout import AddressLimiter, UnknownNames, retry_after
from consult_api.passwords import (
    API_TOKEN_PREFIX,
    check_policy,
    hash_password,
    needs_rehash,
    verify_password,
)

logger = logging.getLogger(__name__)

COOKIE = "huizhen_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LIMITER = web.AppKey("sign_in_limiter", AddressLimiter)
UNKNOWN = web.AppKey("unknown_names", UnknownNames)
BAD_CREDENTIALS = "the username or password is wrong"


def _address(request: web.Request) -> str:
    return request.remote or ""


def same_origin(request: web.Request) -> bool:
    """No Origin header (not a cross-site browser request), or our own host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower()


def _csrf_failure(request: web.Request, expected: str) -> ConsultError | None:
    if request.method not in UNSAFE:
        return None
    given = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()) or not same_origin(request):
        return Forbidden(f"this request needs the {CSRF_HEADER} header of the session and "
                         "must come from this site", code="csrf-failed")
    return None


async def _resolve(request: web.Request) -> Auth:
    now = request.app[CLOCK]()
    pepper, address = request.app[PEPPER], _address(request)
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token.startswith(API_TOKEN_PREFIX):
            return Auth(None, Unauthenticated("the Authorization header must be "
                                              "'Bearer <API token>'"))
        try:
            user = await in_db(request,
                               lambda s: accounts.resolve_api_token(s, pepper, token, now))
        except Unauthenticated as exc:
            return Auth(None, exc)
        return Auth(accounts.actor_for(user, address))
    cookie = request.cookies.get(COOKIE)
    if cookie:
        try:
            user, session_id, csrf = await in_db(
                request, lambda s: accounts.resolve_session(s, pepper, cookie, now))
        except Unauthenticated as exc:
            return Auth(None, exc)
        return Auth(accounts.actor_for(user, address), _csrf_failure(request, csrf),
                    session_id=session_id, csrf_token=csrf)
    return Auth(None)


@web.middleware
async def auth_middleware(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                          ) -> web.StreamResponse:
    if request.path.startswith("/api/"):
        request[AUTH] = await _resolve(request)
    return await handler(request)


def _too_many(code: str, message: str, seconds: int) -> web.Response:
    return web.json_response({"error": message, "code": code, "retry_after": seconds},
                             status=429, headers={"Retry-After": str(seconds)})


def _locked(seconds: int) -> web.Response:
    return _too_many("locked-out", "too many failed sign-ins: try again later", seconds)


def _foreign_origin() -> Forbidden:
    return Forbidden("this request must come from this site", code="csrf-failed")


def _set_cookie(request: web.Request, response: web.Response, value: str) -> None:
    response.set_cookie(COOKIE, value, path="/", httponly=True, samesite="Strict",
                        secure=request.app[SECURE_COOKIES] or None)


async def sign_in(request: web.Request) -> web.Response:
    """``{"username","password","totp"?}`` → the person and the session's CSRF token, and
    the session cookie. Unknown names, wrong passwords and disabled accounts all answer 401
    ``bad-credentials`` after the same argon2 work."""
    if not same_origin(request):
        raise _foreign_origin()
    data = parse_sign_in(await json_body(request))
    app = request.app
    now: datetime = app[CLOCK]()
    address = _address(request)
    wait = app[LIMITER].retry_after(address, now)
    if wait:
        return _too_many("rate-limited", "too many failed sign-ins from this address: "
                                         "try again later", wait)
    # A name no account can have (e.g. control characters) is not looked up.
    found = None if not accounts.USERNAME.fullmatch(data.username) else await in_db(
        request, lambda s: accounts.credentials(s, data.username))
    wait = retry_after(found.failures if found else app[UNKNOWN].get(data.username), now)
    if wait:
        return _locked(wait)
    hasher = app[PASSWORD_HASHER]
    stored = None if found is None else found.password_hash
    matches = await asyncio.to_thread(verify_password, hasher, stored, data.password)

    async def failed(error: Unauthenticated) -> Unauthenticated:
        app[LIMITER].fail(address, now)
        if found is None:
            app[UNKNOWN].fail(data.username, now)
        else:
            user_id = found.user_id
            await in_db(request, lambda s: accounts.record_failure(s, user_id, now))
        logger.info("sign-in failed (%s) from %s", error.code, address)
        return error

    if found is None or not matches or found.disabled:
        raise await failed(Unauthenticated(BAD_CREDENTIALS, code="bad-credentials"))
    if found.totp_secret is not None:
        if data.totp is None:
            raise Unauthenticated("enter the code from your authenticator app",
                                  code="totp-required")
        if not accounts.totp_matches(found.totp_secret, data.totp, now):
            raise await failed(Unauthenticated("the authenticator code is not valid",
                                               code="totp-invalid"))
    rehashed = None
    if stored is not None and needs_rehash(hasher, stored):
        rehashed = await asyncio.to_thread(hash_password, hasher, data.password)
    previous = request.cookies.get(COOKIE)
    pepper, user_id = app[PEPPER], found.user_id
    opened = await in_db(request, lambda s: accounts.open_session(
        s, pepper, user_id, now, address, previous_cookie=previous, rehashed=rehashed))
    if opened is None:
        raise Unauthenticated(BAD_CREDENTIALS, code="bad-credentials")
    response = web.json_response({"user": opened.me, "csrf_token": opened.csrf_token})
    _set_cookie(request, response, opened.cookie)
    return response


async def get_session(request: web.Request) -> web.Response:
    """The signed-in person and the CSRF token (null for API-token requests)."""
    auth = auth_of(request)
    assert auth.actor is not None
    user_id = auth.actor.user_id
    me = await in_db(request, lambda s: accounts.me(s, user_id))
    return web.json_response({"user": me, "csrf_token": auth.csrf_token})


async def sign_out(request: web.Request) -> web.Response:
    auth = auth_of(request)
    session_id, now = auth.session_id, request.app[CLOCK]()
    if session_id is not None:
        await in_db(request, lambda s: accounts.close_session(s, session_id, now))
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/")
    return response


async def change_password(request: web.Request) -> web.Response:
    """Needs the current password; ends the person's other sessions."""
    auth = auth_of(request)
    assert auth.actor is not None
    accounts.require_session(auth.session_id is not None)
    current, new = parse_password_change(await json_body(request))
    app, user_id = request.app, auth.actor.user_id
    now = app[CLOCK]()
    found = await in_db(request, lambda s: accounts.user_credentials(s, user_id))
    wait = retry_after(found.failures, now)
    if wait:
        return _locked(wait)
    hasher = app[PASSWORD_HASHER]
    if not await asyncio.to_thread(verify_password, hasher, found.password_hash, current):
        await in_db(request, lambda s: accounts.record_failure(s, user_id, now))
        raise Unauthenticated("the current password is wrong", code="bad-credentials")
    check_policy(new, found.username)
    new_hash = await asyncio.to_thread(hash_password, hasher, new)
    keep = auth.session_id
    await in_db(request, lambda s: accounts.set_password(s, user_id, new_hash, now, keep))
    return web.Response(status=204)


async def redeem_link(request: web.Request) -> web.Response:
    """``{"token","password"}``: set the password with a one-time link (no session)."""
    if not same_origin(request):
        raise _foreign_origin()
    token, password = parse_redeem(await json_body(request))
    app = request.app
    now, pepper, address = app[CLOCK](), app[PEPPER], _address(request)
    wait = app[LIMITER].retry_after(address, now)
    if wait:
        return _too_many("rate-limited", "too many failed attempts from this address: "
                                         "try again later", wait)
    try:
        _, username = await in_db(request, lambda s: accounts.link_user(s, pepper, token, now))
    except ConsultError:
        app[LIMITER].fail(address, now)
        raise
    check_policy(password, username)
    new_hash = await asyncio.to_thread(hash_password, app[PASSWORD_HASHER], password)
    await in_db(request, lambda s: accounts.redeem_link(s, pepper, token, new_hash, now))
    return web.Response(status=204)


async def get_me(request: web.Request) -> web.Response:
    user_id = actor_of(request).user_id
    return web.json_response(await in_db(request, lambda s: accounts.me(s, user_id)))


async def patch_me(request: web.Request) -> web.Response:
    user_id = actor_of(request).user_id
    language = parse_language(await json_body(request))
    return web.json_response(
        await in_db(request, lambda s: accounts.set_language(s, user_id, language)))


def _own_session(request: web.Request) -> int:
    auth = auth_of(request)
    assert auth.actor is not None
    accounts.require_session(auth.session_id is not None)
    return auth.actor.user_id


async def enrol_totp(request: web.Request) -> web.Response:
    """A new authenticator secret and its otpauth:// URI (for a QR code); it is asked at
    sign-in only once confirmed with a code."""
    user_id = _own_session(request)
    secret, uri = await in_db(request, lambda s: accounts.enrol_totp(s, user_id))
    return web.json_response({"secret": secret, "uri": uri})


async def confirm_totp(request: web.Request) -> web.Response:
    user_id = _own_session(request)
    code, now = parse_code(await json_body(request)), request.app[CLOCK]()
    await in_db(request, lambda s: accounts.confirm_totp(s, user_id, code, now))
    return web.Response(status=204)


async def disable_totp(request: web.Request) -> web.Response:
    user_id = _own_session(request)
    code, now = parse_code(await json_body(request)), request.app[CLOCK]()
    await in_db(request, lambda s: accounts.disable_totp(s, user_id, code, now))
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app[LIMITER] = AddressLimiter()
    app[UNKNOWN] = UnknownNames()
    app.router.add_post("/api/v1/session", sign_in)
    app.router.add_get("/api/v1/session", get_session)
    app.router.add_delete("/api/v1/session", sign_out)
    app.router.add_post("/api/v1/session/password", change_password)
    app.router.add_post("/api/v1/password-links/redeem", redeem_link)
    app.router.add_get("/api/v1/me", get_me)
    app.router.add_patch("/api/v1/me", patch_me)
    app.router.add_post("/api/v1/me/totp", enrol_totp)
    app.router.add_post("/api/v1/me/totp/confirm", confirm_totp)
    app.router.add_post("/api/v1/me/totp/disable", disable_totp)
