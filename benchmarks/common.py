"""Shared by the benchmark's processes: settings, bitrate pinning and the control channel.

Every child process (server, publisher, subscribers) speaks JSON lines with the
orchestrator: it writes events such as ``{"event": "ready", ...}`` on stdout and
reads commands such as ``{"cmd": "snapshot"}`` on stdin. End of stdin (the
orchestrator closed it, or died) or SIGTERM/SIGINT makes a child shut down, so no
child outlives the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from config import Settings, load_settings

HOST = "127.0.0.1"
ROOM = "bench"
SECRET_ENV = "HUIZHEN_BENCH_SECRET"
DEFAULT_SECRET = "huizhen-benchmark-secret-not-for-production"
TARGET_BITRATE = 1_500_000
ROOM_VIEWERS = 1024  # the benchmark server's viewer seats (the default is 1000)
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def bench_settings(port: int, record_dir: str | None = None,
                   cluster_prefix: str | None = None,
                   redis_url: str = DEFAULT_REDIS_URL) -> Settings:
    """The same settings (port, token secret) in every benchmark process.

    The environment given to ``load_settings`` is explicit, so a HUIZHEN_CONFIG or
    other HUIZHEN_* variables of the caller's shell cannot change the benchmark.
    ``cluster_prefix``: a node of a cluster on ``redis_url`` under that key prefix.
    """
    secret = os.environ.get(SECRET_ENV) or DEFAULT_SECRET
    cluster = {} if cluster_prefix is None else {
        "HUIZHEN_CLUSTER_REDIS_URL": redis_url,
        "HUIZHEN_CLUSTER_KEY_PREFIX": cluster_prefix,
        # The nodes share this machine's cores: placement by load, not by a busy tier.
        "HUIZHEN_CLUSTER_BUSY_CPU": "1000",
    }
    return load_settings(environ={**cluster,
        "HUIZHEN_SERVER_HOST": HOST,
        "HUIZHEN_SERVER_PORT": str(port),
        "HUIZHEN_AUTH_TOKEN_SECRET": secret,
        # Recording is measured in its own scenario; elsewhere it stays off.
        "HUIZHEN_RECORDER_ENABLED": "true" if record_dir else "false",
        "HUIZHEN_RECORDER_DIRECTORY": record_dir or "",
        "HUIZHEN_STORAGE_DATA_DIR": record_dir or os.path.join(tempfile.gettempdir(),
                                                               "huizhen-bench"),
        # Rooms of hundreds of viewers (the sweep), all of them from 127.0.0.1. Signalling
        # queues are the product's own (viewers are not told of each other since the
        # sweep closed sockets with 250 viewers; see benchmarks/README.md).
        "HUIZHEN_MEDIA_ROOM_VIEWERS": str(ROOM_VIEWERS),
        "HUIZHEN_SIGNALING_SOCKETS_PER_ADDRESS": "0",
        # The node's load admission (server-busy): the product's default unless the
        # benchmark's shell sets it (e.g. HUIZHEN_MEDIA_ADMIT_CPU=0 to see the collapse).
        **({"HUIZHEN_MEDIA_ADMIT_CPU": os.environ["HUIZHEN_MEDIA_ADMIT_CPU"]}
           if "HUIZHEN_MEDIA_ADMIT_CPU" in os.environ else {}),
    })


def pin_vp8_bitrate(bitrate: int = TARGET_BITRATE) -> None:
    """Make every aiortc VP8 encoder of THIS process encode at ``bitrate``, always.

    ``Vp8Encoder`` starts at ``DEFAULT_BITRATE`` and its ``target_bitrate`` setter
    (fed by the receiver's REMB) clamps to ``[MIN_BITRATE, MAX_BITRATE]``; each >10%
    change rebuilds the encoder (a keyframe). Setting all three module constants to
    the same value pins the target, so REMB can no longer move it.
    """
    from aiortc.codecs import vpx

    for name in ("DEFAULT_BITRATE", "MIN_BITRATE", "MAX_BITRATE"):
        if not isinstance(getattr(vpx, name, None), int):
            raise RuntimeError(f"aiortc.codecs.vpx.{name} is gone: update pin_vp8_bitrate")
        setattr(vpx, name, bitrate)


def emit(event: str, **fields: Any) -> None:
    """Send one event line to the orchestrator."""
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
    sys.stdout.flush()


async def serve_control(handler: Handler | None = None) -> None:
    """Answer the orchestrator's commands until stdin closes, ``stop``, SIGTERM or SIGINT.

    Each command ``{"cmd": X, ...}`` gets one reply event named X.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read_stdin, name="control", daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, lines.put_nowait, None)
    while True:
        line = await lines.get()
        if line is None:
            return
        line = line.strip()
        if not line:
            continue
        try:
            command = json.loads(line)
            name = str(command["cmd"])
        except (ValueError, KeyError, TypeError):
            emit("error", message=f"bad command {line[:80]!r}")
            continue
        if name == "stop":
            return
        if handler is None:
            emit(name)
            continue
        try:
            reply = await handler(command)
        except Exception as exc:
            emit("error", command=name, message=f"{type(exc).__name__}: {exc}")
            continue
        emit(name, **reply)


def restrict_to_loopback(pc: Any) -> None:
    """Gather ICE candidates on 127.0.0.1 only (call before setLocalDescription)."""
    from mediaserver.aiortc_hooks import restrict_host_addresses

    restrict_host_addresses(pc, (HOST,))


def quiet_logging() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.ERROR)
    logging.getLogger("aiortc").setLevel(logging.ERROR)
