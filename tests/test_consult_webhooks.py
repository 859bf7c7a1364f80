"""Signed webhooks: a real aiohttp receiver on loopback checks every signature; 5xx is
retried, 4xx is not, and a dead or hanging receiver never holds up the API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from consult_api.app import create_app
from consult_api.webhooks import (
    DISPATCHER,
    Dispatcher,
    RetryPolicy,
    WebhookTarget,
    parse_targets,
    signature,
    verify,
)
from tests.conftest import free_port
from tests.test_consult_api import MEDIA_TOKENS, PATIENT, REQUEST, SECRET, Clock, World, create

HOOK_SECRET = "webhook-secret-0123456789"
FAST = RetryPolicy(attempts=4, backoff=0.02, max_backoff=0.05, timeout=2.0)


@dataclass
class Receiver:
    """Answers each delivery with the next status of ``script`` (then 200)."""

    script: list[int] = field(default_factory=list)
    hang: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((dict(request.headers), body))
        self.arrived.set()
        if self.hang:
            await self.release.wait()
        return web.Response(status=self.script.pop(0) if self.script else 200)

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, body in self.seen]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield found, str(server.make_url("/hook"))
    finally:
        found.release.set()
        await server.close()


async def hooked(world: World, aiohttp_client: Any, targets: list[WebhookTarget],
                 policy: RetryPolicy = FAST) -> Dispatcher:
    """Point ``world`` at an app on the same database that sends to ``targets``."""
    app = create_app(world.url, SECRET, clock=Clock(), room_tokens=MEDIA_TOKENS,
                     webhooks=targets, webhook_retry=policy)
    world.client = await aiohttp_client(app)
    dispatcher = app[DISPATCHER]
    assert dispatcher is not None
    return dispatcher


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def check_signed(headers: dict[str, str], body: bytes) -> None:
    assert headers["Content-Type"] == "application/json"
    assert verify(HOOK_SECRET, headers["X-Huizhen-Timestamp"], body,
                  headers["X-Huizhen-Signature"], now=time.time())
    assert not verify("another-secret-0123456789", headers["X-Huizhen-Timestamp"], body,
                      headers["X-Huizhen-Signature"], now=time.time())


async def test_each_change_is_posted_signed_without_patient_data(
        world: World, aiohttp_client: Any, receiver: tuple[Receiver, str]) -> None:
    found, url = receiver
    dispatcher = await hooked(world, aiohttp_client, [WebhookTarget(url, HOOK_SECRET)])
    cid = await create(world)
    response = await world.client.post(f"/api/v1/consultations/{cid}/schedule", json={
        "start": "2026-03-03T09:00:00+08:00", "end": "2026-03-03T09:30:00+08:00",
        "expert_id": world.people["expert"].user_id}, headers=world.auth("coordinator"))
    assert response.status == 200
    await until(lambda: dispatcher.outcomes.delivered == 4, "four deliveries")
    assert sorted(found.events()) == sorted(["consultation.requested", "consultation.state",
                                             "consultation.assigned", "appointment.booked"])
    for headers, body in found.seen:
        check_signed(headers, body)
        payload = json.loads(body)
        assert set(payload) == {"id", "event", "at", "data"}
        assert headers["X-Huizhen-Event"] == payload["event"]
        assert payload["data"]["consultation_id"] == cid
        for value in (PATIENT["name"], PATIENT["record_number"], PATIENT["summary"],
                      REQUEST["question"]):
            assert value.encode() not in body
    state = next(json.loads(b) for _, b in found.seen
                 if json.loads(b)["event"] == "consultation.state")
    assert (state["data"]["from"], state["data"]["to"]) == ("requested", "scheduled")
    assert state["data"]["actor_id"] == world.people["coordinator"].user_id
    assert len({h["X-Huizhen-Delivery"] for h, _ in found.seen}) == 4


async def test_a_refused_change_is_never_announced(
        world: World, aiohttp_client: Any, receiver: tuple[Receiver, str]) -> None:
    found, url = receiver
    dispatcher = await hooked(world, aiohttp_client, [WebhookTarget(url, HOOK_SECRET)])
    cid = await create(world)
    await until(lambda: dispatcher.outcomes.delivered == 1, "the request")
    # Rolled back (409): the notification rows and the event go with it.
    response = await world.client.post(f"/api/v1/consultations/{cid}/transitions",
                                       json={"to": "closed"}, headers=world.auth("doctor"))
    assert response.status == 409
    response = await world.client.post(f"/api/v1/consultations/{cid}/transitions",
                                       json={"to": "cancelled"}, headers=world.auth("doctor"))
    assert response.status == 200
    await until(lambda: dispatcher.outcomes.delivered == 2, "the cancellation")
    assert found.events() == ["consultation.requested", "consultation.state"]


async def test_a_500_is_retried_with_the_same_delivery_id(
        world: World, aiohttp_client: Any, receiver: tuple[Receiver, str]) -> None:
    found, url = receiver
    found.script = [500, 503]
    dispatcher = await hooked(world, aiohttp_client, [WebhookTarget(url, HOOK_SECRET)])
    await create(world)
    await until(lambda: dispatcher.outcomes.delivered == 1, "delivery after retries")
    assert len(found.seen) == 3
    assert len({h["X-Huizhen-Delivery"] for h, _ in found.seen}) == 1
    assert len({b for _, b in found.seen}) == 1
    for headers, body in found.seen:
        check_signed(headers, body)
    assert (dispatcher.outcomes.refused, dispatcher.outcomes.gave_up) == (0, 0)


async def test_a_400_is_not_retried_and_persistent_5xx_gives_up(
        world: World, aiohttp_client: Any, receiver: tuple[Receiver, str]) -> None:
    found, url = receiver
    found.script = [400]
    dispatcher = await hooked(world, aiohttp_client, [WebhookTarget(url, HOOK_SECRET)])
    await create(world)
    await until(lambda: dispatcher.outcomes.refused == 1, "the refusal")
    # The outcome is final: no retry is pending, one attempt reached the receiver.
    assert dispatcher.outcomes.attempts == 1 and len(found.seen) == 1
    found.script = [500] * 10
    await create(world)
    await until(lambda: dispatcher.outcomes.gave_up == 1, "giving up")
    assert len(found.seen) == 1 + FAST.attempts
    assert dispatcher.outcomes.delivered == 0


async def test_only_the_events_a_target_wants(
        world: World, aiohttp_client: Any, receiver: tuple[Receiver, str]) -> None:
    found, url = receiver
    dispatcher = await hooked(world, aiohttp_client, [
        WebhookTarget(url, HOOK_SECRET, frozenset({"consultation.state"}))])
    cid = await create(world)
    response = await world.client.post(f"/api/v1/consultations/{cid}/transitions",
                                       json={"to": "cancelled"}, headers=world.auth("doctor"))
    assert response.status == 200
    await until(lambda: dispatcher.outcomes.delivered == 1, "the state change")
    assert found.events() == ["consultation.state"]


async def test_a_dead_or_hanging_receiver_never_blocks_the_api(
        world: World, aiohttp_client: Any, receiver: tuple[Receiver, str]) -> None:
    hanging, url = receiver
    hanging.hang = True
    dead = f"http://127.0.0.1:{free_port()}/hook"          # nothing listens there
    policy = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02, timeout=30,
                         queue_size=4)
    dispatcher = await hooked(world, aiohttp_client, [WebhookTarget(url, HOOK_SECRET),
                                                      WebhookTarget(dead, HOOK_SECRET)],
                              policy)
    created = [await create(world) for _ in range(12)]
    assert len(set(created)) == 12                          # every request answered
    await hanging.arrived.wait()
    # The hanging receiver holds the workers; the full queue drops rather than waits.
    await until(lambda: dispatcher.outcomes.dropped > 0, "a dropped delivery")
    listed = await world.client.get("/api/v1/consultations", headers=world.auth("doctor"))
    assert listed.status == 200
    assert len((await listed.json())["consultations"]) == 12


async def test_a_dead_receiver_is_given_up_on(world: World, aiohttp_client: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    dispatcher = await hooked(world, aiohttp_client, [WebhookTarget(dead, HOOK_SECRET)])
    await create(world)
    await until(lambda: dispatcher.outcomes.gave_up == 1, "giving up on a dead receiver")
    assert dispatcher.outcomes.attempts == FAST.attempts


# --- pure parts --------------------------------------------------------------------------------

def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"event":"consultation.state"}'
    expected = hmac.new(HOOK_SECRET.encode(), b"1700000000." + body, hashlib.sha256)
    assert signature(HOOK_SECRET, "1700000000", body) == "sha256=" + expected.hexdigest()
    good = signature(HOOK_SECRET, "1700000000", body)
    assert verify(HOOK_SECRET, "1700000000", body, good, now=1700000100)
    assert not verify(HOOK_SECRET, "1700000000", body + b" ", good, now=1700000100)
    assert not verify(HOOK_SECRET, "1700000001", body, good, now=1700000100)
    assert not verify(HOOK_SECRET, "1700000000", body, good, now=1700000000 + 301)
    assert not verify(HOOK_SECRET, "soon", body, good, now=1700000000)
    assert not verify(HOOK_SECRET, "1700000000", body, good[:-1] + "0", now=1700000000)


def test_targets_from_the_configuration() -> None:
    targets = parse_targets([{"url": "https://sms.example/hook", "secret": "s" * 16,
                              "events": ["consultation.state", "referral.state"]},
                             {"url": "http://127.0.0.1:9000/x", "secret": "t" * 20}])
    assert targets[0].wants("referral.state") and not targets[0].wants("referral.note")
    assert targets[1].wants("anything")
    for bad in ({"url": "ftp://x/y", "secret": "s" * 16}, {"url": "https://x/y",
                                                           "secret": "short"},
                {"url": "https://x/y", "secret": "s" * 16, "events": []},
                {"url": "not a url", "secret": "s" * 16}):
        with pytest.raises(ValueError):
            parse_targets([bad])


def test_backoff_doubles_up_to_its_ceiling() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=5.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
