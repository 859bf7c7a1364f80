"""Hostile input to the records API is a 400 ``invalid-request``, never a 500: NUL characters,
deep nesting, numbers out of range, non-objects, odd path ids and query strings, timestamps
at the calendar's edges. The decoder on its own, then every POST/PATCH route over real HTTP
on SQLite AND PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from consult_api.errors import InvalidRequest
from consult_api.json_input import MAX_DEPTH, parse_json, parse_json_object
from consult_api.models import Consultation
from consult_api.openapi import ROUTES
from tests.consult_fixtures import seeded_world
from tests.test_consult_api import REQUEST, World
from tests.test_consult_signin import COOKIE, give_password, sign_in

RECORDER_TOKEN = "recorder-service-token-" + "h" * 20


def nested(depth: int) -> bytes:
    """An object nested ``depth`` levels deep (the top level counts as one)."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


# Each is refused wherever a JSON body is read, whatever the route.
HOSTILE: dict[str, bytes] = {
    "nul in a string": b'{"note": "a\\u0000b", "to": "cancelled"}',
    "nul in a key": b'{"to\\u0000": "cancelled"}',
    "nul deep inside": b'{"patient": {"name": ["x", {"y": "\\u0000"}]}}',
    "raw nul byte": b'{"note": "a\x00b"}',
    "lone surrogate": b'{"note": "\\ud800"}',
    "lone low surrogate in a key": b'{"\\udc00": 1}',
    "33 levels": nested(MAX_DEPTH + 1),
    "100000 levels": b"[" * 100_000 + b"]" * 100_000,
    "unclosed 100000 levels": b'{"a":' * 100_000,
    "2^53 + 1": b'{"expert_id": 9007199254740993}',
    "-(2^53 + 1)": b'{"template_id": -9007199254740993}',
    "2^63": b'{"patient": {"age": 9223372036854775808}}',
    "5000 digits": b'{"expert_id": 1' + b"0" * 5000 + b"}",
    "huge exponent": b'{"expert_id": 1e999}',
    "negative huge exponent float": b'{"x": -1.5e400}',
    "NaN": b'{"expert_id": NaN}',
    "Infinity": b'{"x": Infinity}',
    "-Infinity": b'{"x": [-Infinity]}',
    "array": b"[]",
    "string": b'"consultation"',
    "number": b"42",
    "null": b"null",
    "empty": b"",
    "not UTF-8": b'{"note": "\xff\xfe"}',
    "truncated": b'{"to": "cancel',
}


# --- the decoder ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_decoder_refuses(name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_json_object(HOSTILE[name])
    assert caught.value.code == "invalid-request" and caught.value.status == 400
    assert "\x00" not in caught.value.message and "9007" not in caught.value.message


def test_decoder_accepts_what_clients_send() -> None:
    assert parse_json(nested(MAX_DEPTH)) is not None
    assert parse_json(b'{"n": 9007199254740992, "m": -9007199254740992}') == {
        "n": 2**53, "m": -(2**53)}
    assert parse_json(b'{"f": 1.5e308, "g": 1e-999, "h": -0.0}') == {
        "f": 1.5e308, "g": 0.0, "h": 0.0}
    assert parse_json('{"名字": "张伟 😀 \\ud83d\\ude00"}'.encode()) == {"名字": "张伟 😀 😀"}
    assert parse_json(b'\xef\xbb\xbf{"bom": true}') == {"bom": True}
    assert parse_json(b"[1, 2]") == [1, 2]  # parse_json_object is the one that wants {}


@pytest.mark.parametrize("body", [b"[]", b"1", b'"x"', b"null", b"true"])
def test_only_objects_where_objects_are_expected(body: bytes) -> None:
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        parse_json_object(body)


# --- every route, over HTTP ----------------------------------------------------------------

@pytest.fixture
async def site(migrated: str, aiohttp_client: Any) -> AsyncIterator[World]:
    """The records app with every optional part on (room tokens, recorder hand-off)."""
    yield await seeded_world(migrated, aiohttp_client, recorder_token=RECORDER_TOKEN)


