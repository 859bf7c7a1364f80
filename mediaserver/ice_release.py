"""Stop ICE consent checks that outlive their closed peer connection (an aioice race).

When a peer connection is closed while ICE is just completing, aioice's
``Connection.connect()`` resumes after ``close()`` has run and starts the RFC 7675
consent task anyway. That task loops over the (now empty) nominated pairs every
few seconds, forever, and keeps the connection, its ICE transport and their
buffers alive: about half a leaked connection per abruptly ended session. This
cancels such tasks once the peer connection has closed. It touches aioice's
private ``_query_consent_task``, so it checks for it instead of assuming it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiortc import RTCPeerConnection

# connect() resumes within a loop tick or two of close(); this leaves ample margin.
SETTLE_SECONDS = 0.5


def _ice_connections(pc: RTCPeerConnection) -> list[Any]:
    connections = []
    for transceiver in pc.getTransceivers():
        for dtls in (transceiver.sender.transport, transceiver.receiver.transport):
            connection = getattr(getattr(dtls, "transport", None), "_connection", None)
            if connection is not None and connection not in connections:
                connections.append(connection)
    return connections


def stop_orphan_consent(pc: RTCPeerConnection) -> int:
    """Cancel consent tasks of closed ICE connections of ``pc``; returns how many."""
    stopped = 0
    for connection in _ice_connections(pc):
        task = getattr(connection, "_query_consent_task", None)
        if getattr(connection, "_closed", False) and isinstance(task, asyncio.Task) \
                and not task.done():
            task.cancel()
            stopped += 1
    return stopped


async def release_after_close(pc: RTCPeerConnection) -> None:
    """Once ``pc`` is closed, wait for a late connect() to resume, then stop its consent task."""
    await asyncio.sleep(SETTLE_SECONDS)
    with contextlib.suppress(Exception):
        stop_orphan_consent(pc)
