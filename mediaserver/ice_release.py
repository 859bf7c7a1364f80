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
from typing import Any

from aiortc import RTCPeerConnection

# How often, and for how long at most, a closed peer connection is looked at.
POLL_SECONDS = 0.25
GIVE_UP_SECONDS = 10.0


def _ice_connections(pc: RTCPeerConnection) -> list[Any]:
    connections = []
    for transceiver in pc.getTransceivers():
        for dtls in (transceiver.sender.transport, transceiver.receiver.transport):
            connection = getattr(getattr(dtls, "transport", None), "_connection", None)
            if connection is not None and connection not in connections:
                connections.append(connection)
    return connections


def _connect_may_resume(connection: Any) -> bool:
    """Whether connect() started and has not yet read the check list's outcome."""
    started = getattr(connection, "_early_checks_done", False)
    outcome = getattr(connection, "_check_list_state", None)
    return bool(started) and isinstance(outcome, asyncio.Queue) and not outcome.empty()


def stop_orphan_consent(pc: RTCPeerConnection) -> tuple[int, bool]:
    """Cancel consent tasks of closed ICE connections of ``pc``.

    Returns how many were cancelled, and whether a connect() may still resume
    (and start another one) later.
    """
    stopped = 0
    pending = False
    for connection in _ice_connections(pc):
        if not getattr(connection, "_closed", False):
            pending = True
            continue
        task = getattr(connection, "_query_consent_task", None)
        if isinstance(task, asyncio.Task) and not task.done():
            task.cancel()
            stopped += 1
        pending = pending or _connect_may_resume(connection)
    return stopped, pending


async def release_after_close(pc: RTCPeerConnection) -> None:
    """Once ``pc`` is closed, stop consent tasks started by a late connect(), until none can."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GIVE_UP_SECONDS
    while True:
        await asyncio.sleep(POLL_SECONDS)
        try:
            _stopped, pending = stop_orphan_consent(pc)
        except Exception:  # aioice internals changed: nothing more to do here
            return
        if not pending or loop.time() > deadline:
            return
