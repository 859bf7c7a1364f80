"""recorder.playback_tickets: JWT playback tickets, kept apart from room tokens."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest

from recorder.playback_tickets import AUDIENCE, TICKET_TYPE, PlaybackTickets
from signaling.tokens import TokenAuthority, TokenError

SECRET = "recordings-ticket-secret-0123456789abcdef"
NOW = 1_767_225_600.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def with_claims(ticket: str, **changes: Any) -> str:
    """The ticket with its payload changed and its signature kept (a tampered ticket)."""
    header, payload, signature = ticket.split(".")
    claims = {**json.loads(_unb64(payload)), **changes}
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def flip_signature(ticket: str) -> str:
    """The ticket with one bit of its signature flipped (in the middle: every bit counts)."""
    header, payload, signature = ticket.split(".")
    raw = bytearray(_unb64(signature))
    raw[len(raw) // 2] ^= 0x01
    return f"{header}.{payload}.{_b64(bytes(raw))}"


def test_a_ticket_is_a_jwt_naming_its_recording_audience_and_type() -> None:
    ticket = PlaybackTickets(SECRET, ttl=60).issue("rec-a", NOW)
    header = jwt.get_unverified_header(ticket)
    claims = jwt.decode(ticket, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert (claims["sub"], claims["exp"], claims["aud"], claims["typ"]) == (
        "rec-a", int(NOW) + 60, AUDIENCE, TICKET_TYPE)
    assert claims["jti"] != jwt.decode(PlaybackTickets(SECRET).issue("rec-a", NOW),
                                       options={"verify_signature": False})["jti"]


def test_an_expired_ticket_is_refused() -> None:
    tickets = PlaybackTickets(SECRET, ttl=60)
    ticket = tickets.issue("rec-a", NOW)
    assert tickets.verify(ticket, "rec-a", NOW + 59.9)
    assert not tickets.verify(ticket, "rec-a", NOW + 60)
    assert not tickets.verify(ticket, "rec-a", NOW + 3600)


def test_a_ticket_for_one_recording_does_not_open_another() -> None:
    tickets = PlaybackTickets(SECRET)
    ticket = tickets.issue("rec-a", NOW)
    assert tickets.verify(ticket, "rec-a", NOW + 1)
    assert not tickets.verify(ticket, "rec-b", NOW + 1)
    assert not tickets.verify(with_claims(ticket, sub="rec-b"), "rec-b", NOW + 1)


def test_a_room_token_of_the_same_secret_is_not_a_ticket_nor_the_reverse() -> None:
    authority = TokenAuthority(SECRET, issuer="huizhen", audience="huizhen")
    token = authority.mint(room="rec-a", role="expert", name="Dr. Wang", ttl=600,
                           subject="rec-a", now=NOW)
    tickets = PlaybackTickets(SECRET)
    assert not tickets.verify(token, "rec-a", NOW + 1)
    # Even a token carrying every ticket claim fails: its key is not the ticket key.
    forged = jwt.encode({"sub": "rec-a", "exp": int(NOW) + 600, "aud": AUDIENCE,
                         "typ": TICKET_TYPE}, SECRET, algorithm="HS256")
    assert not tickets.verify(forged, "rec-a", NOW + 1)
    ticket = tickets.issue("rec-a", NOW)
    with pytest.raises(TokenError):
        authority.verify(ticket, now=NOW + 1)


def test_a_ticket_of_another_kind_signed_with_the_ticket_key_is_refused() -> None:
    tickets = PlaybackTickets(SECRET)
    key = tickets._key  # what a second kind of token would be signed with by mistake
    for claims in ({"aud": "huizhen"}, {"typ": "room-token"}, {"typ": None}, {"aud": None}):
        document = {"sub": "rec-a", "exp": int(NOW) + 60, "aud": AUDIENCE,
                    "typ": TICKET_TYPE, **claims}
        other = jwt.encode({k: v for k, v in document.items() if v is not None}, key,
                           algorithm="HS256")
        assert not tickets.verify(other, "rec-a", NOW + 1), claims


def test_a_tampered_ticket_is_refused() -> None:
    tickets = PlaybackTickets(SECRET, ttl=60)
    ticket = tickets.issue("rec-a", NOW)
    assert tickets.verify(ticket, "rec-a", NOW + 1)
    assert not tickets.verify(flip_signature(ticket), "rec-a", NOW + 1)
    assert not tickets.verify(with_claims(ticket, exp=int(NOW) + 86_400), "rec-a", NOW + 120)
    unsigned = jwt.encode({"sub": "rec-a", "exp": int(NOW) + 60, "aud": AUDIENCE,
                           "typ": TICKET_TYPE}, None, algorithm="none")
    assert not tickets.verify(unsigned, "rec-a", NOW + 1)
    assert not PlaybackTickets(SECRET + "x").verify(ticket, "rec-a", NOW + 1)


@pytest.mark.parametrize("junk", [None, "", "a.b.c", "x" * 2000, "not a jwt at all"])
def test_junk_is_refused(junk: str | None) -> None:
    assert not PlaybackTickets(SECRET).verify(junk, "rec-a", NOW)


def test_malformed_expiry_claims_are_refused() -> None:
    tickets = PlaybackTickets(SECRET)
    for expires in ("2000000000", True, 2e9, [1]):
        odd = jwt.encode({"sub": "rec-a", "exp": expires, "aud": AUDIENCE, "typ": TICKET_TYPE},
                         tickets._key, algorithm="HS256")
        assert not tickets.verify(odd, "rec-a", NOW), expires


def test_the_secret_must_be_long_enough() -> None:
    with pytest.raises(ValueError):
        PlaybackTickets("short")
    assert PlaybackTickets(b"\x01" * 32).verify(
        PlaybackTickets(b"\x01" * 32).issue("rec-a", NOW), "rec-a", NOW)
