"""Sign-in, sessions, CSRF, lockout, set-password links, API tokens and authenticator codes,
over real HTTP on SQLite AND PostgreSQL (the ``world`` fixture), with the app's clock under
the test's control."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from consult_api.app import create_app
from consult_api.models import ApiToken, PasswordLink, User, UserSession
from tests.test_consult_api import MEDIA_TOKENS, REQUEST, SECRET, START, World

# Cheap argon2 parameters keep the tests fast; production uses the library's defaults.
FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
PASSWORD = "Ward-7 rounds"
COOKIE = "huizhen_session"


class ManualClock:
    """The app's clock, moved only by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Browser:
    """One signed-in browser: its session cookie and CSRF token, sent explicitly."""

    def __init__(self, client: TestClient[Any, Any], cookie: str, csrf: str) -> None:
        self.client, self.cookie, self.csrf = client, cookie, csrf

    async def call(self, method: str, path: str, *, csrf: bool = True,
                   headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        sent = {"Cookie": f"{COOKIE}={self.cookie}", **(headers or {})}
        if csrf:
            sent["X-CSRF-Token"] = self.csrf
        return await self.client.request(method, path, headers=sent, **kwargs)


async def app_client(world: World, aiohttp_client: Any, clock: Any = None,
                     **options: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(
        world.url, SECRET, clock=clock or ManualClock(), password_hasher=FAST, **options))
    return client


def set_username(world: World, who: str, username: str) -> None:
    def work(s: Session) -> None:
        s.get_one(User, world.people[who].user_id).username = username
    world.query(work)


async def give_password(client: TestClient[Any, Any], world: World, who: str,
                        password: str = PASSWORD) -> str:
    """The admin path: a username, a reset link, the person redeems it. Returns the name."""
    username = who.replace("_", "-")
    set_username(world, who, username)
    response = await client.post(f"/api/v1/users/{world.people[who].user_id}/reset",
                                 headers=world.auth("admin"))
    assert response.status == 200, await response.text()
    link = (await response.json())["set_password_url"]
    assert link.startswith("/#/set-password/")
    response = await client.post("/api/v1/password-links/redeem", json={
        "token": link.removeprefix("/#/set-password/"), "password": password})
    assert response.status == 204, await response.text()
    return username


async def attempt(client: TestClient[Any, Any], username: str, password: str = PASSWORD,
                  **extra: Any) -> tuple[int, dict[str, Any], Any]:
    response = await client.post("/api/v1/session",
                                 json={"username": username, "password": password, **extra})
    client.session.cookie_jar.clear()  # cookies are sent explicitly (Browser)
    return response.status, await response.json(), response


async def sign_in(client: TestClient[Any, Any], username: str,
                  password: str = PASSWORD, **extra: Any) -> Browser:
    status, body, response = await attempt(client, username, password, **extra)
    assert status == 200, body
    return Browser(client, response.cookies[COOKIE].value, body["csrf_token"])


def own_origin(client: TestClient[Any, Any]) -> str:
    return str(client.make_url("/")).rstrip("/")


async def test_sign_in_sets_a_strict_cookie_and_writes_need_the_csrf_token(
        world: World, aiohttp_client: Any) -> None:
    client = await app_client(world, aiohttp_client)
    username = await give_password(client, world, "doctor")
    status, body, response = await attempt(client, "DOCTOR", PASSWORD)  # any case
    assert status == 200, body
    [set_cookie] = response.headers.getall("Set-Cookie")
    attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")}
    assert {"httponly", "path"} <= attributes and "secure" not in attributes
    assert "samesite=strict" in set_cookie.lower() and "path=/" in set_cookie.lower()
    assert body["user"] == {
        "id": world.people["doctor"].user_id, "username": username, "display_name": "Doctor",
        "role": "requesting_doctor", "hospital_id": world.people["doctor"].hospital_id,
        "hospital_name": "Xian County People's Hospital", "department_id": None,
        "language": None, "totp_enabled": False}
    browser = Browser(client, response.cookies[COOKIE].value, body["csrf_token"])

    response = await browser.call("GET", "/api/v1/consultations", csrf=False)
    assert response.status == 200 and await response.json() == {
        "consultations": [], "next_before_id": None}
    response = await browser.call("POST", "/api/v1/consultations", json=REQUEST, csrf=False)
    assert (response.status, (await response.json())["code"]) == (403, "csrf-failed")
    response = await browser.call("POST", "/api/v1/consultations", json=REQUEST, csrf=False,
                                  headers={"X-CSRF-Token": "guessed"})
    assert (response.status, (await response.json())["code"]) == (403, "csrf-failed")
    response = await browser.call("POST", "/api/v1/consultations", json=REQUEST,
                                  headers={"Origin": "http://evil.example"})
    assert (response.status, (await response.json())["code"]) == (403, "csrf-failed")
    assert world.query(lambda s: s.scalar(sa.text("SELECT count(*) FROM consultations"))) == 0
    response = await browser.call("POST", "/api/v1/consultations", json=REQUEST,
                                  headers={"Origin": own_origin(client)})
    assert response.status == 201, await response.text()

    response = await browser.call("GET", "/api/v1/session", csrf=False)
    assert (await response.json())["csrf_token"] == browser.csrf
    # Login CSRF: a foreign page cannot sign the browser in.
    response = await client.post("/api/v1/session", json={"username": username,
                                                          "password": PASSWORD},
                                 headers={"Origin": "https://evil.example"})
    assert (response.status, (await response.json())["code"]) == (403, "csrf-failed")
    # Sign out needs the token too, and ends the session.
    assert (await browser.call("DELETE", "/api/v1/session", csrf=False)).status == 403
    assert (await browser.call("DELETE", "/api/v1/session")).status == 204
    response = await browser.call("GET", "/api/v1/session", csrf=False)
    assert (response.status, (await response.json())["code"]) == (401, "unauthenticated")


async def test_secure_cookies_when_configured(world: World, aiohttp_client: Any) -> None:
    client = await app_client(world, aiohttp_client, secure_cookies=True)
    username = await give_password(client, world, "coordinator")
    _, _, response = await attempt(client, username)
    assert "secure" in response.headers["Set-Cookie"].lower()


async def test_disabling_a_user_ends_their_session_and_api_token_at_once(
        world: World, aiohttp_client: Any) -> None:
    client = await app_client(world, aiohttp_client)
    username = await give_password(client, world, "doctor")
    browser = await sign_in(client, username)
    token = world.auth("doctor")
    assert (await browser.call("GET", "/api/v1/me")).status == 200
    assert (await client.get("/api/v1/me", headers=token)).status == 200
    doctor = world.people["doctor"].user_id

    response = await client.patch(f"/api/v1/users/{doctor}", json={"disabled": True},
                                  headers=world.auth("admin"))
    assert response.status == 200 and (await response.json())["disabled"] is True
    for response in [await browser.call("GET", "/api/v1/consultations"),
                     await client.get("/api/v1/consultations", headers=token)]:
        assert (response.status, (await response.json())["code"]) == (401, "unauthenticated")
    status, body, _ = await attempt(client, username)
    assert (status, body["code"]) == (401, "bad-credentials")

    # Enabled again: the machine token works again, the browser must sign in anew.
    response = await client.patch(f"/api/v1/users/{doctor}", json={"disabled": False},
                                  headers=world.auth("admin"))
    assert response.status == 200
    assert (await client.get("/api/v1/consultations", headers=token)).status == 200
    assert (await browser.call("GET", "/api/v1/consultations")).status == 401
    await sign_in(client, username)


async def test_a_role_change_takes_effect_on_the_next_request(world: World,
                                                              aiohttp_client: Any) -> None:
    client = await app_client(world, aiohttp_client)
    mine = await client.post("/api/v1/consultations", json=REQUEST,
                             headers=world.auth("doctor"))
    theirs = await client.post("/api/v1/consultations", json=REQUEST,
                               headers=world.auth("stranger"))
    ids = [(await mine.json())["id"], (await theirs.json())["id"]]
    doctor, token = world.people["doctor"].user_id, world.auth("doctor")

    async def visible() -> list[int]:
        response = await client.get("/api/v1/consultations", headers=token)
        return [c["id"] for c in (await response.json())["consultations"]]

    assert await visible() == ids[:1]
    response = await client.patch(f"/api/v1/users/{doctor}", json={"role": "coordinator"},
                                  headers=world.auth("admin"))
    assert response.status == 200
    assert await visible() == ids[::-1]  # the coordinator's queue: every hospital, newest first
    me = await (await client.get("/api/v1/me", headers=token)).json()
    assert me["role"] == "coordinator"


async def test_five_failures_lock_the_name_for_fifteen_minutes(world: World,
                                                               aiohttp_client: Any) -> None:
    clock = ManualClock()
    client = await app_client(world, aiohttp_client, clock)
    username = await give_password(client, world, "expert")
    for _ in range(5):
        status, body, _ = await attempt(client, username, "Wrong-password-1")
        assert (status, body["code"]) == (401, "bad-credentials")
    status, body, response = await attempt(client, username)  # right password, too late
    assert (status, body["code"], body["retry_after"]) == (429, "locked-out", 900)
    assert response.headers["Retry-After"] == "900"
    clock.advance(minutes=14)
    status, body, _ = await attempt(client, username)
    assert (status, body["retry_after"]) == (429, 60)
    clock.advance(minutes=1)
    await sign_in(client, username)
    user = world.query(lambda s: s.get_one(User, world.people["expert"].user_id))
    assert (user.failed_logins, user.locked_until) == (0, None)


async def test_unknown_names_answer_exactly_like_wrong_passwords(
        world: World, aiohttp_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="consult_api")
    client = await app_client(world, aiohttp_client)
    username = await give_password(client, world, "expert")
    wrong = await attempt(client, username, "Wrong-password-1")
    unknown = await attempt(client, "nobody-here", "Wrong-password-1")
    assert (wrong[0], wrong[1]) == (unknown[0], unknown[1]) == (
        401, {"error": "the username or password is wrong", "code": "bad-credentials"})
    # A NUL is refused before any name is looked up, whoever it names (PostgreSQL keeps no
    # NUL): the answer tells nothing about accounts either.
    hostile = await attempt(client, "exp\x00ert", "Wrong-password-1")
    assert hostile[0] == 400 and hostile[1]["code"] == "invalid-request"
    for _ in range(4):
        await attempt(client, "nobody-here", "Wrong-password-1")
    status, body, _ = await attempt(client, "nobody-here")
    assert (status, body["code"]) == (429, "locked-out")  # unknown names lock too
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "sign-in failed" in messages
    assert "nobody-here" not in messages and username not in messages
    assert "Wrong-password-1" not in messages


async def test_failures_from_one_address_are_rate_limited(world: World,
                                                          aiohttp_client: Any) -> None:
    clock = ManualClock()
    client = await app_client(world, aiohttp_client, clock)
    username = await give_password(client, world, "coordinator")
    await sign_in(client, username)  # successes cost nothing
    for index in range(20):
        status, body, _ = await attempt(client, f"guess-{index}", "Wrong-password-1")
        assert (status, body["code"]) == (401, "bad-credentials")
    status, body, response = await attempt(client, username)
    assert (status, body["code"]) == (429, "rate-limited")
    assert int(response.headers["Retry-After"]) == body["retry_after"] == 15
    clock.advance(seconds=15)  # 20 attempts per 5 minutes: one more every 15 s
    await sign_in(client, username)


async def test_set_password_links_are_single_use_and_expire(world: World,
                                                            aiohttp_client: Any) -> None:
    clock = ManualClock()
    client = await app_client(world, aiohttp_client, clock)
    admin = world.auth("admin")
    hospital = world.people["doctor"].hospital_id
    response = await client.post("/api/v1/users", headers=admin, json={
        "username": "Li.Na", "display_name": "李娜", "role": "requesting_doctor",
        "hospital_id": hospital})
    created = await response.json()
    assert response.status == 201, created
    assert created["link_expires_at"] == (START + timedelta(hours=72)).isoformat()
    token = created["set_password_url"].removeprefix("/#/set-password/")

    async def redeem(token: str, password: str) -> tuple[int, dict[str, Any] | None]:
        response = await client.post("/api/v1/password-links/redeem",
                                     json={"token": token, "password": password})
        return response.status, None if response.status == 204 else await response.json()

    for weak in ["short-1", "alllowercaseletters", "1234567890123", "li.na", "LI.NA"]:
        status, body = await redeem(token, weak)
        assert (status, body and body["code"]) == (400, "weak-password"), weak
    assert await redeem(token, PASSWORD) == (204, None)
    status, body = await redeem(token, "Another-pass-2")
    assert (status, body and body["code"]) == (400, "link-invalid")
    assert (await redeem("made-up-token", PASSWORD))[1]["code"] == "link-invalid"  # type: ignore[index]
    browser = await sign_in(client, "li.na")
    assert (await (await browser.call("GET", "/api/v1/me")).json())["display_name"] == "李娜"

    # Usernames are unique whatever their case.
    response = await client.post("/api/v1/users", headers=admin, json={
        "username": "LI.NA", "display_name": "X", "role": "admin", "hospital_id": hospital})
    assert (response.status, (await response.json())["code"]) == (409, "username-taken")
    # A link expires after 72 hours, and a new one replaces the old.
    response = await client.post("/api/v1/users", headers=admin, json={
        "username": "wang", "display_name": "王医生", "role": "requesting_doctor",
        "hospital_id": hospital})
    first = (await response.json())["set_password_url"].removeprefix("/#/set-password/")
    user_id = (await response.json())["id"]
    response = await client.post(f"/api/v1/users/{user_id}/reset", headers=admin)
    second = (await response.json())["set_password_url"].removeprefix("/#/set-password/")
    assert (await redeem(first, PASSWORD))[0] == 400
    clock.advance(hours=72)
    status, body = await redeem(second, PASSWORD)
    assert (status, body and body["code"]) == (400, "link-invalid")
    # Only admins create people.
    response = await client.post("/api/v1/users", headers=world.auth("coordinator"), json={
        "username": "zhao", "display_name": "Z", "role": "admin", "hospital_id": hospital})
    assert response.status == 403


async def test_changing_the_password_ends_the_other_sessions(world: World,
                                                             aiohttp_client: Any) -> None:
    client = await app_client(world, aiohttp_client)
    username = await give_password(client, world, "doctor")
    here, there = await sign_in(client, username), await sign_in(client, username)

    async def change(current: str, new: str) -> tuple[int, str | None]:
        response = await here.call("POST", "/api/v1/session/password",
                                   json={"current_password": current, "new_password": new})
        return response.status, None if response.status == 204 else (
            await response.json())["code"]

    assert await change("Not-my-password1", "Brand-new-pass-9") == (401, "bad-credentials")
    assert await change(PASSWORD, "tooshort") == (400, "weak-password")
    assert await change(PASSWORD, "Brand-new-pass-9") == (204, None)
    assert (await here.call("GET", "/api/v1/me")).status == 200
    assert (await there.call("GET", "/api/v1/me")).status == 401
    assert (await attempt(client, username))[0] == 401
    await sign_in(client, username, "Brand-new-pass-9")
    # A machine token cannot change the password.
    response = await client.post("/api/v1/session/password", headers=world.auth("doctor"),
                                 json={"current_password": "Brand-new-pass-9",
                                       "new_password": "Another-pass-10"})
    assert (response.status, (await response.json())["code"]) == (403, "session-required")


async def test_authenticator_codes(world: World, aiohttp_client: Any) -> None:
    clock = ManualClock()
    client = await app_client(world, aiohttp_client, clock)
    username = await give_password(client, world, "admin")
    browser = await sign_in(client, username)
    response = await client.post("/api/v1/me/totp", headers=world.auth("admin"))
    assert (response.status, (await response.json())["code"]) == (403, "session-required")
    enrolment = await (await browser.call("POST", "/api/v1/me/totp")).json()
    assert enrolment["uri"].startswith("otpauth://totp/huizhen:admin?secret=")
    totp = pyotp.TOTP(enrolment["secret"])
    response = await browser.call("POST", "/api/v1/me/totp/confirm", json={"code": "000000"
                                  if totp.at(clock.now) != "000000" else "111111"})
    assert (response.status, (await response.json())["code"]) == (400, "totp-invalid")
    # Not asked before it is confirmed.
    await sign_in(client, username)
    response = await browser.call("POST", "/api/v1/me/totp/confirm",
                                  json={"code": totp.at(clock.now)})
    assert response.status == 204
    assert (await (await browser.call("GET", "/api/v1/me")).json())["totp_enabled"] is True

    status, body, _ = await attempt(client, username)
    assert (status, body["code"]) == (401, "totp-required")
    status, body, _ = await attempt(client, username, totp="12345")
    assert (status, body["code"]) == (401, "totp-invalid")
    stale = totp.at(clock.now - timedelta(minutes=5))
    status, body, _ = await attempt(client, username, totp=stale)
    assert (status, body["code"]) == (401, "totp-invalid")
    failures = world.query(lambda s: s.get_one(User, world.people["admin"].user_id)
                           .failed_logins)
    assert failures == 2  # wrong codes count as failures
    status, body, _ = await attempt(client, username, "Wrong-password-1",
                                    totp=totp.at(clock.now))
    assert (status, body["code"]) == (401, "bad-credentials")
    browser = await sign_in(client, username, totp=totp.at(clock.now))

    response = await browser.call("POST", "/api/v1/me/totp/disable", json={"code": "99999"})
    assert response.status == 400
    clock.advance(seconds=30)
    response = await browser.call("POST", "/api/v1/me/totp/disable",
                                  json={"code": totp.at(clock.now)})
    assert response.status == 204
    await sign_in(client, username)


async def test_api_tokens_are_issued_listed_and_revoked(world: World,
                                                        aiohttp_client: Any) -> None:
    clock = ManualClock()
    client = await app_client(world, aiohttp_client, clock)
    admin, doctor = world.auth("admin"), world.people["doctor"].user_id
    response = await client.post("/api/v1/api-tokens", headers=admin, json={
        "user_id": doctor, "label": "PACS bridge", "ttl": 3600})
    issued = await response.json()
    assert response.status == 201, issued
    assert issued["token"].startswith("hz_") and len(issued["token"]) > 40
    assert issued["expires_at"] == (START + timedelta(hours=1)).isoformat()
    machine = {"Authorization": f"Bearer {issued['token']}"}
    response = await client.get("/api/v1/session", headers=machine)
    body = await response.json()
    assert (response.status, body["user"]["id"], body["csrf_token"]) == (200, doctor, None)
    # Bearer requests need no CSRF token.
    assert (await client.post("/api/v1/consultations", json=REQUEST,
                              headers=machine)).status == 201

    listed = (await (await client.get("/api/v1/api-tokens", headers=admin)).json())["tokens"]
    mine = [t for t in listed if t["id"] == issued["id"]]
    assert mine == [{"id": issued["id"], "user_id": doctor, "label": "PACS bridge",
                     "created_at": START.isoformat(), "expires_at": issued["expires_at"],
                     "revoked": False, "last_used_at": START.isoformat()}]
    own = (await (await client.get("/api/v1/api-tokens", headers=machine)).json())["tokens"]
    assert {t["user_id"] for t in own} == {doctor}

    for ttl in [365 * 24 * 3600 + 1, 10, "3600"]:
        response = await client.post("/api/v1/api-tokens", headers=admin, json={
            "user_id": doctor, "label": "x", "ttl": ttl})
        assert response.status == 400, ttl
    assert (await response.json())["code"] == "invalid-request"
    response = await client.post("/api/v1/api-tokens", headers=admin, json={
        "user_id": doctor, "label": "x", "ttl": 365 * 24 * 3600 + 1})
    assert (await response.json())["code"] == "ttl-too-long"
    response = await client.post("/api/v1/api-tokens", headers=machine, json={
        "user_id": doctor, "label": "x", "ttl": 60})
    assert response.status == 403

    other = world.auth("coordinator")
    response = await client.delete(f"/api/v1/api-tokens/{issued['id']}", headers=other)
    assert response.status == 404  # not theirs
    response = await client.delete(f"/api/v1/api-tokens/{issued['id']}", headers=admin)
    assert response.status == 204
    response = await client.get("/api/v1/me", headers=machine)
    assert (response.status, (await response.json())["code"]) == (401, "unauthenticated")

    # Expiry, and things that are not tokens at all.
    response = await client.post("/api/v1/api-tokens", headers=admin, json={
        "user_id": doctor, "label": "short", "ttl": 60})
    short = {"Authorization": f"Bearer {(await response.json())['token']}"}
    assert (await client.get("/api/v1/me", headers=short)).status == 200
    clock.advance(seconds=60)
    assert (await client.get("/api/v1/me", headers=short)).status == 401
    for header in ["Bearer hz_forged", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "Basic YTpi"]:
        assert (await client.get("/api/v1/me", headers={"Authorization": header})).status == 401


async def test_only_hashes_of_secrets_are_stored(world: World, aiohttp_client: Any) -> None:
    client = await app_client(world, aiohttp_client)
    admin = world.auth("admin")
    response = await client.post("/api/v1/users", headers=admin, json={
        "username": "zhou", "display_name": "周医生", "role": "expert", "specialty": "neurology",
        "hospital_id": world.people["expert"].hospital_id})
    link = (await response.json())["set_password_url"].removeprefix("/#/set-password/")
    browser = await sign_in(client, await give_password(client, world, "doctor"))
    response = await client.post("/api/v1/api-tokens", headers=admin, json={
        "user_id": world.people["doctor"].user_id, "label": "x", "ttl": 600})
    token = (await response.json())["token"]
    secrets = [PASSWORD, link, browser.cookie, token, admin["Authorization"].split()[1]]

    def dump(s: Session) -> str:
        rows = [s.execute(sa.select(table)).all()
                for table in (User, UserSession, ApiToken, PasswordLink)]
        return repr(rows)

    stored = world.query(dump)
    for secret in secrets:
        assert secret not in stored
    hashes = world.query(lambda s: s.scalars(sa.select(User.password_hash).where(
        User.password_hash.is_not(None))).all())
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)
    assert world.query(lambda s: s.get(UserSession, browser.cookie)) is None


