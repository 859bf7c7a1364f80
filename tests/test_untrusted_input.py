"""Claims and request fields of every JSON type get a documented error, never internal-error."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from signaling import SIGNALING_CONFIG
from signaling.client import SignalingClient, SignalingError
from signaling.messages import ProtocolError, parse_request
from signaling.tokens import Grant, TokenAuthority, TokenError
from tests.test_sdp_fuzz import allow_fast_clients

PROTOCOL = Path(__file__).resolve().parent.parent / "signaling" / "PROTOCOL.md"
JSON_VALUES: list[Any] = [None, True, False, 0, -1, 1.5, 2**63, 1e308, "", "x", "ward",
                          "x" * 300, [], ["ward"], [1, "a"], {}, {"a": 1}, {"role": "ward"}]
CLAIMS = ["sub", "name", "room", "role", "grants", "exp", "iat", "nbf", "jti", "iss", "aud"]


def documented_error_codes() -> set[str]:
    """The codes listed in PROTOCOL.md's "Errors" table."""
    section = PROTOCOL.read_text("utf-8").split("## Errors", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z-]+)`", section, flags=re.MULTILINE))


def signed(secret: str, **claims: Any) -> str:
    now = int(time.time())
    base = {"iss": "huizhen", "aud": "huizhen-media", "sub": "u-1", "name": "n", "room": "bed-1",
            "role": "expert", "grants": ["publish", "subscribe"], "iat": now, "nbf": now - 5,
            "exp": now + 60, "jti": "j"}
    # Signed by hand: PyJWT's encoder refuses some of the odd claims a holder of the
    # secret (a buggy records service, say) could still sign.
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({**base, **claims}).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64(signature.digest())}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


SECRET = "test-secret-0123456789abcdef-0123456789"  # tests/conftest.py's token secret


@pytest.mark.parametrize("claim", CLAIMS)
def test_every_claim_of_every_json_type_is_validated(claim):
    authority = TokenAuthority(SECRET, "huizhen", "huizhen-media")
    for value in JSON_VALUES:
        token = signed(SECRET, **{claim: value})
        try:
            grant = authority.verify(token)
        except TokenError as exc:
            assert exc.message and "x" * 20 not in exc.message
            continue
        assert isinstance(grant, Grant)
        assert all(isinstance(v, str) and v for v in (grant.subject, grant.name, grant.room,
                                                      grant.role)), (claim, value)
        assert isinstance(grant.expires_at, int) and grant.expires_at > time.time()


@pytest.mark.parametrize("role", [value for value in JSON_VALUES if value not in ("ward",)])
async def test_a_role_of_any_json_type_is_unauthorized(running_server, role):
    client = SignalingClient(running_server.ws_url)
    await client.connect()
    with pytest.raises(SignalingError) as info:
        await client.join(signed(SECRET, role=role))
    assert info.value.code == "unauthorized"
    assert "role must be one of expert, observer, operator, ward" in info.value.message
    # The socket is still usable: a good token joins.
    joined = await client.join(signed(SECRET, role="observer", grants=["subscribe"]))
    assert joined["participant"]["role"] == "observer"
    await client.close()


KINDS = ["join", "publish", "unpublish", "subscribe", "answer", "unsubscribe", "refresh",
         "ping", "ptz", "leave"]
FIELDS = ["id", "type", "version", "token", "sdp", "stream", "subscription", "action", "pan",
          "tilt", "zoom", "preset", "extra"]
VALID = {"version": 1, "token": "t", "sdp": "v=0\r\n", "stream": "s-1", "subscription": "d-1",
         "action": "move", "pan": 0.5, "tilt": 0, "zoom": 0, "preset": 1}


def fuzzed_messages(kinds: list[str]) -> list[dict[str, Any]]:
    messages = []
    for kind in kinds:
        for field in FIELDS:
            for value in JSON_VALUES:
                messages.append({**VALID, "type": kind, field: value})
    return messages


def test_the_parser_gives_bad_message_or_a_request():
    documented = documented_error_codes()
    outcomes = set()
    for message in fuzzed_messages(KINDS):
        try:
            request = parse_request(json.dumps(message))
        except ProtocolError as exc:
            assert exc.code in documented
            outcomes.add(exc.code)
            assert "x" * 20 not in exc.message
            continue
        outcomes.add(type(request).__name__)
    assert "bad-message" in outcomes and "Refresh" in outcomes and "Ptz" in outcomes


async def test_every_field_of_every_type_over_the_socket(running_server):
    """About 2,000 requests on one joined socket: only documented codes, it stays usable."""
    allow_fast_clients(running_server)
    bucket_config = running_server.app[SIGNALING_CONFIG]
    object.__setattr__(bucket_config, "message_burst", 100_000)  # no rate-limited replies
    documented = documented_error_codes()
    client = SignalingClient(running_server.ws_url)
    await client.connect()
    await client.join(running_server.token("expert"))
    assert client._ws is not None
    replies: dict[str, int] = {}
    for message in fuzzed_messages([k for k in KINDS if k != "leave"]):
        await client._ws.send_str(json.dumps(message))
        # Sent around the client's request matching, so every reply lands in `events`.
        reply = await asyncio.wait_for(client.events.get(), 10)
        kind = reply["code"] if reply["type"] == "error" else reply["type"]
        replies[kind] = replies.get(kind, 0) + 1
    errors = {k for k in replies if k not in ("pong", "refreshed", "joined", "ok")}
    assert errors <= documented, replies
    assert "internal-error" not in replies and "rate-limited" not in replies
    assert {"bad-message", "bad-sdp", "not-found", "already-joined", "unauthorized",
            "ptz-unavailable"} <= set(replies), replies
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()