RECORDER_ROUTES = {op.path for op in ROUTES if op.access == "recorder"}


def writes() -> list[tuple[str, str, str | None]]:
    return [(op.method, op.path, op.body) for op in ROUTES if op.method in ("post", "patch")]


async def admin_session(site: World, username: str) -> dict[str, str]:
    """Headers of the admin signed in with a browser session (cookie and CSRF token): some
    routes (password change, authenticator) take a session only, never an API token."""
    browser = await sign_in(site.client, username)
    return {"Cookie": f"{COOKIE}={browser.cookie}", "X-CSRF-Token": browser.csrf}


async def test_every_write_route_refuses_hostile_json(site: World) -> None:
    cid = await create_consultation(site)
    admin = await give_password(site.client, site, "admin")
    statuses: dict[tuple[str, str, str], int] = {}
    for method, path, body in writes():
        # A fresh session per route: the test clock moves a minute per request, and a
        # session ends after 30 idle minutes.
        session = await admin_session(site, admin)
        headers = ({"Authorization": f"Bearer {RECORDER_TOKEN}"}
                   if path in RECORDER_ROUTES else session)
        url = path.replace("{id}", str(cid))
        for name, raw in HOSTILE.items():
            response = await site.client.request(
                method.upper(), url, data=raw, headers={
                    **headers, "Content-Type": "application/json"})
            result = await response.json()
            statuses[(method, path, name)] = response.status
            if body is not None and body != "upload":
                assert (response.status, result["code"]) == (400, "invalid-request"), (
                    method, path, name, result)
                assert "\x00" not in result["error"]
    assert max(statuses.values()) < 500, {k: v for k, v in statuses.items() if v >= 500}
    json_routes = {(m, p) for m, p, b in writes() if b is not None and b != "upload"}
    assert len(json_routes) >= 9  # consultations, transitions, schedule, reports, artefacts...
    # Nothing was written by any of them: still the one consultation.
    assert site.query(lambda s: s.scalar(sa.select(sa.func.count()).select_from(
        Consultation))) == 1


async def test_a_bogus_charset_is_not_a_500(site: World) -> None:
    response = await site.client.post(
        "/api/v1/consultations", data=json.dumps(REQUEST).encode(),
        headers={**site.auth("doctor"), "Content-Type": "application/json; charset=no-such"})
    assert response.status == 201  # the body is UTF-8 JSON, whatever the header claims


async def create_consultation(site: World, body: dict[str, Any] | None = None,
                              status: int = 201) -> int:
    response = await site.client.post("/api/v1/consultations", json=body or REQUEST,
                                      headers=site.auth("doctor"))
    result = await response.json()
    assert response.status == status, result
    return int(result["id"]) if status == 201 else 0


async def test_chinese_and_emoji_are_stored_as_sent(site: World) -> None:
    patient = {"name": "张伟", "sex": "male", "age": 63, "record_number": "住院号-0042",
               "summary": "胸痛三天 😣，心电图见附件。"}
    cid = await create_consultation(site, {**REQUEST, "patient": patient,
                                           "question": "是否为非ST段抬高型心梗？"})
    response = await site.client.get(f"/api/v1/consultations/{cid}",
                                     headers=site.auth("doctor"))
    detail = await response.json()
    assert response.status == 200
    assert detail["patient"] == patient
    assert detail["question"] == "是否为非ST段抬高型心梗？"


async def test_numbers_in_range_for_json_but_not_for_the_field(site: World) -> None:
    for change, message in (
        ({"expert_id": 2**53}, "expert_id must be an integer from 1 to 2147483647"),
        ({"expert_id": 2**31}, "expert_id must be an integer from 1 to 2147483647"),
        ({"expert_id": 1.5}, "expert_id must be an integer"),
        ({"patient": {**REQUEST["patient"], "age": 2**40}}, "patient.age must be an integer"),
        ({"patient": {**REQUEST["patient"], "age": -2**53}}, "patient.age must be an integer"),
    ):
        response = await site.client.post("/api/v1/consultations", json={**REQUEST, **change},
                                          headers=site.auth("doctor"))
        result = await response.json()
        assert (response.status, result["code"]) == (400, "invalid-request"), change
        assert message in result["error"]