async def test_sign_in_rehashes_a_password_stored_with_other_parameters(
        world: World, aiohttp_client: Any) -> None:
    client = await app_client(world, aiohttp_client)
    username = await give_password(client, world, "expert")
    user_id = world.people["expert"].user_id
    old = world.query(lambda s: s.get_one(User, user_id).password_hash)
    stronger = PasswordHasher(time_cost=2, memory_cost=8192, parallelism=1)
    upgraded = await aiohttp_client(create_app(world.url, SECRET, clock=ManualClock(),
                                               password_hasher=stronger))
    await sign_in(upgraded, username)
    new = world.query(lambda s: s.get_one(User, user_id).password_hash)
    assert new != old and "t=2" in new and not stronger.check_needs_rehash(new)
    await sign_in(upgraded, username)


async def test_language_preference(world: World, aiohttp_client: Any) -> None:
    client = await app_client(world, aiohttp_client)
    browser = await sign_in(client, await give_password(client, world, "expert"))
    assert (await (await browser.call("GET", "/api/v1/me")).json())["language"] is None
    response = await browser.call("PATCH", "/api/v1/me", json={"language": "en"})
    assert response.status == 200 and (await response.json())["language"] == "en"
    session = await (await browser.call("GET", "/api/v1/session")).json()
    assert session["user"]["language"] == "en"
    for bad in [{"language": "fr"}, {"language": None}, ["en"]]:
        response = await browser.call("PATCH", "/api/v1/me", json=bad)
        assert response.status == 400


