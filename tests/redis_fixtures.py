"""Real Redis for the cluster tests: the machine's (127.0.0.1:6379) under a key prefix of
the test's own, deleted afterwards, and private ``redis-server`` processes that a test may
stop and start again (the shared one is never restarted)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import free_port

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def new_prefix() -> str:
    return f"huizhen-test-{secrets.token_hex(4)}:"


async def delete_prefix(redis: Redis, prefix: str) -> None:
    keys = [key async for key in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[Redis, str]]:
    """A client of the shared Redis and a key prefix nobody else uses (cleaned up)."""
    redis = Redis.from_url(SHARED_REDIS)
    prefix = new_prefix()
    try:
        yield redis, prefix
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()


class PrivateRedis:
    """A ``redis-server`` of this test only, on ``port``, that can be stopped and started."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory
        self.process: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = Redis.from_url(self.url)
        try:
            for _ in range(200):
                with contextlib.suppress(OSError, ConnectionError, Exception):
                    if await client.ping():
                        return
                await asyncio.sleep(0.05)
            raise RuntimeError("redis-server did not start")
        finally:
            await client.aclose()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    """A started private Redis on a free port, stopped afterwards."""
    server = PrivateRedis(free_port(), tmp_path)
    await server.start()
    try:
        yield server
    finally:
        server.stop()
