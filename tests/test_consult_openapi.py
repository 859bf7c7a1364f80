"""The served OpenAPI description covers every route with a success schema, and schemathesis,
run as every role against a live server on a seeded SQLite database, finds no server error,
no response that breaks its declared schema and no undeclared status.

Roles: requesting doctor, expert, coordinator and admin (API tokens), the recorder (its
service token, for the hand-off), a signed-in browser session (cookie and CSRF token, for the
session-only routes) and nobody (the public routes). Destructive operations never cut off the
fuzzing: ids of the fuzzing people and of their tokens are swapped for victims' ids, and
sign-out and password changes each get their own session.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyotp
import pytest
import requests
import schemathesis
import sqlalchemy as sa
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup, ServerError
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from consult_api.app import create_app
from consult_api.db import make_engine, make_sessionmaker, upgrade
from consult_api.models import ApiToken
from consult_api.openapi import OPENAPI_PATH, ROUTES, document, error_statuses, parameters
from consult_api.records import run_in_session
from consult_api.workflow import Actor
from tests.dicom_samples import ct_dataset, ct_values, save
from tests.test_consult_api import MEDIA_TOKENS, PATIENT, REQUEST, SECRET, DbTokens, seed
from tests.test_consult_db import scratch_postgres_database
from tests.test_consult_signin import FAST

RECORDER = "recorder-test-secret-" + "z" * 20
WEB_ROOT = Path(__file__).resolve().parent.parent / "web_client"
PASSWORD = "Fuzz-ward 7 rounds"
# Examples per operation per role: enough to reach the success paths of the seeded data,
# few enough for a couple of minutes on two shared cores.
EXAMPLES = 20
# Invalid requests (schemathesis' negative mode): each must be refused with a 4xx.
NEGATIVE_EXAMPLES = 10
INPUTS = {(op.method, op.path) for op in ROUTES if op.body is not None or parameters(op)}
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
# Session-only routes, and the session's own routes, are fuzzed with a browser session.
SESSION_ROUTES = {("get", "/api/v1/session"), ("delete", "/api/v1/session"),
                  ("get", "/api/v1/me"), ("patch", "/api/v1/me")}
# Operations on a person or a token named in the path: the fuzzing's own are swapped.
ON_USERS = {("patch", "/api/v1/users/{id}"), ("post", "/api/v1/users/{id}/reset")}
ON_TOKENS = {("delete", "/api/v1/api-tokens/{id}")}
OWN_SESSION = {("delete", "/api/v1/session"), ("post", "/api/v1/session/password")}

schema = schemathesis.openapi.from_dict(document())


def test_every_registered_route_is_described() -> None:
    app = create_app("sqlite://", SECRET)
    registered = {(route.method.lower(), route.resource.canonical)
                  for route in app.router.routes()
                  if route.resource is not None and route.method != "HEAD"}
    paths = document()["paths"]
    described = {(method, path) for path, ops in paths.items() for method in ops}
    assert registered == described
    assert len(ROUTES) == len(described)  # each declared once


def test_every_success_response_has_a_schema() -> None:
    described = document()
    names = set(described["components"]["schemas"])
    for path, ops in described["paths"].items():
        for method, op in ops.items():
            successes = {code: r for code, r in op["responses"].items() if code.startswith("2")}
            assert successes, (method, path)
            for code, response in successes.items():
                if code == "204":
                    assert "content" not in response, (method, path)
                    continue
                content = response.get("content")
                assert content, (method, path, code)
                for media_type, body in content.items():
                    assert "schema" in body, (method, path, media_type)
                    target = body["schema"].get("$ref", "").rsplit("/", 1)[-1]
                    assert not target or target in names, (method, path, target)
                    if media_type == "application/json" and path.startswith("/api/"):
                        assert target, (method, path)  # a named schema, not "any object"
            for code, response in op["responses"].items():
                if not code.startswith("2"):
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"}


def test_error_statuses_follow_the_route() -> None:
    by_route = {(op.method, op.path): op for op in ROUTES}
    assert error_statuses(by_route["get", "/api/v1/referrals/{id}"]) == [401, 403, 404]
    assert error_statuses(by_route["post", "/api/v1/artefacts"]) == [400, 401, 404, 409, 503]
    assert error_statuses(by_route["get", OPENAPI_PATH]) == []
    assert error_statuses(by_route["post", "/api/v1/session"]) == [400, 401, 403, 429]


def test_the_description_is_served_and_valid(live: Live) -> None:
    response = requests.get(live.base + OPENAPI_PATH, timeout=30)
    assert response.status_code == 200
    assert response.json() == document()
    # The description itself conforms to its own declared success schema.
    operation = schema["/api/v1/openapi.json"]["GET"]
    operation.validate_response(response)


# --- the live server and its seeded data -------------------------------------------------------

class Server:
    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.port = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    def start(self) -> str:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Live:
    backend: str
    base: str
    url: str
    people: dict[str, Actor]
    headers: dict[str, dict[str, str]]  # per role
    protected_users: set[int]
    victim_user: int
    protected_tokens: set[int]
    victim_token: int
    new_session: Callable[[str], dict[str, str]]
    password_session: dict[str, str]
    seeded: dict[str, int] = field(default_factory=dict)
    seeded_room: str = ""
    link_token: str = ""  # an unused set-password link
    totp_secret: str = ""


def _call(base: str, method: str, path: str, headers: dict[str, str], status: int,
          **kwargs: Any) -> Any:
    response = requests.request(method, base + path, headers=headers, timeout=30, **kwargs)
    assert response.status_code == status, (method, path, response.text)
    return response.json() if response.content and "json" in response.headers.get(
        "Content-Type", "") else None


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def _dicom(tmp: Path) -> bytes:
    ds = ct_dataset(rows=8, columns=8, syntax=ExplicitVRLittleEndian)
    ds.PixelData = ct_values(8, 8).astype(np.uint16).tobytes()
    return save(ds, tmp / "ct.dcm").read_bytes()


def _sign_in(base: str, username: str) -> dict[str, str]:
    response = requests.post(f"{base}/api/v1/session",
                             json={"username": username, "password": PASSWORD}, timeout=30)
    assert response.status_code == 200, response.text
    return {"Cookie": f"huizhen_session={response.cookies['huizhen_session']}",
            "X-CSRF-Token": response.json()["csrf_token"]}


def _person(base: str, admin: dict[str, str], hospital_id: int, username: str,
            role: str = "admin") -> int:
    """A person with a password, made the way an admin does: create, link, redeem."""
    created = _call(base, "post", "/api/v1/users", admin, 201, json={
        "hospital_id": hospital_id, "display_name": username.title(), "role": role,
        "username": username})
    token = created["set_password_url"].removeprefix("/#/set-password/")
    _call(base, "post", "/api/v1/password-links/redeem", {}, 204,
          json={"token": token, "password": PASSWORD})
    return int(created["id"])


def _seed_over_http(live: Live, tmp: Path) -> None:
    """A consultation in each interesting state, materials (PNG, PDF, a small DICOM),
    reports (published and an amendment draft), slots, a referral with a note, an artefact;
    notifications follow from these."""
    base, h, people = live.base, live.headers, live.people
    expert = people["expert"].user_id
    province = people["expert"].hospital_id
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0,
                                                                microsecond=0)

    def at(hours: float) -> str:
        return (tomorrow + timedelta(hours=hours)).isoformat()

    requested = _call(base, "post", "/api/v1/consultations", h["doctor"], 201,
                      json=REQUEST)["id"]
    scheduled = _call(base, "post", "/api/v1/consultations", h["doctor"], 201,
                      json=REQUEST)["id"]
    room = _call(base, "post", f"/api/v1/consultations/{scheduled}/schedule",
                 h["coordinator"], 200,
                 json={"start": at(1), "end": at(1.5), "expert_id": expert})["room"]
    offline = _call(base, "post", "/api/v1/consultations", h["doctor"], 201, json={
        **REQUEST, "type": "offline", "expert_id": expert})["id"]
    _call(base, "post", f"/api/v1/consultations/{offline}/transitions", h["expert"], 200,
          json={"to": "accepted", "note": "will read the films"})
    for cid in (requested, scheduled, offline):
        for name, data in (("ecg.png", _png()), ("letter.pdf", b"%PDF-1.4\n%%EOF\n"),
                           ("ct.dcm", _dicom(tmp))):
            material = _call(base, "post", f"/api/v1/consultations/{cid}/materials",
                             {**h["doctor"], "X-Filename": name}, 201, data=data)
    live.seeded["dicom"] = material["id"]  # of the offline consultation, read by all
    report = _call(base, "post", f"/api/v1/consultations/{offline}/reports", h["expert"], 201,
                   json={})["id"]
    _call(base, "patch", f"/api/v1/reports/{report}", h["expert"], 200, json={
        "diagnosis": "NSTEMI", "diagnosis_code": "I21.4"})
    _call(base, "post", f"/api/v1/reports/{report}/publish", h["expert"], 200)
    live.seeded["draft"] = _call(base, "post", f"/api/v1/reports/{report}/amend",
                                 h["expert"], 201, json={"reason": "troponin result added"})["id"]
    free = [_call(base, "post", f"/api/v1/experts/{expert}/slots", h["coordinator"], 201,
                  json={"start": at(hours), "end": at(hours + 0.5)})["id"]
            for hours in (3, 4, 5)]
    live.seeded.update(free_slot=free[0], other_free_slot=free[1], last_slot=free[2])
    for name in ("to_cancel", "queued", "queued_for_slot"):
        live.seeded[name] = _call(base, "post", "/api/v1/consultations", h["doctor"], 201,
                                  json=REQUEST)["id"]
    booked = _call(base, "post", f"/api/v1/experts/{expert}/slots", h["coordinator"], 201,
                   json={"start": at(6), "end": at(6.5)})["id"]
    _call(base, "post", f"/api/v1/consultations/{requested}/appointment", h["coordinator"],
          200, json={"slot_id": booked})
    referral = _call(base, "post", "/api/v1/referrals", h["doctor"], 201, json={
        "direction": "up", "to_hospital_id": province, "reason": "needs PCI",
        "consultation_id": scheduled,
        "patient": {k: PATIENT[k] for k in ("name", "sex", "age", "record_number")}})["id"]
    _call(base, "post", f"/api/v1/referrals/{referral}/notes", h["doctor"], 201,
          json={"text": "bed requested"})
    digest = hashlib.sha256(b"video").hexdigest()
    _call(base, "post", "/api/v1/artefacts", h["recorder"], 201, json={
        "manifest": {"id": "rec-1", "room": room}, "artefacts": {"files": [
            {"file": "a.mp4", "path": "/rec/a.mp4", "mime_type": "video/mp4", "bytes": 5,
             "sha256": digest}]}})
    live.seeded["doctor_notification"] = _call(
        base, "get", "/api/v1/notifications", h["doctor"], 200)["notifications"][0]["id"]
    live.seeded_room = room
    live.seeded.update(requested=requested, scheduled=scheduled, offline=offline,
                       report=report, referral=referral)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The records app over real HTTP on a seeded database: a SQLite file, and the real
    PostgreSQL."""
    tmp: Path = tmp_path_factory.mktemp("openapi")
    if request.param == "sqlite":
        yield from _live(f"sqlite:///{tmp / 'consult.sqlite3'}", tmp, "sqlite")
    else:
        with scratch_postgres_database() as url:
            yield from _live(url, tmp, "postgresql")


