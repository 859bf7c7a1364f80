"""WHIP ingest (RFC 9725) and WHEP playback over the same rooms and room tokens.

``POST /whip/{room}`` publishes the offer's tracks into the room, ``POST /whep/{room}``
plays one of the room's streams to the offerer; each creates a session resource
(``/whip/session/{id}``, ``/whep/session/{id}``) that takes ``PATCH`` (trickled
candidates) and ``DELETE`` (leave). The wire rules are in signaling/WHIP-WHEP.md.

A session is a ``RoomMember`` with one peer connection, like a WebSocket session with
one publication or subscription: it counts in the token's and the address's quotas
and in the room's limits, and it ends (leaves the room) when its connection fails or
closes, when its token expires, on DELETE, or when the room closes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiohttp import web

from contracts.roles import PUBLISH, SUBSCRIBE
from mediaserver import MediaServer, Participant, Room, Seat
from mediaserver.errors import (
    BadSdpError,
    ClosedError,
    LimitError,
    MediaServerError,
    NegotiationError,
    NotFoundError,
)
from mediaserver.events import RoomClosed, RoomEvent, StreamEnded, SubscriptionClosed
from mediaserver.sdp_check import MAX_SDP_BYTES, candidate_ok
from mediaserver.transport_factory import MediaTransport
from signaling.app_keys import AUTHORITY, MEDIA_SERVER, QUOTAS, SIGNALING_CONFIG
from signaling.quotas import Quotas
from signaling.sdpfrag import SdpFragment, offer_ufrag
from signaling.tokens import ALL_ROOMS, Grant, TokenAuthority, TokenError
from signaling.turn import ice_servers_for

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
MAX_FRAGMENT_BYTES = 16384
# An expiry timer is re-armed at most this far ahead; when it fires early it checks again.
MAX_TIMER_DELAY = 86400.0

# The ICE servers handed to one client, as the WebSocket `joined.iceServers` entries
# ({"urls": [...], "username"?, "credential"?}). The hook for time-limited TURN
# credentials: the app may set WHIP_ICE_SERVERS to a function minting them per grant.
IceServerSource = Callable[[Grant, float], Sequence[Mapping[str, object]]]


class HttpError(Exception):
    """A refusal: its status and one line of text for the client (no patient data)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# ------------------------------------------------------------------ pure helpers

def _quoted(value: str) -> str:
    if not value.isprintable():
        raise ValueError("a Link parameter holds control characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def link_headers(servers: Sequence[Mapping[str, object]]) -> list[str]:
    """One ``Link: <url>; rel="ice-server"`` value per ICE server URL (RFC 9725 4.6),
    with ``username``/``credential`` for TURN URLs. Entries that cannot be written
    safely (a URL with ``<``, ``>`` or spaces, control characters) are left out."""
    out = []
    for server in servers:
        urls = server.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list):
            continue
        username, credential = server.get("username"), server.get("credential")
        for url in urls:
            if not isinstance(url, str) or not url.isprintable() or any(c in url for c in "<> "):
                continue
            value = f'<{url}>; rel="ice-server"'
            try:
                if url.startswith(("turn:", "turns:")) and isinstance(username, str) \
                        and isinstance(credential, str):
                    value += (f"; username={_quoted(username)}; "
                              f"credential={_quoted(credential)}; credential-type=\"password\"")
            except ValueError:
                continue
            out.append(value)
    return out


def bearer_token(header: str | None) -> str:
    if not header:
        return ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _status_of(exc: MediaServerError) -> int:
    if isinstance(exc, NegotiationError):  # BadSdpError too
        return 400
    if isinstance(exc, LimitError):
        return 429
    if isinstance(exc, NotFoundError):
        return 409
    return 503  # ClosedError (the room or the server is closing), DirectoryUnavailableError


# ------------------------------------------------------------------ sessions

