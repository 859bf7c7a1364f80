"""Fixtures shared by the records-service tests (loaded from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from consult_api import records
from consult_api.app import create_app
from consult_api.db import make_engine, make_sessionmaker, upgrade
from tests.test_consult_api import MEDIA_TOKENS, SECRET, Clock, DbTokens, World, seed
from tests.test_consult_db import database_url


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at the newest migration: a SQLite file, and the real PostgreSQL."""
    for url in database_url(request.param, tmp_path):
        upgrade(url)
        yield url


async def seeded_world(url: str, aiohttp_client: Any, **options: Any) -> World:
    """The records app on ``url`` (``options`` go to ``create_app``), seeded with one
    hospital's staff and experts."""
    engine = make_engine(url)
    try:
        people = records.run_in_session(make_sessionmaker(engine), seed)
    finally:
        engine.dispose()
    client = await aiohttp_client(create_app(url, SECRET, clock=Clock(),
                                             room_tokens=MEDIA_TOKENS, **options))
    return World(client=client, url=url, people=people, tokens=DbTokens(url))


@pytest.fixture
async def world(migrated: str, aiohttp_client: Any) -> AsyncIterator[World]:
    """The records app on ``migrated``, seeded with one hospital's staff and experts."""
    yield await seeded_world(migrated, aiohttp_client)
