"""The served OpenAPI description covers every route, and schemathesis finds no 5xx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from consult_api import records
from consult_api.app import create_app
from consult_api.db import make_engine, make_sessionmaker, upgrade
from consult_api.openapi import OPENAPI_PATH, document
from consult_api.workflow import Actor
from tests.test_consult_api import MEDIA_TOKENS, REQUEST, SECRET, DbTokens, seed

RECORDER = "recorder-test-secret-" + "z" * 20
schema = schemathesis.openapi.from_dict(document())


def test_every_registered_route_is_described() -> None:
    app = create_app("sqlite://", SECRET)
    registered = {(route.method.lower(), route.resource.canonical)
                  for route in app.router.routes()
                  if route.resource is not None and route.method != "HEAD"}
    paths = document()["paths"]
    described = {(method, path) for path, ops in paths.items() for method in ops}
    assert registered == described


class Server:
    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.port = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    def start(self) -> str:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory,
         ) -> Iterator[tuple[str, dict[str, Actor], str]]:
    tmp: Path = tmp_path_factory.mktemp("openapi")
    url = f"sqlite:///{tmp / 'consult.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        people = records.run_in_session(make_sessionmaker(engine), seed)
    finally:
        engine.dispose()
    server = Server(create_app(url, SECRET, room_tokens=MEDIA_TOKENS, data_dir=tmp / "files",
                               max_upload=1024 * 1024, recorder_token=RECORDER))
    base = server.start()
    doctor = {"Authorization": f"Bearer {DbTokens(url).mint(people['doctor'])}"}
    response = requests.post(f"{base}/api/v1/consultations", json=REQUEST, headers=doctor,
                             timeout=30)
    assert response.status_code == 201, response.text
    try:
        yield base, people, url
    finally:
        server.stop()


def test_the_description_is_served(live: tuple[str, dict[str, Actor], str]) -> None:
    response = requests.get(live[0] + OPENAPI_PATH, timeout=30)
    assert response.status_code == 200
    assert response.json() == document()


@schema.parametrize()
@settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, live: tuple[str, dict[str, Actor], str]) -> None:
    base, people, url = live
    if case.operation.path == "/api/v1/artefacts":
        token = RECORDER
    else:
        # A fresh token per case: a fuzzed DELETE /api-tokens/{id} may revoke the last.
        token = DbTokens(url).mint(people["admin"])
    response = case.call(base_url=base, headers={"Authorization": f"Bearer {token}"},
                         timeout=30)
    assert response.status_code < 500, (case.operation.label, response.text)
    case.validate_response(response, checks=[not_a_server_error])
