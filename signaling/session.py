"""One signalling WebSocket: join with a token, then publish/subscribe requests and events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from contracts.roles import EDGE, PTZ, PUBLISH, SUBSCRIBE
from mediaserver import MediaServer, MediaServerError, Participant, Room, RoomPlacement, Seat
from mediaserver.errors import DirectoryUnavailableError
from mediaserver.events import RoomClosed, RoomEvent
from signaling.app_keys import SignalingConfig
from signaling.cascade import EdgeRooms
from signaling.client_stats import ClientStatsBook
from signaling.messages import (
    PROTOCOL_VERSION,
    Answer,
    ClientStats,
    Join,
    Leave,
    Ping,
    ProtocolError,
    Ptz,
    Publish,
    Refresh,
    Request,
    Subscribe,
    Unpublish,
    Unsubscribe,
    error_json,
    event_json,
    parse_request,
    participant_json,
    stream_json,
)
from signaling.quotas import QuotaLimits, Quotas
from signaling.rate_limit import TokenBucket
from signaling.services import Caller, NoRoomServices, RoomServices, ServiceError
from signaling.tokens import ALL_ROOMS, Grant, TokenAuthority, TokenError
from signaling.turn import ice_servers_for

logger = logging.getLogger(__name__)

CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
# The participant joined again on another socket (`join.previous`).
CLOSE_REPLACED = 4001
# An expiry timer is re-armed at most this far ahead; when it fires early it checks again.
MAX_TIMER_DELAY = 86400.0


class SignalingSession:
    """The state machine of one client connection (not joined -> joined -> closed).

    A ``RoomMember`` of the room it joined: the room's events go to the client.
    """

    service = False  # a person: the room stays open while the session is in it

    def __init__(self, ws: web.WebSocketResponse, media: MediaServer,
                 authority: TokenAuthority, config: SignalingConfig,
                 services: RoomServices | None = None, quotas: Quotas | None = None,
                 client_stats: ClientStatsBook | None = None,
                 edges: EdgeRooms | None = None) -> None:
        self.ws = ws
        # Relayed rooms for viewers of rooms living on other nodes (None: redirect them).
        self.edges = edges
        self.media = media
        self.services: RoomServices = services or NoRoomServices()
        self.authority = authority
        self.config = config
        self.grant: Grant | None = None
        self.room: Room | None = None
        self.participant: Participant | None = None
        self._outgoing: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(config.outgoing_queue)
        self._bucket = TokenBucket(config.messages_per_second, config.message_burst)
        self._loop = asyncio.get_running_loop()
        self._log_prefix = "-"
        self._left = False
        self._ptz_tasks: set[asyncio.Task[None]] = set()
        # Subscribe requests in flight: they may wait for a set-up slot of the node, and
        # this socket keeps answering (pings, answers) meanwhile.
        self._subscribe_tasks: set[asyncio.Task[None]] = set()
        self.quotas = quotas or Quotas(QuotaLimits(0, 0, 0))
        self._expiry: asyncio.TimerHandle | None = None
        self._muted = False  # while joining: room events are in the `joined` reply
        # Where this page's `client-stats` go (the app's book, read by /metrics).
        self.client_stats = client_stats if client_stats is not None else ClientStatsBook()

    def peer_connections(self) -> int:
        """Publications and subscriptions of this socket (one peer connection each)."""
        participant, room = self.participant, self.room
        if participant is None or room is None:
            return 0
        return (len(participant.publications) + len(participant.subscriptions)
                + room.queued_count(participant))

    # ----------------------------------------------------------------- I/O loop

    async def run(self) -> None:
        writer = self._loop.create_task(self._write_loop())
        join_timer = self._loop.call_later(self.config.join_timeout, self._join_timed_out)
        try:
            async for message in self.ws:
                if message.type == WSMsgType.TEXT:
                    await self._handle_text(message.data)
                    if self.participant is not None:
                        join_timer.cancel()
                elif message.type == WSMsgType.BINARY:
                    self.send(error_json("bad-message", "binary messages are not accepted"))
                elif message.type == WSMsgType.ERROR:
                    logger.info("[%s] websocket error: %s", self._log_prefix,
                                type(self.ws.exception()).__name__)
                if self.ws.closed or self._left:
                    break
        finally:
            join_timer.cancel()
            self._leave()
            self._end_grant()
            # Let the writer flush what is queued (e.g. the reply to `leave`), briefly.
            with contextlib.suppress(asyncio.QueueFull):
                self._outgoing.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(writer, 2.0)
            writer.cancel()

    async def _write_loop(self) -> None:
        while True:
            item = await self._outgoing.get()
            if item is None or self.ws.closed:
                return
            await self.ws.send_str(json.dumps(item, separators=(",", ":")))

    def send(self, message: dict[str, Any]) -> None:
        try:
            self._outgoing.put_nowait(message)
        except asyncio.QueueFull:
            # A client that does not read its events is dropped, not buffered forever.
            logger.warning("[%s] outgoing queue full; closing", self._log_prefix)
            self._loop.create_task(self.ws.close(code=CLOSE_POLICY, message=b"too slow"))

    def _join_timed_out(self) -> None:
        if self.participant is None and not self.ws.closed:
            self.send(error_json("join-timeout", "no join message was received in time"))
            self._loop.create_task(self._close_after_flush(CLOSE_POLICY, b"join timeout"))

    def _refuse_and_close(self, code: str, message: str, request_id: str | int | None,
                          reason: bytes) -> None:
        self.send(error_json(code, message, request_id))
        self._loop.create_task(self._close_after_flush(CLOSE_POLICY, reason))

    # ----------------------------------------------------------------- token expiry

    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        assert self.grant is not None
        delay = min(MAX_TIMER_DELAY, max(0.0, self.grant.expires_at - time.time()))
        self._expiry = self._loop.call_later(delay, self._check_expiry)

    def _expired(self) -> bool:
        return self.grant is not None and self.grant.expires_at <= time.time()

    def _check_expiry(self) -> None:
        if self.grant is None or self.ws.closed:
            return
        if not self._expired():
            self._arm_expiry()
            return
        self._token_expired()

    def _token_expired(self) -> None:
        """The token's `exp` passed: leave the room, tell the client, close the socket."""
        logger.info("[%s] token expired; closing", self._log_prefix)
        self._leave()
        self._end_grant()
        self._left = True
        self.send({"type": "token-expired", "message": "the token has expired; "
                   "join again with a new token"})
        self._loop.create_task(self._close_after_flush(CLOSE_POLICY, b"token expired"))

    def _end_grant(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.grant is not None:
            self.quotas.release_token(self.grant.subject, self)
            self.grant = None

    async def _close_after_flush(self, code: int, reason: bytes) -> None:
        # Give the writer up to a second to send what is queued (the error or event saying why).
        for _ in range(20):
            if self._outgoing.empty():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)
        await self.ws.close(code=code, message=reason)

    # ----------------------------------------------------------------- dispatch

    async def _handle_text(self, raw: str) -> None:
        if len(raw) > self.config.max_message_bytes:
            self.send(error_json("message-too-large",
                                 f"messages are limited to {self.config.max_message_bytes} bytes"))
            return
        try:
            request = parse_request(raw)
            if not self._bucket.allow(self._loop.time()):
                raise ProtocolError("rate-limited", "too many messages; slow down", request.id)
        except ProtocolError as exc:
            self.send(error_json(exc.code, exc.message, exc.request_id))
            return
        except Exception:
            logger.exception("[%s] internal error reading a request", self._log_prefix)
            self.send(error_json("internal-error", "the server could not handle this request"))
            return
        if self._expired() and not isinstance(request, Refresh):
            self._token_expired()
            return
        if isinstance(request, Subscribe):
            # Never awaited inline: it may wait in the node's set-up queue.
            task = self._loop.create_task(self._handle(request))
            self._subscribe_tasks.add(task)
            task.add_done_callback(self._subscribe_tasks.discard)
            return
        await self._handle(request)

    async def _handle(self, request: Request) -> None:
        """Dispatch one request; every failure becomes an error reply to it."""
        request_id = request.id
        try:
            await self._dispatch(request)
        except ProtocolError as exc:
            self.send(error_json(exc.code, exc.message, exc.request_id or request_id))
        except TokenError as exc:
            self.send(error_json("unauthorized", exc.message, request_id))
        except MediaServerError as exc:
            self.send(error_json(exc.code, str(exc), request_id, exc.details()))
        except ServiceError as exc:
            self.send(error_json(exc.code, exc.message, request_id))
        except Exception:
            logger.exception("[%s] internal error handling a request", self._log_prefix)
            self.send(error_json("internal-error", "the server could not handle this request",
                                 request_id))

    async def _dispatch(self, request: Request) -> None:
        if isinstance(request, Ping):
            self.send({"type": "pong", "id": request.id})
            return
        if isinstance(request, Join):
            await self._join(request)
            return
        participant, room = self._joined(request.id)
        if isinstance(request, Publish):
            self._require(PUBLISH, request.id)
            self._require_peer_connection(request.id)
            publication, answer = await room.publish(participant, request.sdp)
            self.send({"type": "published", "id": request.id,
                       "stream": stream_json(publication.info()), "sdp": answer})
        elif isinstance(request, Unpublish):
            room.unpublish(participant, request.stream)
            self.send({"type": "ok", "id": request.id})
        elif isinstance(request, Subscribe):
            self._require(SUBSCRIBE, request.id)
            self._require_peer_connection(request.id)
            subscription, offer = await room.subscribe(participant, request.stream)
            self.send({"type": "offer", "id": request.id, "subscription": subscription.id,
                       "stream": request.stream, "sdp": offer})
        elif isinstance(request, Answer):
            await room.answer(participant, request.subscription, request.sdp)
            self.send({"type": "answered", "id": request.id,
                       "subscription": request.subscription})
        elif isinstance(request, Unsubscribe):
            room.unsubscribe(participant, request.subscription)
            self.send({"type": "ok", "id": request.id})
        elif isinstance(request, Ptz):
            self._require(PTZ, request.id)
            assert self.grant is not None
            caller = Caller(room.name, participant.id, participant.name, participant.role,
                            self.grant.subject)
            # Never awaited inline: this socket keeps answering (a stop, a ping) while the
            # camera works; the reply goes out when the camera has acknowledged.
            task = self._loop.create_task(self._ptz(caller, request))
            self._ptz_tasks.add(task)
            task.add_done_callback(self._ptz_tasks.discard)
        elif isinstance(request, Refresh):
            self._refresh(request)
        elif isinstance(request, ClientStats):
            self._client_stats(participant, room, request)
        elif isinstance(request, Leave):
            self._leave()
            self.send({"type": "left", "id": request.id})
            self._left = True

    async def _ptz(self, caller: Caller, request: Ptz) -> None:
        try:
            await self.services.ptz(caller, request.command)
        except ServiceError as exc:
            self.send(error_json(exc.code, exc.message, request.id))
        except Exception:
            logger.exception("[%s] internal error handling a PTZ request", self._log_prefix)
            self.send(error_json("internal-error", "the server could not handle this request",
                                 request.id))
        else:
            self.send({"type": "ptz-ok", "id": request.id})

    def _joined(self, request_id: str | int | None) -> tuple[Participant, Room]:
        if self.participant is None or self.room is None:
            raise ProtocolError("not-joined", "send a join message first", request_id)
        return self.participant, self.room

    def _require(self, grant: str, request_id: str | int | None) -> None:
        if self.grant is None or not self.grant.allows(grant):
            raise ProtocolError("forbidden", f"this token does not grant '{grant}'", request_id)

    def _require_peer_connection(self, request_id: str | int | None) -> None:
        assert self.grant is not None
        if self.service:
            # An edge node holds one peer connection per stream of the room, whatever
            # their number (its subscriptions are still bounded per participant).
            return
        if not self.quotas.may_add_peer_connection(self.grant.subject):
            limit = self.quotas.limits.peer_connections_per_token
            raise ProtocolError("too-many-peer-connections",
                                f"this token already holds {limit} peer connections", request_id)

    def _client_stats(self, participant: Participant, room: Room, request: ClientStats) -> None:
        """Keep the page's reception numbers; every stream must be one it receives."""
        live = {subscription.stream_id for subscription in participant.subscriptions.values()}
        if any(report.stream not in live for report in request.reports):
            raise ProtocolError("not-found", "a report names a stream this participant does "
                                "not receive", request.id)
        self.client_stats.update(room.name, participant.id, request.reports, live)
        self.send({"type": "ok", "id": request.id})

    def _refresh(self, request: Refresh) -> None:
        """Replace the token's expiry with a new token's for the same room and identity."""
        assert self.grant is not None
        grant = self.authority.verify(request.token)
        old = self.grant
        if (grant.room, grant.subject, grant.role) != (old.room, old.subject, old.role):
            raise ProtocolError("unauthorized", "the new token is for another room or identity",
                                request.id)
        self.grant = grant
        self._arm_expiry()
        self.send({"type": "refreshed", "id": request.id, "expiresAt": grant.expires_at})

    async def _join(self, request: Join) -> None:
        if self.participant is not None:
            raise ProtocolError("already-joined", "this connection has already joined",
                                request.id)
        if request.version != PROTOCOL_VERSION:
            raise ProtocolError("unsupported-version",
                                f"this server speaks protocol version {PROTOCOL_VERSION}",
                                request.id)
        grant = self.authority.verify(request.token)
        if grant.room == ALL_ROOMS or not grant.grants & {PUBLISH, SUBSCRIBE}:
            raise ProtocolError("forbidden", "this token does not admit to a room", request.id)
        if request.edge != grant.allows(EDGE):
            raise ProtocolError("forbidden", "an edge join needs an edge token, and an edge "
                                "token joins only as an edge", request.id)
        open_room = await self._room_to_join(grant, request)
        if open_room is None:
            return
        # A socket whose room closed under it may join again: drop its previous claim.
        self._end_grant()
        if not self.quotas.claim_token(grant.subject, self):
            limit = self.quotas.limits.sockets_per_token
            self._refuse_and_close("too-many-connections",
                                   f"this token already has {limit} open connections",
                                   request.id, b"too many connections")
            return
        try:
            room = open_room()
            self._muted = True
            old = self._replaceable(grant, request.previous)
            seat = Seat.PUBLISHER if grant.allows(PUBLISH) else Seat.VIEWER
            # Another node relaying the room: a service, it takes no seat.
            self.service = request.edge
            participant = room.join(grant.name, grant.role, self, seat=seat,
                                    replacing=request.previous if old is not None else None)
            # In before the previous one leaves: the room never empties (nor closes, nor
            # ends its recording) on a rejoin. What the old one's leave announces is
            # already in the `joined` below, so this session does not hear it.
            if old is not None:
                old.replaced()
        except BaseException:
            self.quotas.release_token(grant.subject, self)
            raise
        finally:
            self._muted = False
        self.grant, self.room, self.participant = grant, room, participant
        self._arm_expiry()
        self._log_prefix = f"{room.name}/{participant.id}"
        others = [participant_json(p.info()) for p in room.visible_to(participant)]
        self.send({
            "type": "joined", "id": request.id, "version": PROTOCOL_VERSION,
            "room": room.name, "participant": participant_json(participant.info()),
            "grants": sorted(grant.grants), "participants": others,
            "streams": [stream_json(s) for s in room.streams()],
            "iceServers": ice_servers_for(self.config.ice_servers, self.config.turn,
                                          participant.id, time.time()),
            "iceTransportPolicy": self.config.ice_transport_policy,
            "simulcast": self.media.config.simulcast,
            "expiresAt": grant.expires_at,
            **self.services.room_state(room.name),
        })

    async def _room_to_join(self, grant: Grant, request: Join
                            ) -> Callable[[], Room] | None:
        """What opens the room this join enters on this node (called once the socket's
        quota is claimed): its own room, or (a viewer of a room living on another node,
        cascade on) this node's relayed room of it; None when the join was answered with
        a redirect instead."""
        placement = await self.media.directory.placement(grant.room)
        if placement.local and request.edge:
            # An edge relays an open room; it never opens one (nor relays a relay).
            room = self.media.directory.local(grant.room)
            if room is None or room.origin is not None:
                raise ProtocolError("not-found", "the room is not open on this node",
                                    request.id)
            return lambda: room
        if placement.local:
            return lambda: self.media.room(grant.room)
        if request.edge:  # an edge joins the origin itself, never a node that relays it
            raise ProtocolError("not-found", "the room does not live on this node",
                                request.id)
        if self.edges is not None and not grant.allows(PUBLISH):
            relayed = await self.edges.relayed_room(placement)
            if relayed is not None:
                return lambda: relayed
        self._redirect(placement, request.id)
        return None

    def _redirect(self, placement: RoomPlacement, request_id: str | int | None) -> None:
        """The room lives on another node: say where, then close this socket (the
        client joins there; PROTOCOL.md, "Several nodes")."""
        if not placement.url:
            raise DirectoryUnavailableError("the room's node has no address; try again")
        logger.info("[%s] join redirected to node %s", placement.name, placement.node_id)
        reply: dict[str, Any] = {"type": "redirect", "room": placement.name,
                                 "url": placement.url}
        if request_id is not None:
            reply["id"] = request_id
        self.send(reply)
        self._left = True

    def _replaceable(self, grant: Grant, previous: str | None) -> SignalingSession | None:
        """The session of ``previous``, this person's participant on a socket they lost,
        which the join ends at once (its seat is free for the rejoin).

        Only a participant of the same room and subject is ended (anything else is
        ignored: it may be gone already); its streams end as on any leave, so the new
        publication is the only one the viewers see.
        """
        if previous is None:
            return None
        room = self.media.directory.local(grant.room)
        old = room.participants.get(previous) if room is not None else None
        member = old.member if old is not None else None
        if (not isinstance(member, SignalingSession) or member is self or member.grant is None
                or member.grant.subject != grant.subject):
            return None
        return member

    def replaced(self) -> None:
        """This socket's person joined again on a new socket: leave, and close this one."""
        logger.info("[%s] replaced by a new connection; closing", self._log_prefix)
        self._leave()
        self._end_grant()
        self._left = True
        if not self.ws.closed:
            self._loop.create_task(self.ws.close(code=CLOSE_REPLACED, message=b"replaced"))

    def on_room_event(self, event: RoomEvent) -> None:
        if self._muted:
            return
        self.send(event_json(event))
        if isinstance(event, RoomClosed):
            if self.participant is not None and self.room is not None:
                self.client_stats.forget(self.room.name, self.participant.id)
            self.participant = None
            self.room = None

    def _leave(self) -> None:
        participant, room = self.participant, self.room
        self.participant = None
        self.room = None
        if participant is not None and room is not None:
            self.client_stats.forget(room.name, participant.id)
            # Devices first: a camera the participant was steering stops before anything else.
            self.services.participant_left(room.name, participant.id)
            for task in [*self._ptz_tasks, *self._subscribe_tasks]:
                task.cancel()  # their replies have nowhere to go; what was sent still runs
            room.leave(participant)  # the room closes itself when nobody but services is left