async def test_admins_manage_people_hospitals_and_departments(world: World,
                                                              aiohttp_client: Any) -> None:
    client = await app_client(world, aiohttp_client)
    admin, people = world.auth("admin"), world.people
    county = people["doctor"].hospital_id
    hospitals = await (await client.get("/api/v1/hospitals",
                                        headers=world.auth("doctor"))).json()
    assert [h["name"] for h in hospitals["hospitals"]] == [
        "Xian County People's Hospital", "Another County Hospital", "Provincial Hospital"]
    response = await client.post("/api/v1/departments", headers=admin,
                                 json={"hospital_id": county, "name": "急诊科"})
    assert response.status == 201
    department = (await response.json())["id"]
    listed = await (await client.get(f"/api/v1/departments?hospital_id={county}",
                                     headers=world.auth("doctor"))).json()
    assert listed == {"departments": [{"id": department, "hospital_id": county,
                                       "name": "急诊科"}]}
    response = await client.post("/api/v1/departments", headers=world.auth("doctor"),
                                 json={"hospital_id": county, "name": "X"})
    assert response.status == 403

    set_username(world, "colleague", "zhang.san")
    found = await (await client.get(f"/api/v1/users?hospital_id={county}&q=ZHANG",
                                    headers=admin)).json()
    assert found == {"users": [{"id": people["colleague"].user_id, "username": "zhang.san",
                                "display_name": "Colleague", "role": "requesting_doctor",
                                "hospital_id": county, "department_id": None,
                                "disabled": False, "last_sign_in": None}]}
    experts = await (await client.get("/api/v1/users?role=expert", headers=admin)).json()
    assert {u["id"] for u in experts["users"]} == {people["expert"].user_id,
                                                   people["other_expert"].user_id}
    assert (await client.get("/api/v1/users?role=nurse", headers=admin)).status == 400
    assert (await client.get("/api/v1/users?q=a%00b", headers=admin)).status == 400
    response = await client.post("/api/v1/api-tokens", headers=admin, json={
        "user_id": people["doctor"].user_id, "label": "bad\x00label", "ttl": 600})
    assert response.status == 400
    assert (await client.get("/api/v1/users", headers=world.auth("coordinator"))).status == 403

    colleague = f"/api/v1/users/{people['colleague'].user_id}"
    response = await client.patch(colleague, headers=admin, json={
        "department_id": department, "display_name": "张三"})
    changed = await response.json()
    assert (changed["department_id"], changed["display_name"]) == (department, "张三")
    other_hospital = people["stranger"].hospital_id
    response = await client.patch(colleague, headers=admin,
                                  json={"hospital_id": other_hospital})
    changed = await response.json()
    assert (changed["hospital_id"], changed["department_id"]) == (other_hospital, None)
    response = await client.patch(colleague, headers=admin, json={"department_id": department})
    assert response.status == 400  # a department of another hospital
    for body in [{}, {"role": "nurse"}, {"disabled": "yes"}, {"display_name": ""}]:
        assert (await client.patch(colleague, headers=admin, json=body)).status == 400, body
    assert (await client.patch("/api/v1/users/999999", headers=admin,
                               json={"display_name": "X"})).status == 404
    me = f"/api/v1/users/{people['admin'].user_id}"
    for body in [{"disabled": True}, {"role": "coordinator"}]:
        response = await client.patch(me, headers=admin, json=body)
        assert (response.status, (await response.json())["code"]) == (400, "self-change")


