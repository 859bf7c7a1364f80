"""Cascaded rooms: this node relays rooms that live on other nodes to its own viewers.

A viewer (a token that may not publish) who joins here a room whose origin is another
live node is served here: the ``EdgeLink`` of that room joins the room on its origin as
an *edge* (a service participant, with a token this node mints with the shared secret,
over the origin's signalling socket), subscribes once to each stream there, and answers
each of the origin's offers with a publication of this node's *relayed room*
(``Room.relay``): the stream keeps its id, and the RTP the edge receives over that peer
connection (DTLS-SRTP) goes into the relayed room's producers without being decoded, as
a publisher's would. This node's viewers subscribe to those streams as to any.

Feedback goes back over the same connection: a viewer's keyframe request passes this
node's producer throttle, and the one that passes is a PLI to the origin, whose consumer
of the edge hands it to the origin's producer throttle; losses on the hop are NACKed to
the origin by this node's receiver, and this node answers its viewers' NACKs from its own
buffer.

The publishers of the origin's room (and its recorder) stand in the relayed room as
service participants with their ids, names and roles, so that pages see the same room.
The relayed room opens with the first viewer here and closes (after the usual grace)
when the last one leaves; the edge then leaves the origin's room. When the origin's room
closes, or its socket drops (the origin died), the relayed room closes too and its viewers
are told (`room-closed`), so that their pages join again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import aiohttp

from contracts.payload import APP_EVENTS
from contracts.roles import EDGE, PUBLISH, RECORDER_ROLE, ROLE_GRANTS
from mediaserver import MediaServer, MediaServerError, Participant, Room, RoomPlacement
from mediaserver.errors import DirectoryUnavailableError
from mediaserver.events import RoomClosed, RoomEvent, StreamEnded
from signaling.client import SignalingClient, SignalingError, socket_url
from signaling.messages import PROTOCOL_VERSION
from signaling.tokens import TokenAuthority

logger = logging.getLogger(__name__)

# How long a viewer's join waits for the origin's room to be relayed here; after that
# the viewer is redirected to the origin instead.
READY_TIMEOUT = 15.0
# The edge token's lifetime, and how long before its end it is replaced (`refresh`).
TOKEN_TTL = 6 * 3600
REFRESH_BEFORE = 3600.0
# The origin room's application events (vitals, alarms, the camera's state, the
# recording's) that the relayed room passes on to its viewers as they are.
RELAYED_EVENTS = frozenset({*(payload.KIND for payload in APP_EVENTS), "recording-state"})
# How many times one stream's hop is set up again after its connection failed.
HOP_RETRIES = 5
# What the relayed room itself says when a hop's connection ended (a stand-in is told).
HOP_FAILED = "hop-failed"


def stands_in(role: str) -> bool:
    """Whether a participant of the origin's room stands in the relayed room: the people
    who may publish, and the recorder (viewers see them; not other viewers, not edges)."""
    return role == RECORDER_ROLE or PUBLISH in ROLE_GRANTS.get(role, frozenset())


class _StandIn:
    """The member behind the relayed room's stand-ins: a service (it keeps the relayed
    room open on its own no more than the recorder does); the room's close ends the link."""

    service = True

    def __init__(self, link: EdgeLink) -> None:
        self._link = link

    def on_room_event(self, event: RoomEvent) -> None:
        if isinstance(event, RoomClosed):
            self._link.close(close_room=False)  # it is closing
        elif isinstance(event, StreamEnded) and event.reason in ("failed", "closed"):
            self._link.hop_failed(event.stream_id)


