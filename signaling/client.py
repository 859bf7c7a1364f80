"""A Python signalling client: the demo's bedside simulator, tests and benchmark use it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from signaling.messages import PROTOCOL_VERSION


class SignalingError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SignalingClient:
    def __init__(self, url: str) -> None:
        self.url = url
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.joined: dict[str, Any] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._backlog: list[dict[str, Any]] = []

    async def connect(self) -> None:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url, heartbeat=20.0)
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            future = self._pending.pop(str(data.get("id")), None) if "id" in data else None
            if future is not None and not future.done():
                future.set_result(data)
            else:
                self.events.put_nowait(data)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("signalling connection closed"))

    async def request(self, message: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
        assert self._ws is not None, "connect() first"
        request_id = f"r{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self._ws.send_str(json.dumps({**message, "id": request_id}))
        reply = await asyncio.wait_for(future, timeout)
        if reply.get("type") == "error":
            raise SignalingError(reply.get("code", "?"), reply.get("message", ""))
        return reply

    async def join(self, token: str) -> dict[str, Any]:
        self.joined = await self.request({"type": "join", "version": PROTOCOL_VERSION,
                                          "token": token})
        return self.joined

    async def publish(self, pc: RTCPeerConnection) -> dict[str, Any]:
        """Offer ``pc``'s tracks; returns the stream description from the server."""
        await pc.setLocalDescription(await pc.createOffer())
        reply = await self.request({"type": "publish", "sdp": pc.localDescription.sdp})
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        stream: dict[str, Any] = reply["stream"]
        return stream

    async def subscribe(self, stream_id: str, pc: RTCPeerConnection) -> str:
        """Receive a stream on ``pc``; returns the subscription id."""
        offer = await self.request({"type": "subscribe", "stream": stream_id})
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
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 2)
        if self._session is not None:
            await self._session.close()