async def test_room_tokens_carry_the_display_name(world: World, aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(world.url, SECRET, room_tokens=MEDIA_TOKENS,
                                             password_hasher=FAST))
    created = await client.post("/api/v1/consultations", json=REQUEST,
                                headers=world.auth("doctor"))
    cid = (await created.json())["id"]
    now = datetime.now(UTC)
    response = await client.post(f"/api/v1/consultations/{cid}/schedule", json={
        "start": (now + timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=2)).isoformat(),
        "expert_id": world.people["expert"].user_id}, headers=world.auth("coordinator"))
    assert response.status == 200
    response = await client.post(f"/api/v1/consultations/{cid}/room-token",
                                 headers=world.auth("expert"))
    grant = MEDIA_TOKENS.verify((await response.json())["token"])
    assert grant.name == "Expert"


async def test_a_link_redeemed_twice_at_once_sets_one_password(world: World,
                                                               aiohttp_client: Any) -> None:
    client = await app_client(world, aiohttp_client)
    response = await client.post("/api/v1/users", headers=world.auth("admin"), json={
        "username": "sun", "display_name": "孙医生", "role": "coordinator",
        "hospital_id": world.people["coordinator"].hospital_id})
    token = (await response.json())["set_password_url"].removeprefix("/#/set-password/")
    passwords = [f"Race-password-{n}" for n in range(4)]
    responses = await asyncio.gather(*[
        client.post("/api/v1/password-links/redeem", json={"token": token, "password": p})
        for p in passwords])
    statuses = [r.status for r in responses]
    assert sorted(statuses) == [204, 400, 400, 400]
    winner = passwords[statuses.index(204)]
    await sign_in(client, "sun", winner)
    for loser in set(passwords) - {winner}:
        assert (await attempt(client, "sun", loser))[0] == 401