def _live(url: str, tmp: Path, backend: str) -> Iterator[Live]:
    upgrade(url)
    engine = make_engine(url)
    try:
        people = run_in_session(make_sessionmaker(engine), seed)
    finally:
        engine.dispose()
    server = Server(create_app(url, SECRET, room_tokens=MEDIA_TOKENS, data_dir=tmp / "files",
                               max_upload=1024 * 1024, recorder_token=RECORDER,
                               password_hasher=FAST, web_root=WEB_ROOT,
                               media_url="https://media.example.org"))
    base = server.start()
    tokens = DbTokens(url)
    headers = {role: {"Authorization": f"Bearer {tokens.mint(people[role])}"}
               for role in ("doctor", "expert", "coordinator", "admin")}
    headers["recorder"] = {"Authorization": f"Bearer {RECORDER}"}
    headers["public"] = {}
    province = people["admin"].hospital_id
    session_user = _person(base, headers["admin"], province, "fuzz-session")
    password_user = _person(base, headers["admin"], province, "fuzz-password")
    victim = _person(base, headers["admin"], province, "fuzz-victim", "requesting_doctor")
    newcomer = _call(base, "post", "/api/v1/users", headers["admin"], 201, json={
        "hospital_id": province, "display_name": "Newcomer", "role": "coordinator",
        "username": "fuzz-newcomer"})
    headers["session"] = _sign_in(base, "fuzz-session")
    victim_token = _call(base, "post", "/api/v1/api-tokens", headers["admin"], 201, json={
        "user_id": victim, "label": "victim", "ttl": 3600})["id"]

    def token_ids(s: Any) -> set[int]:
        return set(s.scalars(sa.select(ApiToken.id).where(ApiToken.id != victim_token)))

    engine = make_engine(url)
    try:
        protected_tokens = run_in_session(make_sessionmaker(engine), token_ids)
    finally:
        engine.dispose()
    live = Live(backend=backend, base=base, url=url, people=people, headers=headers,
                protected_users={p.user_id for p in people.values()}
                | {session_user, password_user, newcomer["id"]},
                victim_user=victim, protected_tokens=protected_tokens,
                victim_token=victim_token,
                new_session=lambda username: _sign_in(base, username),
                password_session=_sign_in(base, "fuzz-password"))
    live.link_token = newcomer["set_password_url"].removeprefix("/#/set-password/")
    _seed_over_http(live, tmp)
    try:
        yield live
    finally:
        server.stop()