class HttpSession:
    """One WHIP or WHEP session: a room member with one peer connection."""

    service = False

    def __init__(self, kind: str, grant: Grant, address: str, remote_ufrag: str | None,
                 on_end: Callable[[HttpSession], None]) -> None:
        self.kind = kind  # "whip" or "whep"
        self.id = secrets.token_urlsafe(18)
        self.etag = f'"{secrets.token_hex(8)}"'
        self.grant = grant
        self.address = address
        self.remote_ufrag = remote_ufrag
        self.room: Room | None = None
        self.participant: Participant | None = None
        self.transport_id: str | None = None
        self.ended = False
        self._on_end = on_end
        self._loop = asyncio.get_running_loop()
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def location(self) -> str:
        return f"/{self.kind}/session/{self.id}"

    def peer_connections(self) -> int:
        return 0 if self.transport_id is None or self.ended else 1

    def on_room_event(self, event: RoomEvent) -> None:
        # Called from inside the room's own bookkeeping: leave it on the next turn.
        if isinstance(event, RoomClosed):
            self.participant = None
            self._loop.call_soon(self.end, "room closed")
        elif isinstance(event, StreamEnded) and event.stream_id == self.transport_id:
            self._loop.call_soon(self.end, f"stream ended ({event.reason})")
        elif (isinstance(event, SubscriptionClosed)
              and event.subscription_id == self.transport_id):
            self._loop.call_soon(self.end, f"subscription closed ({event.reason})")

    def arm_expiry(self, now: float) -> None:
        delay = min(MAX_TIMER_DELAY, max(0.0, self.grant.expires_at - now))
        self._expiry = self._loop.call_later(delay, self._check_expiry)

    def _check_expiry(self) -> None:
        if self.ended:
            return
        if self.grant.expires_at > time.time():
            self.arm_expiry(time.time())
        else:
            self.end("token expired")

    def transport(self) -> MediaTransport | None:
        participant = self.participant
        if participant is None or self.transport_id is None:
            return None
        publication = participant.publications.get(self.transport_id)
        if publication is not None:
            return publication
        return participant.subscriptions.get(self.transport_id)

    def end(self, reason: str = "deleted") -> None:
        """Leave the room (its streams end, the others are told) and forget the session.
        Idempotent."""
        if self.ended:
            return
        self.ended = True
        if self._expiry is not None:
            self._expiry.cancel()
        participant, room = self.participant, self.room
        self.participant = None
        if participant is not None and room is not None:
            room.leave(participant)
        logger.info("[%s/%s] %s session ended: %s", self.grant.room, self.id[:8], self.kind,
                    reason)
        self._on_end(self)


