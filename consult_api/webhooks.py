"""Signed webhooks: every state change is POSTed to the configured receivers (an SMS
gateway, a hospital information system) after the transaction that made it commits.

Receivers get ``{"id", "event", "at", "data"}`` (ids, states and codes only, never patient
data) with the headers ``X-Huizhen-Event``, ``X-Huizhen-Delivery`` (the same on every retry
of one delivery: receivers deduplicate on it), ``X-Huizhen-Timestamp`` (Unix seconds of the
attempt) and ``X-Huizhen-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``.
``verify`` is the check a receiver makes (see the README).

Domain code calls ``record(session, event, data, at)``: the event waits in ``session.info``
and is handed to the ``Dispatcher`` by an ``after_commit`` hook, so a rolled back change is
never announced. The dispatcher has a bounded queue (full: the event is dropped and logged,
the API never waits), retries 5xx answers, timeouts and connection errors with exponential
backoff, and never retries a 4xx answer (the receiver refused it; sending it again would not
help).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from consult_api.schemas import iso

logger = logging.getLogger(__name__)

PENDING = "huizhen.webhook_events"
SIGNATURE_PREFIX = "sha256="
DEFAULT_TOLERANCE = 300


# --- pure: signing and verifying ---------------------------------------------------------------

def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str, *, now: float,
           tolerance: int = DEFAULT_TOLERANCE) -> bool:
    """What a receiver checks: the signature matches (constant-time) and the timestamp is
    within ``tolerance`` seconds of ``now`` (a replayed old delivery is refused)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


@dataclass(frozen=True)
class WebhookTarget:
    """One receiver: its URL, its shared secret, and the events it wants (``"*"``: all)."""

    url: str
    secret: str
    events: frozenset[str] = frozenset({"*"})

    def wants(self, event: str) -> bool:
        return "*" in self.events or event in self.events


def parse_targets(raw: Iterable[Mapping[str, Any]]) -> list[WebhookTarget]:
    """``records.webhooks`` from the configuration: ``[{url, secret, events}]``."""
    targets = []
    for number, item in enumerate(raw, 1):
        url, secret, events = item.get("url"), item.get("secret"), item.get("events", ["*"])
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or (
                not urlsplit(url).netloc):
            raise ValueError(f"webhook {number}: url must be an http(s) URL")
        if not isinstance(secret, str) or len(secret) < 16:
            raise ValueError(f"webhook {number}: secret must be at least 16 characters")
        if not isinstance(events, list) or not events or not all(
                isinstance(e, str) and e for e in events):
            raise ValueError(f"webhook {number}: events must be a list of event names or '*'")
        targets.append(WebhookTarget(url=url, secret=secret, events=frozenset(events)))
    return targets


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    backoff: float = 1.0       # seconds before the first retry; doubled each time
    max_backoff: float = 300.0
    timeout: float = 10.0      # per attempt
    queue_size: int = 1000

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    at: datetime
    data: Mapping[str, Any]

    def body(self) -> bytes:
        return json.dumps({"id": self.id, "event": self.event, "at": iso(self.at),
                           "data": dict(self.data)}, separators=(",", ":"),
                          sort_keys=True).encode()


def record(session: Session, event: str, data: Mapping[str, Any], at: datetime) -> None:
    """Announce ``event`` once this session's transaction commits."""
    session.info.setdefault(PENDING, []).append(
        Event(id=str(uuid.uuid4()), event=event, at=at, data=dict(data)))


def take_pending(session: Session) -> list[Event]:
    found: list[Event] = session.info.pop(PENDING, [])
    return found


# --- delivery ------------------------------------------------------------------------------------

@dataclass
class Delivery:
    target: WebhookTarget
    event: Event
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempt: int = 0


@dataclass
class Outcomes:
    """Counts for operators (and tests): final results of deliveries."""

    delivered: int = 0
    refused: int = 0       # 4xx: not retried
    gave_up: int = 0       # 5xx / timeouts until attempts ran out
    dropped: int = 0       # queue full
    attempts: int = 0