# --- the fuzzing -------------------------------------------------------------------------------

@dataclass
class Tally:
    operations: int = 0
    examples: int = 0
    successes: int = 0  # examples answered 2xx: the success schemas were checked
    reached: set[tuple[str, str]] = field(default_factory=set)  # operations answered 2xx
    server_errors: list[str] = field(default_factory=list)
    schema_failures: list[str] = field(default_factory=list)
    status_failures: list[str] = field(default_factory=list)


def operations_of(role: str) -> list[tuple[str, str]]:
    """The (method, path) a role fuzzes: its routes, not ones it could only be refused."""
    wanted = []
    for op in ROUTES:
        key = (op.method, op.path)
        if role == "recorder":
            fits = op.access == "recorder"
        elif role == "session":
            fits = op.access == "session" or key in SESSION_ROUTES
        elif role == "public":
            fits = op.access == "public"
        else:
            fits = op.access == "user"
        if fits:
            wanted.append(key)
    return wanted


def _headers_for(live: Live, role: str, key: tuple[str, str]) -> dict[str, str]:
    if role == "session" and key == ("delete", "/api/v1/session"):
        return live.new_session("fuzz-session")
    if role == "session" and key == ("post", "/api/v1/session/password"):
        return live.password_session
    return live.headers[role]