class HttpSessions:
    """The live WHIP/WHEP sessions of this server, and how they start."""

    def __init__(self, media: MediaServer, authority: TokenAuthority, quotas: Quotas,
                 ice_servers: IceServerSource) -> None:
        self.media = media
        self.authority = authority
        self.quotas = quotas
        self.ice_servers = ice_servers
        self.sessions: dict[str, HttpSession] = {}

    def authorize(self, header: str | None, room: str | None, grant_name: str) -> Grant:
        try:
            grant = self.authority.verify(bearer_token(header), now=time.time())
        except TokenError as exc:
            raise HttpError(401, "unauthorized", exc.message) from None
        if room is not None and (grant.room == ALL_ROOMS or grant.room != room):
            raise HttpError(403, "forbidden", "this token is for another room")
        if not grant.allows(grant_name):
            raise HttpError(403, "forbidden", f"this token does not grant '{grant_name}'")
        return grant

    def find(self, kind: str, session_id: str, grant: Grant) -> HttpSession:
        session = self.sessions.get(session_id)
        if (session is None or session.kind != kind or session.ended
                or session.grant.subject != grant.subject or session.grant.room != grant.room):
            raise HttpError(404, "not-found", "no such session")
        return session

    async def start(self, kind: str, grant: Grant, address: str, offer: str,
                    stream_id: str | None = None) -> tuple[HttpSession, str]:
        """Join the room and publish (WHIP) or play (WHEP); returns the session and the
        answer SDP. Nothing is left behind when it fails."""
        session = HttpSession(kind, grant, address, offer_ufrag(offer), self._forget)
        quotas = self.quotas
        if not quotas.may_add_peer_connection(grant.subject):
            limit = quotas.limits.peer_connections_per_token
            raise HttpError(429, "too-many-peer-connections",
                            f"this token already holds {limit} peer connections")
        if not quotas.open_socket(address):
            limit = quotas.limits.sockets_per_address
            raise HttpError(429, "too-many-connections",
                            f"at most {limit} connections from one address")
        if not quotas.claim_token(grant.subject, session):
            quotas.close_socket(address)
            limit = quotas.limits.sockets_per_token
            raise HttpError(429, "too-many-connections",
                            f"this token already has {limit} open connections")
        self.sessions[session.id] = session
        try:
            room = self.media.room(grant.room)
            session.room = room
            # A WHIP session publishes, a WHEP session only receives: that is its seat.
            seat = Seat.PUBLISHER if kind == "whip" else Seat.VIEWER
            session.participant = room.join(grant.name, grant.role, session, seat=seat)
            if kind == "whip":
                publication, answer = await room.publish(session.participant, offer)
                session.transport_id = publication.id
            else:
                stream = stream_id or _first_stream(room, session.participant)
                subscription, answer = await room.subscribe_offer(session.participant, stream,
                                                                  offer)
                session.transport_id = subscription.id
        except BaseException:
            session.end("could not start")
            raise
        if session.ended:
            raise HttpError(503, "closed", "the session ended during negotiation")
        session.arm_expiry(time.time())
        logger.info("[%s/%s] %s session started (%s)", grant.room, session.id[:8], kind,
                    session.transport_id)
        return session, answer

    def _forget(self, session: HttpSession) -> None:
        if self.sessions.pop(session.id, None) is not None:
            self.quotas.release_token(session.grant.subject, session)
            self.quotas.close_socket(session.address)

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            session.end("server shutdown")


def _first_stream(room: Room, participant: Participant) -> str:
    """The stream a WHEP player gets without ``?stream=``: the room's oldest with video."""
    streams = [s for s in room.streams() if s.participant_id != participant.id]
    with_video = [s for s in streams if any(t.kind == "video" for t in s.tracks)]
    chosen = (with_video or streams)[:1]
    if not chosen:
        raise HttpError(409, "no-stream", "nothing is being published in this room yet")
    return chosen[0].id


# ------------------------------------------------------------------ HTTP shell

SESSIONS: web.AppKey[HttpSessions] = web.AppKey("whip_sessions", HttpSessions)
WHIP_ICE_SERVERS: web.AppKey[IceServerSource] = web.AppKey("whip_ice_servers")


def _error(exc: HttpError) -> web.Response:
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="huizhen", error="invalid_token"'
    return web.Response(status=exc.status, text=f"{exc.code}: {exc.message}\n",
                        headers=headers)