async def test_sessions_end_when_idle_for_30_minutes_and_after_12_hours(
        world: World, aiohttp_client: Any) -> None:
    clock = ManualClock()
    client = await app_client(world, aiohttp_client, clock)
    username = await give_password(client, world, "expert")
    idle = await sign_in(client, username)
    clock.advance(minutes=29)
    assert (await idle.call("GET", "/api/v1/me")).status == 200  # activity keeps it alive
    clock.advance(minutes=29)
    assert (await idle.call("GET", "/api/v1/me")).status == 200
    clock.advance(minutes=30)
    assert (await idle.call("GET", "/api/v1/me")).status == 401

    busy = await sign_in(client, username)
    for _ in range(35):  # 11 h 40 min of steady use
        clock.advance(minutes=20)
        assert (await busy.call("GET", "/api/v1/me")).status == 200
    clock.advance(minutes=20)
    response = await busy.call("GET", "/api/v1/me")
    assert (response.status, (await response.json())["code"]) == (401, "unauthenticated")


async def test_an_admin_reset_ends_sessions_password_and_authenticator(
        world: World, aiohttp_client: Any) -> None:
    clock = ManualClock()
    client = await app_client(world, aiohttp_client, clock)
    username = await give_password(client, world, "coordinator")
    browser = await sign_in(client, username)
    secret = (await (await browser.call("POST", "/api/v1/me/totp")).json())["secret"]
    response = await browser.call("POST", "/api/v1/me/totp/confirm",
                                  json={"code": pyotp.TOTP(secret).at(clock.now)})
    assert response.status == 204
    coordinator = world.people["coordinator"].user_id
    response = await client.post(f"/api/v1/users/{coordinator}/reset",
                                 headers=world.auth("admin"))
    assert response.status == 200
    assert (await browser.call("GET", "/api/v1/me")).status == 401
    status, body, _ = await attempt(client, username, totp=pyotp.TOTP(secret).at(clock.now))
    assert (status, body["code"]) == (401, "bad-credentials")
    link = (await response.json())["set_password_url"].removeprefix("/#/set-password/")
    response = await client.post("/api/v1/password-links/redeem",
                                 json={"token": link, "password": "Fresh-start-2026"})
    assert response.status == 204
    browser = await sign_in(client, username, "Fresh-start-2026")  # no code asked any more
    assert (await (await browser.call("GET", "/api/v1/me")).json())["totp_enabled"] is False
    response = await client.post("/api/v1/users/999999/reset", headers=world.auth("admin"))
    assert response.status == 404
