"""A controlling client in its own process, so a test can kill it mid-move (kill -9).

``python -m tests.ptz_client WS_URL TOKEN`` joins, then sends a pan-right move every
100 ms forever; it prints "moving" once the server accepted the first move.
``python -m tests.ptz_client WS_URL TOKEN home`` (or ``preset-recall:N``) sends that
one long move instead, prints "moving" once the camera accepted it and then waits.
"""

from __future__ import annotations

import asyncio
import sys

from signaling.client import SignalingClient

MOVE = {"type": "ptz", "action": "move", "pan": 1.0, "tilt": 0, "zoom": 0}


async def main(url: str, token: str, action: str = "move") -> None:
    client = SignalingClient(url)
    await client.connect()
    await client.join(token)
    if action != "move":
        name, _, preset = action.partition(":")
        fields = {"preset": int(preset)} if preset else {}
        await client.request({"type": "ptz", "action": name, **fields})
        print("moving", flush=True)
        await asyncio.Event().wait()
    await client.request(MOVE)
    print("moving", flush=True)
    while True:
        await asyncio.sleep(0.1)
        await client.request(MOVE)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
