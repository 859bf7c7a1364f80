"""A transport closed while its peer connection is still connecting is freed.

aiortc's ``RTCPeerConnection.__connect()`` task starts the senders and receivers
once the DTLS handshake completes; ``close()`` stops them first and then awaits the
transports. Under CPU load a handshake can complete during those awaits, and the
sender or receiver it starts runs its RTCP loop forever, holding the peer
connection (``tests/test_limits.py`` saw 1-5 per 200 sessions on a loaded machine).
These tests force that interleaving with real aiortc peers over loopback: the
server's DTLS ``start`` completes the real handshake, then waits until the
transport's ``close()`` is under way before ``__connect()`` goes on.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from mediaserver import MediaConfig
from mediaserver.transport import Publication, Subscription, Transport
from tests.peers import Subscriber, make_publisher_offer

CONFIG = MediaConfig(ice_addresses=("127.0.0.1",))


class HandshakeRace:
    """Closes ``transport`` the moment its DTLS handshake has completed, and lets
    ``__connect()`` continue only once ``close()`` has stopped the senders and receivers."""

    def __init__(self) -> None:
        self.dtls_states: list[str] = []
        self.pc_states: list[str] = []
        self.happened = asyncio.Event()

    def arm(self, transport: Transport) -> None:
        transports: dict[int, Any] = {id(t.receiver.transport): t.receiver.transport
                                      for t in transport.pc.getTransceivers()}
        for dtls in transports.values():
            original = dtls.start

            async def start(parameters: Any, dtls: Any = dtls, original: Any = original) -> None:
                await original(parameters)
                self.dtls_states.append(dtls.state)
                transport.close()
                # pc.close() sets the signalling state, stops every transceiver (none
                # started yet: nothing to await) and reaches its first real await.
                while transport.pc.signalingState != "closed":
                    await asyncio.sleep(0)
                self.pc_states.append(transport.pc.signalingState)
                self.happened.set()
                # __connect() now calls sender.send() / receiver.receive().

            dtls.start = start


class RacingPublication(Publication):
    race = HandshakeRace()

    async def _apply_local(self, description: RTCSessionDescription) -> str:
        self.race.arm(self)
        return await super()._apply_local(description)


class RacingSubscription(Subscription):
    race = HandshakeRace()

    async def _apply_local(self, description: RTCSessionDescription) -> str:
        self.race.arm(self)
        return await super()._apply_local(description)


def ignore_state(_transport: Any, _state: str) -> None:
    pass


def freed(ref: weakref.ref[RTCPeerConnection]) -> bool:
    for _ in range(3):
        gc.collect()
    return ref() is None


async def test_a_publication_closed_as_its_handshake_completes_is_freed(
        caplog: pytest.LogCaptureFixture) -> None:
    race = RacingPublication.race = HandshakeRace()
    publication = RacingPublication("pub-1", "ward", CONFIG, ignore_state)
    publisher, offer, _tracks = await make_publisher_offer(audio=True)
    try:
        answer = await publication.negotiate(offer)
        await publisher.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(race.happened.wait(), 30)
        await publication.wait_closed()
        # The real handshake completed, and close() had begun before media started.
        assert race.dtls_states[0] == "connected"
        assert race.pc_states[0] == "closed"
        receivers = [t.receiver for t in publication.pc.getTransceivers()]
        assert len(receivers) == 2
        # No receiver was started after its stop: no RTCP loop keeps it alive.
        assert not any(_runs_rtcp(receiver) for receiver in receivers)
        ref = weakref.ref(publication.pc)
        del publication, receivers
        assert freed(ref)
        # aiortc's connect task went on quietly: no exception left unretrieved in it.
        assert logged_errors(caplog) == []
    finally:
        await publisher.close()


async def test_a_subscription_closed_as_its_handshake_completes_is_freed(
        caplog: pytest.LogCaptureFixture) -> None:
    source = Publication("pub-1", "ward", CONFIG, ignore_state)
    publisher, offer, _tracks = await make_publisher_offer(audio=True)
    viewer = Subscriber()
    race = RacingSubscription.race = HandshakeRace()
    subscription = RacingSubscription("sub-1", "expert", source.id, CONFIG, ignore_state)
    try:
        answer = await source.negotiate(offer)
        await publisher.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        sub_offer = await subscription.create_offer(source.producers)
        await subscription.accept_answer(await viewer.answer(sub_offer))
        await asyncio.wait_for(race.happened.wait(), 30)
        await subscription.wait_closed()
        assert race.dtls_states[0] == "connected"
        assert race.pc_states[0] == "closed"
        senders = [t.sender for t in subscription.pc.getTransceivers()]
        assert len(senders) == 2
        assert not any(_runs_rtcp(sender) for sender in senders)
        ref = weakref.ref(subscription.pc)
        del subscription, senders
        assert freed(ref)
        assert logged_errors(caplog) == []
        # The publication it copied is untouched and still connected.
        assert not source.closed
    finally:
        source.close()
        await source.wait_closed()
        await asyncio.gather(publisher.close(), viewer.close())


def logged_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    gc.collect()  # an unretrieved task exception is logged when its task is collected
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _runs_rtcp(owner: object) -> bool:
    """Whether an aiortc RTCP loop of ``owner`` (a sender or receiver) is still running."""
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if (frame is not None and coro.__qualname__.endswith("._run_rtcp")
                and frame.f_locals.get("self") is owner):
            return True
    return False
