"""Run the real server in a child process that reports its memory and live media objects.

``python -m tests.memory_child PORT SECRET`` serves the normal app plus
``GET /_test/memory``: after a full garbage collection, the process's RSS, the
media server's live rooms and transports, how many RTCPeerConnection, aioice
Connection, Transport,
Room and Participant objects still exist anywhere in the process, how many of
the rooms ever created are still alive (weak references), and the aiortc/aioice
tasks still pending (what would keep a peer connection alive). Measuring in a separate
process keeps the test's own aiortc peers (and their decoders) out of the numbers.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import sys
import tempfile
import weakref


def media_tasks() -> dict[str, int]:
    """Pending asyncio tasks running aiortc or aioice code, by coroutine name: what
    keeps a leaked peer connection alive (a consent check, an RTCP loop, ...)."""
    names: collections.Counter[str] = collections.Counter()
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        module = getattr(getattr(coro, "cr_code", None), "co_filename", "")
        if "/aiortc/" in module or "/aioice/" in module:
            names[getattr(coro, "__qualname__", repr(coro))] += 1
    return dict(names)


async def serve(port: int, secret: str) -> None:
    import psutil  # type: ignore[import-untyped]
    from aiohttp import web
    from aioice.ice import Connection
    from aiortc import RTCPeerConnection

    from config import load_settings
    from huizhen.app import create_app
    from mediaserver import MediaServer, Participant, Room, Transport
    from signaling import MEDIA_SERVER

    settings = load_settings(environ={
        "HUIZHEN_SERVER_HOST": "127.0.0.1", "HUIZHEN_SERVER_PORT": str(port),
        "HUIZHEN_AUTH_TOKEN_SECRET": secret,
        "HUIZHEN_RECORDER_ENABLED": "false",
        # Empty rooms close at once: every room must be collected when the cycles end.
        "HUIZHEN_MEDIA_EMPTY_ROOM_GRACE": "0",
        "HUIZHEN_STORAGE_DATA_DIR": tempfile.mkdtemp(prefix="huizhen-memory-"),
    })
    app = create_app(settings)
    media: MediaServer = app[MEDIA_SERVER]
    rooms: list[weakref.ref[Room]] = []
    media.directory.watch(lambda room: rooms.append(weakref.ref(room)))
    process = psutil.Process()

    async def report(request: web.Request) -> web.Response:
        for _ in range(3):
            gc.collect()
        objects = gc.get_objects()

        def count(cls: type) -> int:
            return sum(1 for o in objects if isinstance(o, cls))

        body = {
            "rss": process.memory_info().rss,
            "rooms": len(media.directory.local_names()),
            "transports": media.transports(),
            "peerConnections": count(RTCPeerConnection),
            "iceConnections": count(Connection),
            "transportObjects": count(Transport),
            "roomObjects": count(Room),
            "participantObjects": count(Participant),
            "roomsCreated": len(rooms),
            "roomsAlive": sum(1 for ref in rooms if ref() is not None),
            "fds": process.num_fds(),
            "mediaTasks": media_tasks(),
        }
        objects.clear()
        return web.json_response(body)

    app.router.add_get("/_test/memory", report)
    from tests.child_app import serve_forever

    await serve_forever(app, port)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2]))