def _guard(live: Live, key: tuple[str, str], case: Any) -> None:
    """Keep the fuzzing's own people and tokens out of destructive operations."""
    ident = (case.path_parameters or {}).get("id")
    if key in ON_USERS and ident in live.protected_users:
        case.path_parameters["id"] = live.victim_user
    if key in ON_TOKENS and ident in live.protected_tokens:
        case.path_parameters["id"] = live.victim_token


def _record(tally: Tally, case: Any, response: Any, failures: list[Failure]) -> None:
    where = f"{case.operation.label} -> {response.status_code}"
    for failure in failures:
        line = f"{where}: {type(failure).__name__}: {failure.title}: {failure.message[:600]}"
        if isinstance(failure, ServerError):
            tally.server_errors.append(line)
        elif "status_code_conformance" in failure.checks or "UndefinedStatus" in line:
            tally.status_failures.append(line)
        else:
            tally.schema_failures.append(line)


def check(live: Live, role: str, key: tuple[str, str], case: Any, tally: Tally,
          http: requests.Session) -> None:
    """Send one case as ``role`` and run the checks on the answer."""
    _guard(live, key, case)
    headers = _headers_for(live, role, key)
    response = case.call(base_url=live.base, session=http, headers=headers, timeout=30)
    tally.examples += 1
    if response.status_code < 300:
        tally.successes += 1
        tally.reached.add(key)
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except FailureGroup as group:
        _record(tally, case, response, list(group.exceptions))
    except Failure as failure:
        _record(tally, case, response, [failure])


