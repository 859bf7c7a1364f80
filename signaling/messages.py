"""Signalling messages: parse client JSON into typed requests, render events (sans-I/O).

See PROTOCOL.md beside this file. Every malformed message becomes a
``ProtocolError`` with a stable code and a message that is safe to show; none
of them carries what the client sent back (it could contain anything).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from contracts.ptz import PtzRequest
from mediaserver.events import (
    AppEvent,
    ParticipantInfo,
    ParticipantJoined,
    ParticipantLeft,
    RoomClosed,
    RoomEvent,
    StreamAdded,
    StreamEnded,
    StreamInfo,
    StreamRemoved,
    SubscriptionClosed,
    TransportStateChanged,
)
from signaling.client_stats import StreamReport, parse_reports

PROTOCOL_VERSION = 1
MAX_ID_LENGTH = 64


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, request_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class Join:
    """``previous``: the participant id this client had on a socket it lost; the
    server ends that participant at once when it is the same person (PROTOCOL.md,
    "Reconnecting")."""

    id: str | int | None
    version: int
    token: str
    previous: str | None = None
    # A media node joining as the edge of a cascaded room (PROTOCOL.md, "Several nodes");
    # the token must be an edge token, and an edge token joins only so.
    edge: bool = False


@dataclass(frozen=True)
class Publish:
    id: str | int | None
    sdp: str


@dataclass(frozen=True)
class Unpublish:
    id: str | int | None
    stream: str


@dataclass(frozen=True)
class Subscribe:
    id: str | int | None
    stream: str


@dataclass(frozen=True)
class Answer:
    id: str | int | None
    subscription: str
    sdp: str


@dataclass(frozen=True)
class Unsubscribe:
    id: str | int | None
    subscription: str


@dataclass(frozen=True)
class Refresh:
    """A new token for the same room, subject and role: it replaces the expiry."""

    id: str | int | None
    token: str


@dataclass(frozen=True)
class Leave:
    id: str | int | None


@dataclass(frozen=True)
class Ping:
    id: str | int | None


@dataclass(frozen=True)
class Ptz:
    id: str | int | None
    command: PtzRequest


@dataclass(frozen=True)
class ClientStats:
    """The page's own reception, per subscribed stream (see client_stats.py)."""

    id: str | int | None
    reports: tuple[StreamReport, ...]


Request = (Join | Publish | Unpublish | Subscribe | Answer | Unsubscribe | Refresh | Leave | Ping
           | Ptz | ClientStats)


def _request_id(message: dict[str, Any]) -> str | int | None:
    value = message.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ProtocolError("bad-message", "'id' must be a string or an integer")
    if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
        raise ProtocolError("bad-message", f"'id' is longer than {MAX_ID_LENGTH} characters")
    return value


def _string(message: dict[str, Any], key: str, request_id: str | int | None,
            max_length: int = 256) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError("bad-message", f"'{key}' must be a non-empty string", request_id)
    if len(value) > max_length:
        raise ProtocolError("bad-message", f"'{key}' is too long", request_id)
    return value


def parse_request(raw: str) -> Request:
    """Parse one client text frame into a request, or raise ProtocolError."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError("bad-message", "the message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad-message", "the message must be a JSON object")
    request_id = _request_id(message)
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad-message", "'type' must be a string", request_id)
    sdp_limit = 65536
    if kind == "join":
        version = message.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ProtocolError("bad-message", "'version' must be an integer", request_id)
        previous = None
        if message.get("previous") is not None:
            previous = _string(message, "previous", request_id, MAX_ID_LENGTH)
        edge = message.get("edge", False)
        if not isinstance(edge, bool):
            raise ProtocolError("bad-message", "'edge' must be true or false", request_id)
        return Join(request_id, version, _string(message, "token", request_id, 4096), previous,
                    edge)
    if kind == "publish":
        return Publish(request_id, _string(message, "sdp", request_id, sdp_limit))
    if kind == "unpublish":
        return Unpublish(request_id, _string(message, "stream", request_id))
    if kind == "subscribe":
        return Subscribe(request_id, _string(message, "stream", request_id))
    if kind == "answer":
        return Answer(request_id, _string(message, "subscription", request_id),
                      _string(message, "sdp", request_id, sdp_limit))
    if kind == "unsubscribe":
        return Unsubscribe(request_id, _string(message, "subscription", request_id))
    if kind == "refresh":
        return Refresh(request_id, _string(message, "token", request_id, 4096))
    if kind == "leave":
        return Leave(request_id)
    if kind == "ping":
        return Ping(request_id)
    if kind == "ptz":
        return Ptz(request_id, _ptz_request(message, request_id))
    if kind == "client-stats":
        try:
            return ClientStats(request_id, parse_reports(message.get("streams")))
        except ValueError as exc:  # names the field, never its value
            raise ProtocolError("bad-message", str(exc), request_id) from None
    raise ProtocolError("bad-message", "unknown message type", request_id)


def _ptz_request(message: dict[str, Any], request_id: str | int | None) -> PtzRequest:
    try:
        return PtzRequest.parse(message)
    except ValueError as exc:  # the contract's message names the field, never its value
        raise ProtocolError("bad-message", str(exc), request_id) from None


# --------------------------------------------------------------------------- rendering


def participant_json(info: ParticipantInfo) -> dict[str, Any]:
    return {"id": info.id, "name": info.name, "role": info.role}


def stream_json(info: StreamInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "participant": info.participant_id,
        "tracks": [{"id": t.id, "kind": t.kind, "codec": t.codec} for t in info.tracks],
        "state": info.state,
    }


def error_json(code: str, message: str, request_id: str | int | None = None,
               details: dict[str, str] | None = None) -> dict[str, Any]:
    """An error reply; ``details``: fields beside the code (e.g. `room-full`'s `limit`)."""
    out: dict[str, Any] = {**(details or {}), "type": "error", "code": code,
                           "message": message}
    if request_id is not None:
        out["id"] = request_id
    return out


def event_json(event: RoomEvent) -> dict[str, Any]:
    if isinstance(event, AppEvent):
        return {**event.body, "type": event.kind}
    if isinstance(event, ParticipantJoined):
        return {"type": "participant-joined", "participant": participant_json(event.participant)}
    if isinstance(event, ParticipantLeft):
        return {"type": "participant-left", "participant": event.participant_id}
    if isinstance(event, StreamAdded):
        return {"type": "track-added", "stream": stream_json(event.stream)}
    if isinstance(event, StreamRemoved):
        return {"type": "track-removed", "stream": event.stream_id,
                "participant": event.participant_id}
    if isinstance(event, StreamEnded):
        return {"type": "stream-ended", "stream": event.stream_id, "reason": event.reason}
    if isinstance(event, TransportStateChanged):
        return {"type": "connection-state", "participant": event.participant_id,
                "transport": event.transport_id, "direction": event.direction,
                "state": event.state}
    if isinstance(event, SubscriptionClosed):
        return {"type": "subscription-closed", "subscription": event.subscription_id,
                "stream": event.stream_id, "reason": event.reason}
    if isinstance(event, RoomClosed):
        return {"type": "room-closed", "reason": event.reason}
    raise TypeError(f"unknown event {type(event).__name__}")
