"""A real coturn (Debian's /usr/bin/turnserver) on loopback with ``use-auth-secret``.

Started per test on a free port, everything (log, pid file, user database) in a
temporary directory, and always stopped. ``--allow-loopback-peers`` lets it relay to
the media server on 127.0.0.1, which production must never allow.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, stop_process

TURNSERVER = Path("/usr/bin/turnserver")
REALM = "huizhen.test"


@dataclass(frozen=True)
class Coturn:
    port: int
    secret: str
    log: Path

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log_text(self) -> str:
        return self.log.read_text("utf-8", errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def coturn(directory: Path, secret: str = "ward-turn-secret-0123456789") -> Iterator[Coturn]:
    """Run turnserver until the block ends; fails (never skips) when it is missing."""
    if not TURNSERVER.exists():
        pytest.fail(f"{TURNSERVER} is missing: the TURN tests need Debian's coturn package",
                    pytrace=False)
    port = free_port()
    server = Coturn(port, secret, directory / "turn.log")
    process = subprocess.Popen(
        [str(TURNSERVER), "-n", "--listening-ip", "127.0.0.1", "--listening-port", str(port),
         "--relay-ip", "127.0.0.1", "--use-auth-secret", "--static-auth-secret", secret,
         "--realm", REALM, "--no-cli", "--no-tls", "--no-dtls", "--allow-loopback-peers",
         "--log-file", str(server.log), "--simple-log", "--no-stdout-log",
         "--pidfile", str(directory / "turn.pid"), "--db", str(directory / "turndb")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while "Total General servers" not in server.log_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"turnserver did not start:\n{server.log_text()[-2000:]}")
            time.sleep(0.05)
        yield server
    finally:
        stop_process(process, timeout=5)