def explicit(live: Live, role: str) -> list[tuple[tuple[str, str], dict[str, Any]]]:
    """Cases that reach success paths random data rarely finds: (operation, case fields)."""
    seeded = live.seeded
    expert = live.people["expert"].user_id
    later = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    ids = {"path_parameters": {"id": seeded["dicom"]}}
    shared: list[tuple[tuple[str, str], dict[str, Any]]] = [
        (("get", "/api/v1/materials/{id}/preview"), ids),
        (("get", "/api/v1/materials/{id}/frames/{n}"),
         {"path_parameters": {"id": seeded["dicom"], "n": 0}, "query": {"width": 400}}),
        (("get", "/api/v1/experts/{id}/slots"), {"path_parameters": {"id": expert}}),
    ]
    by_role: dict[str, list[tuple[tuple[str, str], dict[str, Any]]]] = {
        "recorder": [(("post", "/api/v1/artefacts"), {"body": {
            "manifest": {"id": "rec-2", "room": live.seeded_room},
            "artefacts": {"files": [{"file": "b.mp4", "path": "/rec/b.mp4",
                                     "mime_type": "video/mp4", "bytes": 5,
                                     "sha256": hashlib.sha256(b"video").hexdigest()}]}}})] * 2,
        "doctor": [
            *shared,
            (("post", "/api/v1/consultations/{id}/transitions"),
             {"path_parameters": {"id": seeded["to_cancel"]}, "body": {"to": "cancelled"}}),
            (("post", "/api/v1/notifications/{id}/read"),
             {"path_parameters": {"id": seeded["doctor_notification"]}}),
            (("post", "/api/v1/referrals"), {"body": {
            "direction": "up", "to_hospital_id": live.people["expert"].hospital_id,
            "reason": "needs PCI", "patient": {"name": "Wang Fang", "sex": "female",
                                               "age": 58}}})],
        "expert": [
            *shared,
            (("post", "/api/v1/consultations/{id}/transitions"),
             {"path_parameters": {"id": seeded["scheduled"]}, "body": {"to": "in_session"}}),
            (("post", "/api/v1/consultations/{id}/reports"),
             {"path_parameters": {"id": seeded["scheduled"]}, "body": {}}),
            (("patch", "/api/v1/reports/{id}"), {"path_parameters": {"id": seeded["draft"]},
                                                "body": {"sections": {"findings": "ST down"}}}),
            (("post", "/api/v1/reports/{id}/publish"),
             {"path_parameters": {"id": seeded["draft"]}}),
            (("post", "/api/v1/reports/{id}/amend"),
             {"path_parameters": {"id": seeded["draft"]}, "body": {"reason": "typo"}}),
        ],
        "coordinator": [
            *shared,
            (("post", "/api/v1/experts/{id}/slots"), {"path_parameters": {"id": expert},
                                                     "body": {"start": later.isoformat(),
                                                              "end": (later + timedelta(
                                                                  minutes=30)).isoformat()}}),
            (("post", "/api/v1/consultations/{id}/schedule"),
             {"path_parameters": {"id": seeded["queued"]},
              "body": {"start": (later + timedelta(hours=2)).isoformat(),
                       "end": (later + timedelta(hours=3)).isoformat(), "expert_id": expert}}),
            (("delete", "/api/v1/slots/{id}"), {"path_parameters": {"id": seeded["free_slot"]}}),
            (("post", "/api/v1/consultations/{id}/appointment"),
             {"path_parameters": {"id": seeded["queued_for_slot"]},
              "body": {"slot_id": seeded["other_free_slot"]}}),
            (("post", "/api/v1/referrals/{id}/transitions"),
             {"path_parameters": {"id": seeded["referral"]}, "body": {"to": "accepted"}}),
        ],
        "admin": [
            *shared,
            (("post", "/api/v1/experts/{id}/slots"), {"path_parameters": {"id": expert},
                                                     "body": {"start": (later + timedelta(
                                                         hours=5)).isoformat(),
                                                              "end": (later + timedelta(
                                                                  hours=6)).isoformat()}}),
            (("delete", "/api/v1/slots/{id}"), {"path_parameters": {"id": seeded["last_slot"]}}),
        ],
        "session": [(("post", "/api/v1/session/password"), {"body": {
            "current_password": PASSWORD, "new_password": "Another ward, 9 rounds"}})],
        "public": [(("post", "/api/v1/password-links/redeem"), {"body": {
                       "token": live.link_token, "password": PASSWORD}}),
                   (("post", "/api/v1/session"), {"body": {"username": "fuzz-session",
                                                           "password": PASSWORD}}),
                   (("get", "/workspace/{name}"), {"path_parameters": {"name": "app.js"}}),
                   (("get", "/i18n/{name}"), {"path_parameters": {"name": "common.json"}})],
    }
    return by_role.get(role, [])