async def _body(request: web.Request, content_type: str, limit: int) -> str:
    if request.content_type != content_type:
        raise HttpError(415, "unsupported-media-type", f"the body must be {content_type}")
    if request.content_length is not None and request.content_length > limit:
        raise HttpError(413, "too-large", f"the body is larger than {limit} bytes")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise HttpError(413, "too-large", f"the body is larger than {limit} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "bad-sdp", "the body is not UTF-8 text") from None


def _handler(kind: str, grant_name: str) -> Handler:
    async def create(request: web.Request) -> web.StreamResponse:
        sessions = request.app[SESSIONS]
        try:
            grant = sessions.authorize(request.headers.get("Authorization"),
                                       request.match_info["room"], grant_name)
            placement = await sessions.media.directory.placement(grant.room)
            if not placement.local:  # several nodes: the room lives on another one
                return web.Response(status=307,
                                    headers={"Location": placement.url + request.path_qs})
            offer = await _body(request, SDP, MAX_SDP_BYTES)
            stream = request.query.get("stream") if kind == "whep" else None
            session, answer = await sessions.start(kind, grant, request.remote or "-", offer,
                                                   stream)
        except HttpError as exc:
            return _error(exc)
        except BadSdpError as exc:
            return _error(HttpError(400, exc.code, str(exc)))
        except MediaServerError as exc:
            return _error(HttpError(_status_of(exc), exc.code, str(exc)))
        response = web.Response(status=201, text=answer, content_type=SDP)
        response.headers["Location"] = session.location
        response.headers["ETag"] = session.etag
        response.headers["Accept-Patch"] = SDPFRAG
        for link in link_headers(sessions.ice_servers(grant, time.time())):
            response.headers.add("Link", link)
        return response

    return create


def _session_handlers(kind: str, grant_name: str) -> tuple[Handler, Handler]:
    async def patch(request: web.Request) -> web.StreamResponse:
        sessions = request.app[SESSIONS]
        try:
            grant = sessions.authorize(request.headers.get("Authorization"), None, grant_name)
            session = sessions.find(kind, request.match_info["id"], grant)
            text = await _body(request, SDPFRAG, MAX_FRAGMENT_BYTES)
            if_match = request.headers.get("If-Match")
            if if_match is not None and if_match not in ("*", session.etag):
                raise HttpError(412, "precondition-failed",
                                "If-Match does not name this session's ICE session")
            try:
                fragment = SdpFragment.parse(text)
            except ValueError as exc:
                raise HttpError(400, "bad-sdpfrag", str(exc)) from None
            if if_match == "*" or (fragment.ufrag is not None
                                   and fragment.ufrag != session.remote_ufrag):
                raise HttpError(422, "ice-restart-unsupported",
                                "this server cannot restart ICE; the session goes on with its "
                                "current ICE session (DELETE it and POST a new offer instead)")
            await _add_candidates(session, fragment)
        except HttpError as exc:
            return _error(exc)
        return web.Response(status=204)

    async def delete(request: web.Request) -> web.StreamResponse:
        sessions = request.app[SESSIONS]
        try:
            grant = sessions.authorize(request.headers.get("Authorization"), None, grant_name)
            session = sessions.find(kind, request.match_info["id"], grant)
        except HttpError as exc:
            return _error(exc)
        session.end("deleted")
        return web.Response(status=200)

    return patch, delete


async def _add_candidates(session: HttpSession, fragment: SdpFragment) -> None:
    """Hand trickled candidates to the connection; those it cannot use are dropped
    silently, as RFC 9725 4.3.2 asks."""
    transport = session.transport()
    if transport is None:
        return
    for candidate in fragment.candidates:
        if not candidate_ok(candidate.value):
            continue
        try:
            await transport.add_remote_candidate(candidate.value, candidate.mid)
        except (ValueError, ClosedError):
            continue


def setup_whip_routes(app: web.Application) -> None:
    """Register the WHIP and WHEP endpoints (after ``setup_routes``, which sets QUOTAS)."""
    config = app[SIGNALING_CONFIG]
    if WHIP_ICE_SERVERS not in app:
        # TURN credentials minted for the token's subject (":" separates the expiry in
        # the TURN REST username, so it cannot appear in the user part).
        app[WHIP_ICE_SERVERS] = lambda grant, now: ice_servers_for(
            config.ice_servers, config.turn, grant.subject.replace(":", "_") or "whip", now)
    app[SESSIONS] = HttpSessions(app[MEDIA_SERVER], app[AUTHORITY], app[QUOTAS],
                                 app[WHIP_ICE_SERVERS])

    async def end_sessions(app: web.Application) -> None:
        app[SESSIONS].close_all()

    app.on_shutdown.append(end_sessions)
    for kind, grant_name in (("whip", PUBLISH), ("whep", SUBSCRIBE)):
        patch, delete = _session_handlers(kind, grant_name)
        app.router.add_post(f"/{kind}/{{room}}", _handler(kind, grant_name))
        app.router.add_patch(f"/{kind}/session/{{id}}", patch)
        app.router.add_delete(f"/{kind}/session/{{id}}", delete)
