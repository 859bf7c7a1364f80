"""Shared fixtures: the real server on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from config import Settings, load_settings
from huizhen.app import create_app, token_authority
from signaling import TokenAuthority

# The records-service fixtures (migrated databases, the seeded app); the cluster tests' Redis.
pytest_plugins = ["tests.consult_fixtures", "tests.redis_fixtures"]


def stop_process(process: subprocess.Popen[Any], timeout: float = 15) -> int:
    """SIGTERM, then SIGKILL if it has not exited in time; returns the exit code."""
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        return process.wait(timeout)
    process.kill()
    return process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def child_server(module: str, *args: str) -> AsyncIterator[str]:
    """``python -m MODULE PORT *ARGS`` in a child process, once it printed ``ready``;
    yields its base URL and stops it afterwards."""
    port = free_port()
    child = subprocess.Popen([sys.executable, "-m", module, str(port), *args],
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline)
        assert line.strip() == b"ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(child)


@dataclass
class RunningServer:
    app: web.Application
    settings: Settings
    authority: TokenAuthority
    base_url: str

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http", "ws", 1) + "/ws"

    def token(self, role: str, room: str = "bed-1", name: str | None = None,
              ttl: int = 600) -> str:
        return self.authority.mint(room=room, role=role, name=name or role, ttl=ttl)


def server_environment(**overrides: str) -> dict[str, str]:
    """The HUIZHEN_* variables of a test server (for a child process too)."""
    env = {"HUIZHEN_SERVER_HOST": "127.0.0.1", "HUIZHEN_SERVER_PORT": str(free_port()),
           "HUIZHEN_AUTH_TOKEN_SECRET": "test-secret-0123456789abcdef-0123456789",
           # Recording is on by default in production; tests that record say so.
           "HUIZHEN_RECORDER_ENABLED": "false",
           # An empty room waits 60 s for a rejoin in production; tests that need it say so.
           "HUIZHEN_MEDIA_EMPTY_ROOM_GRACE": "0",
           # The tests' clients share the server's event loop (in-process servers): its
           # load is theirs too. tests/test_admission.py turns it on.
           "HUIZHEN_MEDIA_ADMIT_CPU": "0"}
    env.update(overrides)
    return env


def make_settings(**overrides: str) -> Settings:
    return load_settings(environ=server_environment(**overrides))


@pytest.fixture
async def running_server() -> AsyncIterator[RunningServer]:
    async with serving(make_settings()) as server:
        yield server


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[RunningServer]:
    """The real app for ``settings`` on its host and port, cleaned up afterwards."""
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port)
    await site.start()
    try:
        yield RunningServer(app, settings, token_authority(settings), settings.server.base_url)
    finally:
        await runner.cleanup()