def _totp_cases(live: Live, key: tuple[str, str]) -> list[dict[str, Any]]:
    """Enrol the session's authenticator afresh and confirm it; disable it again (so the
    session's person signs in without a code afterwards)."""
    if key == ("post", "/api/v1/me/totp/confirm"):
        enrolment = _call(live.base, "post", "/api/v1/me/totp", live.headers["session"], 200)
        live.totp_secret = enrolment["secret"]
        return [{"body": {"code": pyotp.TOTP(live.totp_secret).now()}}]
    if key == ("post", "/api/v1/me/totp/disable") and live.totp_secret:
        # The next step's code: the window allows one step either side.
        code = pyotp.TOTP(live.totp_secret).at(datetime.now(UTC) + timedelta(seconds=30))
        return [{"body": {"code": code}}]
    return []


def cases_for(live: Live, role: str, key: tuple[str, str]) -> list[dict[str, Any]]:
    """The explicit cases of one operation as ``role``."""
    found = [fields for wanted, fields in explicit(live, role) if wanted == key]
    if role == "session":
        found += _totp_cases(live, key)
    return found


def fuzz_operation(live: Live, role: str, key: tuple[str, str], tally: Tally,
                   http: requests.Session, mode: GenerationMode, examples: int) -> None:
    operation = schema[key[1]][key[0].upper()]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        check(live, role, key, case, tally, http)

    run()


def fuzz(live: Live, role: str) -> Tally:
    """The explicit cases of every operation first (on the seeded data as it was), then
    random ones."""
    tally = Tally()
    http = requests.Session()
    keys = operations_of(role)
    for key in keys:
        operation = schema[key[1]][key[0].upper()]
        for fields in cases_for(live, role, key):
            media = {"media_type": "application/json"} if "body" in fields else {}
            check(live, role, key, operation.Case(**media, **fields), tally, http)
    for key in keys:
        tally.operations += 1
        fuzz_operation(live, role, key, tally, http, GenerationMode.POSITIVE, EXAMPLES)
        if key in INPUTS:  # something to get wrong
            fuzz_operation(live, role, key, tally, http, GenerationMode.NEGATIVE,
                           NEGATIVE_EXAMPLES)
    return tally


# The public role last: its fuzzed sign-ins from this address trip the address limiter.
ROLES = ["doctor", "expert", "coordinator", "admin", "recorder", "session", "public"]


@pytest.mark.parametrize("role", ROLES)
def test_fuzzing_as_every_role(live: Live, role: str) -> None:
    tally = fuzz(live, role)
    print(f"\n[openapi fuzz] {live.backend:<10} {role:<11} operations={tally.operations:<3} "
          f"examples={tally.examples:<5} 2xx={tally.successes:<4} "
          f"server errors={len(tally.server_errors)} "
          f"schema failures={len(tally.schema_failures)} "
          f"status failures={len(tally.status_failures)}")
    problems = tally.server_errors + tally.schema_failures + tally.status_failures
    unreached = [f"{m.upper()} {p}" for m, p in operations_of(role) if (m, p) not in tally.reached]
    if unreached:
        print("    never 2xx:", ", ".join(unreached))
    for line in dict.fromkeys(problems):
        print("   ", line)
    assert tally.operations == len(operations_of(role)) > 0
    assert tally.examples >= tally.operations and tally.successes > 0
    assert not problems
