"""A controlling expert in its own process, so a test can kill it mid-move (kill -9).

``python -m tests.ptz_client WS_URL TOKEN`` joins, then sends a pan-right move every
100 ms forever; it prints "moving" once the server accepted the first move.
"""

from __future__ import annotations

import asyncio
import sys

from signaling.client import SignalingClient


async def main(url: str, token: str) -> None:
    client = SignalingClient(url)
    await client.connect()
    await client.join(token)
    await client.request({"type": "ptz", "action": "move", "pan": 1.0, "tilt": 0, "zoom": 0})
    print("moving", flush=True)
    while True:
        await asyncio.sleep(0.1)
        await client.request({"type": "ptz", "action": "move", "pan": 1.0, "tilt": 0,
                              "zoom": 0})


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