class Dispatcher:
    """Delivers events to the targets from background tasks on the app's event loop."""

    def __init__(self, targets: Sequence[WebhookTarget], policy: RetryPolicy,
                 *, workers: int = 2, clock: Callable[[], float] = time.time) -> None:
        self.targets = list(targets)
        self.policy = policy
        self.outcomes = Outcomes()
        self._workers = workers
        self._clock = clock
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(policy.queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.policy.timeout))
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        left = self._queue.qsize() + len(self._timers)
        if left:
            logger.warning("webhooks: %s deliveries not sent at shutdown", left)

    def submit_threadsafe(self, events: Sequence[Event]) -> None:
        """From any thread (the database worker threads commit there)."""
        if self._loop is not None and events:
            self._loop.call_soon_threadsafe(self.submit, events)

    def submit(self, events: Sequence[Event]) -> None:
        for item in events:
            for target in self.targets:
                if target.wants(item.event):
                    self._put(Delivery(target=target, event=item))

    def _put(self, delivery: Delivery) -> None:
        try:
            self._queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.outcomes.dropped += 1
            logger.warning("webhooks: queue full, %s %s to %s dropped", delivery.event.event,
                           delivery.id, delivery.target.url)

    def _retry_later(self, delivery: Delivery) -> None:
        assert self._loop is not None

        def fire() -> None:
            self._timers.discard(timer)
            self._put(delivery)

        timer = self._loop.call_later(self.policy.delay(delivery.attempt), fire)
        self._timers.add(timer)

    async def _work(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                await self._attempt(delivery)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("webhooks: delivery %s failed unexpectedly", delivery.id)
            finally:
                self._queue.task_done()

    async def _attempt(self, delivery: Delivery) -> None:
        assert self._http is not None
        delivery.attempt += 1
        self.outcomes.attempts += 1
        body = delivery.event.body()
        timestamp = str(int(self._clock()))
        headers = {"Content-Type": "application/json",
                   "X-Huizhen-Event": delivery.event.event,
                   "X-Huizhen-Delivery": delivery.id,
                   "X-Huizhen-Timestamp": timestamp,
                   "X-Huizhen-Signature": signature(delivery.target.secret, timestamp, body)}
        status: int | None = None
        try:
            async with self._http.post(delivery.target.url, data=body, headers=headers,
                                       allow_redirects=False) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.info("webhooks: %s to %s attempt %s: %s", delivery.id, delivery.target.url,
                        delivery.attempt, type(exc).__name__)
        if status is not None and 200 <= status < 300:
            self.outcomes.delivered += 1
            return
        if status is not None and status < 500:
            self.outcomes.refused += 1
            logger.warning("webhooks: %s refused by %s (%s), not retried", delivery.id,
                           delivery.target.url, status)
            return
        if delivery.attempt >= self.policy.attempts:
            self.outcomes.gave_up += 1
            logger.warning("webhooks: %s to %s given up after %s attempts", delivery.id,
                           delivery.target.url, delivery.attempt)
            return
        self._retry_later(delivery)


DISPATCHER: web.AppKey[Dispatcher | None] = web.AppKey("webhook_dispatcher")
TARGETS: web.AppKey[tuple[Sequence[WebhookTarget], RetryPolicy]] = web.AppKey("webhook_targets")


def configure(app: web.Application, targets: Sequence[WebhookTarget],
              policy: RetryPolicy | None = None) -> None:
    """Store the receivers on the app (``create_app``'s ``webhooks`` parameter)."""
    app[TARGETS] = (tuple(targets), policy or RetryPolicy())


def install(app: web.Application, sessions_key: web.AppKey[Any]) -> None:
    """Start the dispatcher with the app and hook it to the app's sessions' commits.

    Must be called after the context that creates the sessionmaker is registered."""
    app[DISPATCHER] = None

    async def dispatching(app: web.Application) -> AsyncIterator[None]:
        targets, policy = app.get(TARGETS, ((), RetryPolicy()))
        if not targets:
            yield
            return
        dispatcher = Dispatcher(targets, policy)
        await dispatcher.start()
        app[DISPATCHER] = dispatcher
        factory = app[sessions_key]

        def after_commit(session: Session) -> None:
            dispatcher.submit_threadsafe(take_pending(session))

        def after_rollback(session: Session, _previous: Any) -> None:
            take_pending(session)

        sa_event.listen(factory, "after_commit", after_commit)
        sa_event.listen(factory, "after_soft_rollback", after_rollback)
        try:
            yield
        finally:
            sa_event.remove(factory, "after_commit", after_commit)
            sa_event.remove(factory, "after_soft_rollback", after_rollback)
            await dispatcher.stop()

    app.cleanup_ctx.append(dispatching)