class EdgeLink:
    """One relayed room: the edge's socket to the origin and the room it feeds here."""

    def __init__(self, media: MediaServer, authority: TokenAuthority,
                 placement: RoomPlacement, on_closed: Any) -> None:
        self.media = media
        self.authority = authority
        self.name = placement.name
        self.origin = placement.node_id
        self.client = SignalingClient(socket_url(placement.url))
        self.room: Room | None = None
        self.closed = False
        # Stream id -> the edge's subscription id on the origin.
        self.subscriptions: dict[str, str] = {}
        self._member = _StandIn(self)
        # One subject per link: the origin's per-token socket quota counts each apart.
        self._subject = f"edge-{media.node_id}-{secrets.token_hex(4)}"
        # The origin's socket could not be opened (the node is down or unreachable).
        self.unreachable = False
        self._known: dict[str, dict[str, Any]] = {}  # the origin's participants, by id
        self._streams: dict[str, dict[str, Any]] = {}  # the origin's streams, by id
        self._retries: dict[str, int] = {}  # hops set up again, per stream
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[Room | None] = self._loop.create_future()
        self._task = self._loop.create_task(self._run())
        self._refresh: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- joining

    def _token(self) -> str:
        return self.authority.mint(room=self.name, role=EDGE, ttl=TOKEN_TTL,
                                   name=f"edge {self.media.node_id}",
                                   subject=self._subject)

    async def _run(self) -> None:
        try:
            try:
                await self.client.connect()
            except (OSError, aiohttp.ClientError, TimeoutError):
                self.unreachable = True
                raise
            joined = await self.client.request({"type": "join", "version": PROTOCOL_VERSION,
                                                "token": self._token(), "edge": True})
            if joined.get("type") != "joined":
                raise SignalingError("not-joined", f"the origin answered {joined.get('type')}")
            self.room = self._open_room()
            for info in joined.get("participants", []):
                self._participant_joined(info)
            for stream in joined.get("streams", []):
                await self._relay_or_log(stream)
            self._arm_refresh()
            logger.info("[%s] relayed from node %s (%d streams)", self.name, self.origin,
                        len(self.subscriptions))
            self.ready.set_result(self.room)
            # Opened for a viewer whose join then failed (e.g. no seat left): not kept.
            self._loop.call_later(READY_TIMEOUT, self._close_if_unoccupied)
            await self._follow()
        except asyncio.CancelledError:
            pass
        except (TimeoutError, SignalingError, MediaServerError, ConnectionError, OSError,
                aiohttp.ClientError) as exc:
            logger.warning("[%s] relaying from node %s failed: %s", self.name, self.origin,
                           exc)
        except Exception:
            logger.exception("[%s] relaying from node %s failed", self.name, self.origin)
        finally:
            if not self.ready.done():
                self.ready.set_result(None)
            self._task_ended()

    def _open_room(self) -> Room:
        room = self.media.room(self.name, origin=self.origin)
        if room.origin != self.origin:  # the room opened here meanwhile (re-placed)
            raise SignalingError("not-relayed", "the room is open on this node itself")
        return room

    def _close_if_unoccupied(self) -> None:
        room = self.room
        if room is not None and not room.closed and room.only_services_left and (
                not room.in_grace):
            room.close("empty")

    def _arm_refresh(self) -> None:
        self._refresh = self._loop.call_later(TOKEN_TTL - REFRESH_BEFORE, self._refresh_due)

    def _refresh_due(self) -> None:
        async def refresh() -> None:
            with contextlib.suppress(SignalingError, ConnectionError, asyncio.TimeoutError):
                await self.client.request({"type": "refresh", "token": self._token()})
            if not self.closed:
                self._arm_refresh()

        self._spawn(refresh())

    # ----------------------------------------------------------------- following the origin

    async def _follow(self) -> None:
        """Mirror the origin's room until it closes or its socket drops."""
        lost = self._loop.create_task(self.client.lost.wait())
        try:
            while not self.closed:
                event = self._loop.create_task(self.client.events.get())
                done, _ = await asyncio.wait({event, lost},
                                             return_when=asyncio.FIRST_COMPLETED)
                if event not in done:
                    event.cancel()
                    logger.info("[%s] the origin node %s went away", self.name, self.origin)
                    self.close_room("origin-lost")
                    return
                if not await self._on_event(event.result()):
                    return
        finally:
            lost.cancel()

    async def _on_event(self, event: dict[str, Any]) -> bool:
        """Apply one event of the origin's room; False when the room ended there."""
        kind = event.get("type")
        if kind == "participant-joined":
            self._participant_joined(event.get("participant"))
        elif kind == "participant-left":
            self._participant_left(str(event.get("participant")))
        elif kind == "track-added":
            await self._relay_or_log(event.get("stream"))
        elif kind == "track-removed":
            self._streams.pop(str(event.get("stream")), None)
            self._stream_gone(str(event.get("stream")))
        elif kind in ("subscription-closed", HOP_FAILED) and event.get(
                "reason") != "stream-ended":
            # The hop failed (the origin's side, or this node's) while the stream goes on
            # there (track-removed says when it ended): set up again.
            await self._relay_again(str(event.get("stream")), str(event.get("subscription")),
                                    unsubscribe=kind == HOP_FAILED)
        elif kind in RELAYED_EVENTS and self.room is not None:
            self.room.broadcast(str(kind), {k: v for k, v in event.items() if k != "type"})
        elif kind == "room-closed":
            self.close_room(str(event.get("reason") or "closed"))
            return False
        return True

    def _participant_joined(self, info: object) -> None:
        if not isinstance(info, dict) or not isinstance(info.get("id"), str):
            return
        self._known[info["id"]] = info
        if stands_in(str(info.get("role"))):
            self._stand_in(info["id"])

    def _stand_in(self, participant_id: str) -> Participant | None:
        room = self.room
        if room is None or room.closed:
            return None
        present = room.participants.get(participant_id)
        if present is not None:
            return present
        info = self._known.get(participant_id, {})
        return room.join(str(info.get("name") or "-"), str(info.get("role") or "-"),
                         self._member, participant_id)

    def _participant_left(self, participant_id: str) -> None:
        self._known.pop(participant_id, None)
        room = self.room
        participant = room.participants.get(participant_id) if room is not None else None
        if room is not None and participant is not None and participant.member is self._member:
            for stream_id in participant.publications:
                self.subscriptions.pop(stream_id, None)
            room.leave(participant)  # its streams end here as they did there

    async def _relay_or_log(self, stream: object) -> None:
        """Relay a stream; one the origin or this node refuses is left out (logged), the
        room's other streams go on. A lost socket ends the link (ConnectionError)."""
        try:
            await self._relay(stream)
        except (TimeoutError, SignalingError, MediaServerError) as exc:
            logger.warning("[%s] a stream was not relayed: %s", self.name, exc)

    async def _relay(self, stream: object) -> None:
        """Subscribe once to the origin's stream and feed it into the relayed room."""
        if not isinstance(stream, dict):
            return
        stream_id, owner = str(stream.get("id")), str(stream.get("participant"))
        self._streams[stream_id] = stream
        participant = self._stand_in(owner)
        if participant is None or stream_id in self.subscriptions or self.room is None:
            return
        offer = await self.client.request({"type": "subscribe", "stream": stream_id},
                                          timeout=60.0)
        subscription = str(offer["subscription"])
        try:
            _, answer = await self.room.relay(participant, stream_id, offer["sdp"])
        except MediaServerError:
            self._spawn(self._unsubscribe(subscription))
            raise
        self.subscriptions[stream_id] = subscription
        await self.client.request({"type": "answer", "subscription": subscription,
                                   "sdp": answer})

    def hop_failed(self, stream_id: str) -> None:
        """This node's side of a stream's hop ended (its room ended the stream): handled
        in turn with the origin's events."""
        subscription = self.subscriptions.get(stream_id)
        if not self.closed and subscription is not None:
            self.client.events.put_nowait({"type": HOP_FAILED, "stream": stream_id,
                                           "subscription": subscription})

    async def _relay_again(self, stream_id: str, subscription: str, *,
                           unsubscribe: bool) -> None:
        """The hop ``subscription`` of a stream ended while the stream goes on at the
        origin: the relayed room's stream ends (its viewers are told, and subscribe again
        when it is back) and the hop is set up anew, up to ``HOP_RETRIES`` times. News of
        a hop already replaced changes nothing."""
        if self.subscriptions.get(stream_id) != subscription:
            return
        self._stream_gone(stream_id)
        if unsubscribe:
            await self._unsubscribe(subscription)
        stream = self._streams.get(stream_id)
        retries = self._retries.get(stream_id, 0)
        if stream is None or retries >= HOP_RETRIES or self.closed:
            return
        self._retries[stream_id] = retries + 1
        logger.info("[%s] setting up the hop of stream %s again", self.name, stream_id)
        await self._relay_or_log(stream)

    def _stream_gone(self, stream_id: str) -> str | None:
        """End the relayed room's stream; returns the edge's subscription to it, if any."""
        subscription = self.subscriptions.pop(stream_id, None)
        room = self.room
        if room is None or room.closed:
            return subscription
        for participant in list(room.participants.values()):
            if participant.member is self._member and stream_id in participant.publications:
                with contextlib.suppress(MediaServerError):
                    room.unpublish(participant, stream_id)
        return subscription

    async def _unsubscribe(self, subscription: str) -> None:
        with contextlib.suppress(SignalingError, ConnectionError, asyncio.TimeoutError):
            await self.client.request({"type": "unsubscribe", "subscription": subscription})

    # ----------------------------------------------------------------- closing

    def close_room(self, reason: str) -> None:
        """Close the relayed room (its viewers hear ``reason``) and the link."""
        room = self.room
        if room is not None and not room.closed:
            room.close(reason)  # its viewers hear `room-closed` and join again
        self.close(close_room=False)

    def close(self, *, close_room: bool = True) -> None:
        """Leave the origin's room and close the relayed room. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._refresh is not None:
            self._refresh.cancel()
        room = self.room
        if close_room and room is not None and not room.closed:
            room.close("origin-lost")
        if asyncio.current_task() is not self._task:
            self._task.cancel()
        self._spawn(self.client.close())
        self._on_closed(self)

    def _task_ended(self) -> None:
        if not self.closed:
            self.close()

    def _spawn(self, work: Any) -> None:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class EdgeLinks:
    """This node's relayed rooms (signalling's ``EdgeRooms``), one link per room."""

    def __init__(self, media: MediaServer, authority: TokenAuthority,
                 ready_timeout: float = READY_TIMEOUT) -> None:
        self.media = media
        self.authority = authority
        self.ready_timeout = ready_timeout
        self.links: dict[str, EdgeLink] = {}
        # Closed links still releasing their socket (each task ends by itself).
        self._closing: set[asyncio.Task[None]] = set()

    async def relayed_room(self, placement: RoomPlacement) -> Room | None:
        if self.media.closed or not placement.url:
            return None
        link = self.links.get(placement.name)
        if link is not None and (link.closed or link.origin != placement.node_id):
            link.close()  # the room moved to another origin: start over
            link = None
        if link is None:
            link = EdgeLink(self.media, self.authority, placement, self._link_closed)
            self.links[placement.name] = link
        try:
            room = await asyncio.wait_for(asyncio.shield(link.ready), self.ready_timeout)
        except TimeoutError:
            logger.warning("[%s] relaying took too long; redirecting", placement.name)
            return None
        if room is None and link.unreachable:
            # Most likely the origin died and its record has not expired yet: the viewer
            # tries again here (the web client does by itself) rather than being sent there.
            raise DirectoryUnavailableError("the room's node cannot be reached; try again")
        if room is None or room.closed:
            return None
        return room

    def _link_closed(self, link: EdgeLink) -> None:
        if self.links.get(link.name) is link:
            del self.links[link.name]
        task = asyncio.get_running_loop().create_task(link.wait_closed())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """The node shuts down: every relayed room closes as its own rooms do."""
        for link in list(self.links.values()):
            link.close_room("server-shutdown")
        await asyncio.gather(*list(self._closing), return_exceptions=True)
