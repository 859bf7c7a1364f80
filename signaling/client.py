"""A Python signalling client: the demo's bedside simulator, tests and benchmark use it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from signaling.messages import PROTOCOL_VERSION

MAX_REDIRECTS = 3


def socket_url(base_url: str) -> str:
    """The signalling socket of a node's base URL (``http://h:p`` -> ``ws://h:p/ws``)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SignalingError("bad-redirect", "the redirect does not name an http(s) URL")
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))


class SignalingError(Exception):
    """An error reply; ``details``: its other fields (e.g. `room-full`'s ``limit``)."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}


class SignalingClient:
    """One signalling connection at a time; ``reconnect`` replaces a lost one.

    Like the web client (web_client/signaling.js), every ``join`` after the first names
    the participant this client was on its previous socket (``join.previous``), so the
    server ends that one at once instead of after its heartbeat gives up (PROTOCOL.md,
    "Reconnecting"): the room never empties, its recording goes on in one piece.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.joined: dict[str, Any] | None = None
        # The participant id of the last `joined` reply: the next join's `previous`.
        self.previous: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._backlog: list[dict[str, Any]] = []
        # Sockets given up by ``reconnect``, closed once the next join has replaced them.
        self._stale: list[tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse,
                                asyncio.Task[None]]] = []
        # The sockets `redirect` replies sent this client to, in order.
        self.redirects: list[str] = []
        # Set when the current socket closes (the server went away or closed it).
        self.lost = asyncio.Event()

    async def connect(self) -> None:
        self._session = aiohttp.ClientSession()
        try:
            self._ws = await self._session.ws_connect(self.url, heartbeat=20.0)
        except BaseException:  # e.g. the node is down: nothing is left open
            await self._session.close()
            self._session = None
            raise
        self.lost.clear()
        self._reader = asyncio.ensure_future(self._read(self._ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT or ws is not self._ws:
                continue  # a replaced socket's last words are nobody's business
            data = json.loads(message.data)
            future = self._pending.pop(str(data.get("id")), None) if "id" in data else None
            if future is not None and not future.done():
                future.set_result(data)
            else:
                self.events.put_nowait(data)
        if ws is self._ws:
            self._fail_pending()
            self.lost.set()

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("signalling connection closed"))
        self._pending.clear()

    async def request(self, message: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
        assert self._ws is not None, "connect() first"
        request_id = f"r{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self._ws.send_str(json.dumps({**message, "id": request_id}))
        reply = await asyncio.wait_for(future, timeout)
        if reply.get("type") == "error":
            details = {k: v for k, v in reply.items() if k not in ("type", "id", "code",
                                                                    "message")}
            raise SignalingError(reply.get("code", "?"), reply.get("message", ""), details)
        return reply

    async def join(self, token: str) -> dict[str, Any]:
        """Join (naming ``previous`` after a first join); returns the `joined` reply.

        A `redirect` reply (the room lives on another node) is followed: this client
        moves to that node's socket (``url`` changes for good) and joins there; after
        ``MAX_REDIRECTS`` in a row it gives up with SignalingError("redirect-loop").
        """
        message: dict[str, Any] = {"type": "join", "version": PROTOCOL_VERSION, "token": token}
        if self.previous is not None:
            message["previous"] = self.previous
        reply = await self.request(message)
        for _ in range(MAX_REDIRECTS):
            if reply.get("type") != "redirect":
                break
            await self._move(socket_url(str(reply.get("url", ""))))
            reply = await self.request(message)
        if reply.get("type") == "redirect":
            raise SignalingError("redirect-loop", "too many redirects")
        self.joined = reply
        participant = self.joined.get("participant")
        if isinstance(participant, dict) and isinstance(participant.get("id"), str):
            self.previous = participant["id"]
        await self._close_stale()  # the server has ended their participants by now
        return self.joined

    async def reconnect(self) -> None:
        """Give up the current socket and open a new one; the next ``join`` names the
        participant of the old one in ``previous``.

        The old socket is not closed first (it may be dead, and a closing handshake on a
        dead network waits for its timeout): it is left to the server, which closes it
        when the rejoin replaces its participant, and closed here after that join.
        Requests still waiting on it fail with ConnectionError.
        """
        if self._session is not None and self._ws is not None and self._reader is not None:
            self._stale.append((self._session, self._ws, self._reader))
        self._session, self._ws, self._reader = None, None, None
        self.joined = None
        self._fail_pending()
        await self.connect()

    async def _move(self, url: str) -> None:
        """Close this socket and open one at ``url`` (a redirect: nothing was joined)."""
        session, ws, reader = self._session, self._ws, self._reader
        self._session, self._ws, self._reader = None, None, None
        await self._close_connection(session, ws, reader)
        self.url = url
        self.redirects.append(url)
        await self.connect()

    async def _close_stale(self) -> None:
        stale, self._stale = self._stale, []
        for session, ws, reader in stale:
            await self._close_connection(session, ws, reader)

    async def publish(self, pc: RTCPeerConnection) -> dict[str, Any]:
        """Offer ``pc``'s tracks; returns the stream description from the server."""
        await pc.setLocalDescription(await pc.createOffer())
        reply = await self.request({"type": "publish", "sdp": pc.localDescription.sdp})
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        stream: dict[str, Any] = reply["stream"]
        return stream

    async def subscribe(self, stream_id: str, pc: RTCPeerConnection) -> str:
        """Receive a stream on ``pc``; returns the subscription id."""
        # It may wait its turn in the server's set-up queue (PROTOCOL.md, `subscribe`).
        offer = await self.request({"type": "subscribe", "stream": stream_id}, timeout=60.0)
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.request({"type": "answer", "subscription": offer["subscription"],
                            "sdp": pc.localDescription.sdp})
        subscription: str = offer["subscription"]
        return subscription

    async def next_event(self, kind: str, timeout: float = 20.0) -> dict[str, Any]:
        """The oldest unread event of type ``kind``; other events stay readable."""
        for index, event in enumerate(self._backlog):
            if event.get("type") == kind:
                return self._backlog.pop(index)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            event = await asyncio.wait_for(self.events.get(), max(0.001, remaining))
            if event.get("type") == kind:
                return event
            self._backlog.append(event)

    async def close(self) -> None:
        await self._close_stale()
        session, ws, reader = self._session, self._ws, self._reader
        self._session, self._ws, self._reader = None, None, None
        self._fail_pending()
        await self._close_connection(session, ws, reader)

    @staticmethod
    async def _close_connection(session: aiohttp.ClientSession | None,
                                ws: aiohttp.ClientWebSocketResponse | None,
                                reader: asyncio.Task[None] | None) -> None:
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if reader is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(reader, 2)
        if session is not None:
            await session.close()