async def test_timestamps_at_the_calendars_edges(site: World) -> None:
    cid = await create_consultation(site)
    for start, end in (
        ("0001-01-01T00:00:00+08:00", "2026-03-03T09:30:00+08:00"),  # overflows to UTC
        ("2026-03-03T09:00:00+08:00", "9999-12-31T23:59:59-01:00"),  # overflows to UTC
        ("2026-03-03T09:00:00+08:00", "9999-12-31T22:00:00+00:00"),  # + the room's grace
        ("1969-12-31T23:00:00+00:00", "2026-03-03T09:30:00+08:00"),
        ("2026-03-03T09:00:00+08:00", "2026-03-03T09:30:00+08:00" + "0" * 100),
        ("2026-03-03T09:00:00\u0000+08:00", "2026-03-03T09:30:00+08:00"),
    ):
        body = {"start": start, "end": end, "expert_id": site.people["expert"].user_id}
        response = await site.client.post(f"/api/v1/consultations/{cid}/schedule", json=body,
                                          headers=site.auth("coordinator"))
        result = await response.json()
        assert (response.status, result["code"]) == (400, "invalid-request"), (start, end)
    # The last hour of the range still works, up to the room token's grace after it.
    body = {"start": "2999-12-31T22:00:00+00:00", "end": "2999-12-31T23:00:00+00:00",
            "expert_id": site.people["expert"].user_id}
    response = await site.client.post(f"/api/v1/consultations/{cid}/schedule", json=body,
                                      headers=site.auth("coordinator"))
    assert response.status == 200, await response.text()
    token = await site.client.post(f"/api/v1/consultations/{cid}/room-token",
                                   headers=site.auth("expert"))
    assert token.status == 200, await token.text()


async def test_odd_path_ids_are_not_found(site: World) -> None:
    for raw_id in ("%C2%B2", "%D9%A1%D9%A2", "1e3", "-1", "0x10", "99999999999", "%00",
                   "1%00"):
        for url in (f"/api/v1/consultations/{raw_id}", f"/api/v1/materials/{raw_id}"):
            response = await site.client.get(url, headers=site.auth("doctor"))
            result = await response.json()
            assert (response.status, result["code"]) == (404, "not-found"), (url, result)
        patch = await site.client.patch(f"/api/v1/reports/{raw_id}", json={},
                                        headers=site.auth("expert"))
        assert patch.status == 404, raw_id


async def test_query_strings(site: World) -> None:
    for query, status in (
        ("specialty=%00", 400), ("specialty=card%00iology", 400),
        ("specialty=%ED%A0%80", 200), ("specialty=" + "x" * 201, 400),
        ("specialty=cardiology", 200), ("specialty=", 200),
        ("specialty=%E5%BF%83%E5%86%85%E7%A7%91", 200),
    ):
        response = await site.client.get(f"/api/v1/report-templates?{query}",
                                         headers=site.auth("expert"))
        result = await response.json()
        assert response.status == status, (query, result)
        if status == 400:
            assert result["code"] == "invalid-request"
            assert "specialty" in result["error"]


async def test_a_nul_in_an_upload_name_is_refused(site: World) -> None:
    cid = await create_consultation(site)
    for name in ("%00", "scan%00.pdf", "%ED%A0%80.pdf", "%FF.pdf"):
        response = await site.client.post(
            f"/api/v1/consultations/{cid}/materials", data=b"%PDF-1.4\n%%EOF\n",
            headers={**site.auth("doctor"), "X-Filename": name})
        result = await response.json()
        assert (response.status, result["code"]) == (400, "invalid-request"), (name, result)
