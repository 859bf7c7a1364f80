"""Cascaded rooms on three in-process nodes and the real Redis: the bedside publishes at
node a (the room's origin); viewers who join at nodes b and c are served there (no
redirect), each edge node receiving every stream once from a over its own peer connection
and fanning it out; every viewer decodes the right frames. Keyframe requests of the
edges' viewers reach the publisher through the edges' and the origin's throttles. An edge
join needs an edge token signed with the cluster's secret."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket
from redis.asyncio import Redis

from huizhen import cascade
from huizhen.cluster import CLUSTER
from huizhen.testpattern import PatternVideoTrack, ToneAudioTrack
from mediaserver import Participant, Room
from mediaserver.producer import Producer
from mediaserver.stats import producer_stats
from mediaserver.transport import Publication, Subscription
from signaling import MEDIA_SERVER, TokenAuthority
from signaling.client import SignalingClient, SignalingError
from signaling.session import SignalingSession
from tests.conftest import RunningServer, make_settings, serving
from tests.peers import Subscriber, wait_for
from tests.redis_fixtures import SHARED_REDIS
from tests.test_cluster_nodes import (
    ROOM,
    close_all,
    cluster_variables,
    joined_at,
    joined_client,
    killable_node,
    node_id,
    publish_pattern,
    rejoin_through,
    watch,
)
from tests.test_upstream_loss import LossyTap

KEYFRAME_INTERVAL = 0.5  # the default [media] keyframe_interval, said here for the test


@contextlib.asynccontextmanager
async def nodes(prefix: str, count: int, **extra: str) -> AsyncIterator[list[RunningServer]]:
    variables = {**cluster_variables(SHARED_REDIS, prefix),
                 "HUIZHEN_MEDIA_KEYFRAME_INTERVAL": str(KEYFRAME_INTERVAL), **extra}
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(serving(make_settings(**variables)))
               for _ in range(count)]


def room_of(node: RunningServer) -> Room:
    room = node.app[MEDIA_SERVER].directory.local(ROOM)
    assert room is not None
    return room


def edges_at(origin: RunningServer) -> list[Participant]:
    return [p for p in room_of(origin).participants.values() if p.role == "edge"]


def producer_of(node: RunningServer, kind: str = "video") -> Producer:
    for participant in room_of(node).participants.values():
        for publication in participant.publications.values():
            assert isinstance(publication, Publication)
            for producer in publication.producers:
                if producer.kind == kind:
                    return producer
    raise AssertionError(f"no {kind} producer on this node")


def edge_consumers(origin: RunningServer, kind: str = "video") -> dict[str, tuple[int, int]]:
    """Per edge participant at the origin: (packets, bytes) its consumers sent."""
    sent = {}
    for edge in edges_at(origin):
        packets = octets = 0
        for subscription in edge.subscriptions.values():
            assert isinstance(subscription, Subscription)
            for consumer in subscription.consumers:
                if consumer.kind == kind:
                    packets += consumer.packets_sent
                    octets += consumer.octets_sent
        sent[edge.name] = (packets, octets)
    return sent


async def sent_by_publisher(pc: RTCPeerConnection) -> tuple[int, int]:
    for sender in pc.getSenders():
        if sender.track is not None and sender.track.kind == "video":
            for stats in (await sender.getStats()).values():
                if stats.type == "outbound-rtp":
                    return stats.packetsSent, stats.bytesSent
    raise AssertionError("the publisher sends no video")


def count_plis(pc: RTCPeerConnection) -> list[float]:
    """The loop times at which the publisher's video sender is asked for a keyframe."""
    arrivals: list[float] = []
    loop = asyncio.get_running_loop()
    for sender in pc.getSenders():
        if sender.track is None or sender.track.kind != "video":
            continue
        handle = sender._handle_rtcp_packet

        async def counting(packet: Any, handle: Any = handle) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
                arrivals.append(loop.time())
            await handle(packet)

        sender._handle_rtcp_packet = counting  # type: ignore[method-assign]
    return arrivals


async def ask_for_keyframes(viewer: Subscriber, times: int) -> None:
    """The viewer's peer sends ``times`` PLIs for the video it receives, at once."""
    for receiver in viewer.pc.getReceivers():
        if receiver.track is not None and receiver.track.kind == "video":
            sources = receiver.getSynchronizationSources()
            assert sources, "the viewer has received no video yet"
            for _ in range(times):
                await receiver._send_rtcp_pli(sources[0].source)


async def join_viewers(entries: list[RunningServer], stream: str
                       ) -> tuple[list[SignalingClient], list[Subscriber]]:
    clients, viewers = [], []
    for node in entries:
        client = await joined_client(node, "observer")
        clients.append(client)
        assert client.redirects == []  # served where it joined
        assert client.joined is not None and client.joined["room"] == ROOM
        assert [s["id"] for s in client.joined["streams"]] == [stream]
        viewers.append(await watch(client, stream))
    return clients, viewers


def check_frames(viewers: list[Subscriber], names: list[str]) -> None:
    for viewer, name in zip(viewers, names, strict=True):
        numbers = viewer.received.frame_numbers
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), name
        assert viewer.received.mean_difference < 12, name
        print(f"viewer at node {name}: {viewer.received.video_frames} frames decoded, frames "
              f"{numbers[0]}..{numbers[-1]}, mean difference "
              f"{viewer.received.mean_difference:.1f}")


async def test_a_cascaded_room_sends_each_packet_once_per_edge_node(
        redis_prefix: tuple[Redis, str]) -> None:
    redis, prefix = redis_prefix
    async with nodes(prefix, 3) as (a, b, c):
        ward = await joined_client(a, "ward")  # the first join places the room on a
        pc, stream = await publish_pattern(ward)
        clients, viewers = await join_viewers([b, b, c, c], stream)
        try:
            await wait_for(lambda: all(v.received.video_frames >= 30 for v in viewers))
            check_frames(viewers, ["b", "b", "c", "c"])
            # Each edge node is one participant at a (no seat), subscribed once.
            edges = edges_at(a)
            assert sorted(e.name for e in edges) == sorted(
                [f"edge {node_id(b)}", f"edge {node_id(c)}"])
            assert all(e.service and len(e.subscriptions) == 1 for e in edges)
            stats = a.app[MEDIA_SERVER].stats().rooms[0]
            assert (stats.publishers, stats.viewers) == (1, 0)
            for node in (b, c):  # a relayed room there, its viewers in its seats
                assert room_of(node).origin == node_id(a)
                [relayed] = node.app[MEDIA_SERVER].stats().rooms
                assert (relayed.publishers, relayed.viewers) == (0, 2)
                assert relayed.origin == node_id(a)
            # A window of the steady state, counted at every hop.
            origin, at_b, at_c = producer_of(a), producer_of(b), producer_of(c)
            before = (await sent_by_publisher(pc), origin.packets_received,
                      edge_consumers(a), at_b.packets_received, at_c.packets_received)
            start = origin.packets_received
            await wait_for(lambda: origin.packets_received >= start + 400)
            after = (await sent_by_publisher(pc), origin.packets_received,
                     edge_consumers(a), at_b.packets_received, at_c.packets_received)
            published = after[0][0] - before[0][0], after[0][1] - before[0][1]
            received = after[1] - before[1]
            per_edge = {name: (after[2][name][0] - sent[0], after[2][name][1] - sent[1])
                        for name, sent in before[2].items()}
            total = sum(p for p, _ in per_edge.values()), sum(o for _, o in per_edge.values())
            edge_in = after[3] - before[3], after[4] - before[4]
            print(f"publisher sent {published[0]} video packets ({published[1]} bytes); "
                  f"a's producer received {received}")
            for name, (packets, octets) in per_edge.items():
                print(f"a sent {name}: {packets} packets, {octets} payload bytes")
            print(f"a sent the edges {total[0]} packets in all: {total[0] / received:.3f}x "
                  f"what it received, {total[0] / published[0]:.3f}x what the publisher sent "
                  f"(2 edge nodes, 4 viewers)")
            print(f"received by b's producer: {edge_in[0]}, by c's: {edge_in[1]} "
                  f"(a's producer: {received})")
            for packets, _ in per_edge.values():  # once per edge node
                assert abs(packets - received) <= 0.03 * received
            assert 1.94 * received <= total[0] <= 2.06 * received  # not 4x
            for got in edge_in:
                assert abs(got - received) <= 0.03 * received
            # The origin room's application events reach the edges' viewers.
            room_of(a).broadcast("vitals", {"device": "monitor-1", "samples": []})
            for client in clients:
                assert (await client.next_event("vitals")) == {
                    "type": "vitals", "device": "monitor-1", "samples": []}
            # The room stays placed on a: the edges never claim the rooms they relay.
            for node in (b, c):  # what every heartbeat does after writing the record
                await node.app[CLUSTER].after_beat()
            assert await redis.hget(f"{prefix}rooms", ROOM) == node_id(a).encode()
            assert not (await b.app[CLUSTER].placement(ROOM)).local
            # Viewers take the edges' seats, and the edge consumers fan out there.
            for node in (b, c):
                sent = [consumer.packets_sent for p in room_of(node).participants.values()
                        for s in p.subscriptions.values() if isinstance(s, Subscription)
                        for consumer in s.consumers if consumer.kind == "video"]
                assert len(sent) == 2
            # The last viewer gone, each edge leaves the origin's room (grace 0 here), and
            # the relayed rooms close; the origin's goes on.
            await close_all(*viewers, *clients)
            await wait_for(lambda: not edges_at_or_none(a))
            await wait_for(lambda: not b.app[MEDIA_SERVER].directory.local_names())
            assert a.app[MEDIA_SERVER].directory.local_names() == (ROOM,)
        finally:
            await close_all(*viewers, *clients, pc, ward)


def edges_at_or_none(origin: RunningServer) -> list[Participant]:
    room = origin.app[MEDIA_SERVER].directory.local(ROOM)
    return [] if room is None else [p for p in room.participants.values() if p.role == "edge"]


async def test_viewers_keyframe_requests_reach_the_publisher_once_per_throttle_window(
        redis_prefix: tuple[Redis, str]) -> None:
    _, prefix = redis_prefix
    async with nodes(prefix, 3) as (a, b, c):
        ward = await joined_client(a, "ward")
        pc, stream = await publish_pattern(ward)
        plis = count_plis(pc)
        clients, viewers = await join_viewers([b, b, c, c], stream)
        try:
            await wait_for(lambda: all(v.received.video_frames >= 20 for v in viewers))
            origin, at_b, at_c = producer_of(a), producer_of(b), producer_of(c)
            loop = asyncio.get_running_loop()
            # Quiet first: no keyframe request for two windows (the joins' are over).
            await wait_for(lambda: not plis or loop.time() - plis[-1] > 2 * KEYFRAME_INTERVAL,
                           timeout=30)
            seen, started = len(plis), loop.time()
            counts = (origin.keyframe_requests_sent, at_b.keyframe_requests_sent,
                      at_c.keyframe_requests_sent)
            # Every viewer on both edges asks five times at once.
            await asyncio.gather(*(ask_for_keyframes(v, 5) for v in viewers))
            await wait_for(lambda: len(plis) > seen)
            await asyncio.sleep(4 * KEYFRAME_INTERVAL)  # deferred requests have their turn
            ended = loop.time()
            new = plis[seen:]
            sent = (origin.keyframe_requests_sent - counts[0],
                    at_b.keyframe_requests_sent - counts[1],
                    at_c.keyframe_requests_sent - counts[2])
            windows = (ended - started) / KEYFRAME_INTERVAL
            gaps = [later - earlier for earlier, later in itertools.pairwise(plis)]
            print(f"20 PLIs from 4 viewers on 2 edges -> upstream requests b {sent[1]}, "
                  f"c {sent[2]}, a {sent[0]}; PLIs at the publisher: {len(new)} in "
                  f"{ended - started:.2f} s ({windows:.1f} throttle windows); smallest gap "
                  f"between PLIs at the publisher over the whole test: {min(gaps or [0]):.3f} s")
            assert 1 <= len(new) <= int(windows) + 1
            # Each edge passed on at most one request now and one deferred to the window's
            # end (not ten), and so did the origin.
            assert 1 <= sent[1] <= 3 and 1 <= sent[2] <= 3 and 1 <= sent[0] <= 3
            assert all(gap >= 0.5 * KEYFRAME_INTERVAL for gap in gaps)
        finally:
            await close_all(*viewers, *clients, pc, ward)


async def raw_join(node: RunningServer, token: str, **extra: object) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.ws_connect(node.ws_url) as ws:
        await ws.send_str(json.dumps({"type": "join", "id": 1, "version": 1, "token": token,
                                      **extra}))
        reply: dict[str, Any] = json.loads((await ws.receive(5)).data)
        return reply


async def test_edge_joins_need_an_edge_token_of_this_cluster_and_publishers_are_redirected(
        redis_prefix: tuple[Redis, str]) -> None:
    _, prefix = redis_prefix
    async with nodes(prefix, 2) as (a, b), nodes(prefix, 1, HUIZHEN_CLUSTER_CASCADE="false"
                                                  ) as (plain,):
        ward = await joined_client(a, "ward")
        try:
            # A person's token asking to join as an edge is refused, and an edge token
            # joins only as one.
            refused = await raw_join(a, a.token("observer"), edge=True)
            assert (refused["type"], refused["code"]) == ("error", "forbidden")
            edge_token = a.authority.mint(room=ROOM, role="edge", name="edge x", ttl=60)
            assert (await raw_join(a, edge_token))["code"] == "forbidden"
            # An edge token signed with another secret is refused.
            settings = a.settings.auth
            forged = TokenAuthority("another-secret-0123456789abcdef-0123", settings.issuer,
                                    settings.audience).mint(room=ROOM, role="edge",
                                                            name="edge x", ttl=60)
            assert (await raw_join(a, forged, edge=True))["code"] == "unauthorized"
            # An edge joins only the room's origin, and only a room open there.
            assert (await raw_join(b, edge_token, edge=True))["code"] == "not-found"
            other = a.authority.mint(room="bed-2", role="edge", name="edge x", ttl=60)
            assert (await raw_join(a, other, edge=True))["code"] == "not-found"
            # A real edge token joins as a service: no seat.
            joined = await raw_join(a, edge_token, edge=True)
            assert joined["type"] == "joined" and joined["participant"]["role"] == "edge"
            # People who may publish are redirected to the origin; with cascade off,
            # viewers are too.
            for node, role in ((b, "expert"), (b, "ward"), (plain, "observer")):
                reply = await raw_join(node, node.token(role))
                assert reply == {"type": "redirect", "id": 1, "room": ROOM,
                                 "url": a.base_url}, (role, reply)
            assert b.app[MEDIA_SERVER].directory.local_names() == ()
        finally:
            await ward.close()


async def test_when_the_origin_dies_the_edges_viewers_are_told_and_the_relay_is_gone(
        redis_prefix: tuple[Redis, str]) -> None:
    _, prefix = redis_prefix
    variables = cluster_variables(SHARED_REDIS, prefix)
    async with nodes(prefix, 1) as (b,), killable_node(variables) as (a_url, child):
        ward = SignalingClient(a_url.replace("http", "ws", 1) + "/ws")
        await ward.connect()
        await ward.join(b.token("ward"))  # placed on a, where it joined
        pc, stream = await publish_pattern(ward)
        clients, viewers = await join_viewers([b], stream)
        try:
            await wait_for(lambda: viewers[0].received.video_frames >= 10)
            assert room_of(b).origin is not None
            child.kill()
            closed = await clients[0].next_event("room-closed")
            assert closed["reason"] == "origin-lost"
            await wait_for(lambda: not b.app[MEDIA_SERVER].directory.local_names())
            print(f"the viewer at b decoded {viewers[0].received.video_frames} frames, then "
                  f"heard {closed}")
            # Joining again at b: `unavailable` while a's record lives (not a redirect to
            # the dead node), then the room is placed anew, on b.
            refusals = 0
            while True:
                try:
                    again = await clients[0].join(b.token("observer"))
                    break
                except SignalingError as exc:
                    assert exc.code == "unavailable", exc
                    refusals += 1
                    await asyncio.sleep(0.2)
            assert clients[0].redirects == [] and again["streams"] == []
            assert room_of(b).origin is None
            print(f"the viewer joined b again after {refusals} `unavailable` replies; the "
                  f"room now lives on b")
        finally:
            await close_all(*viewers, *clients, pc, ward)


async def test_losses_on_the_hop_are_repaired_by_the_edge_nacking_the_origin(
        redis_prefix: tuple[Redis, str]) -> None:
    """The edge's receive path loses 4 % of what the origin sends it (and the first
    retransmission of every third lost packet): the edge NACKs the origin, which answers
    from the buffer of its consumer of the edge, and the viewer at the edge decodes every
    frame in order. Audio crosses the hop too."""
    _, prefix = redis_prefix
    async with nodes(prefix, 2) as (a, b):
        ward = await joined_client(a, "ward")
        pc = RTCPeerConnection()
        pc.addTrack(PatternVideoTrack(320, 240, 30))
        pc.addTrack(ToneAudioTrack(440.0))
        stream = str((await ward.publish(pc))["id"])
        clients, viewers = await join_viewers([b], stream)
        viewer = viewers[0]
        try:
            await wait_for(lambda: viewer.received.video_frames >= 10)
            relayed = next(p for part in room_of(b).participants.values()
                           for p in part.publications.values())
            assert isinstance(relayed, Publication)
            receiver = next(t.receiver for t in relayed.pc.getTransceivers()
                            if t.kind == "video")
            lossy = LossyTap(receiver, rate=0.04)
            at_b = producer_of(b)
            [edge] = edges_at(a)
            [hop] = [c for s in edge.subscriptions.values() if isinstance(s, Subscription)
                     for c in s.consumers if c.kind == "video"]
            frames_before = viewer.received.video_frames
            await wait_for(lambda: len(lossy.dropped) >= 12
                           and viewer.received.video_frames > frames_before + 90, 60)
            await asyncio.sleep(1.5)  # the last holes are recovered or given up
            stats = producer_stats(at_b)
            lost = len(lossy.dropped)
            print(f"hop loss: {lost} media + {lossy.dropped_rtx} RTX dropped of "
                  f"{at_b.packets_received} received at b; b sent {stats.nacks_sent} NACKs, "
                  f"a answered {hop.retransmissions} from its buffer, b recovered "
                  f"{stats.packets_recovered}, gave up {stats.packets_given_up}")
            assert stats.nacks_sent >= lost and hop.nacks_received >= lost
            assert hop.retransmissions >= lost - 1
            assert stats.packets_recovered >= lost - 1 and stats.packets_given_up <= 1
            numbers = viewer.received.frame_numbers[frames_before:]
            skips = sum(1 for x, y in itertools.pairwise(numbers) if y != x + 1)
            assert skips <= 2, numbers
            assert viewer.received.mean_difference < 12
            frequency = viewer.received.audio_frequency()
            print(f"viewer at b: {len(numbers)} frames in this window, {skips} skips; "
                  f"audio at {frequency:.0f} Hz")
            assert abs(frequency - 440.0) < 15
        finally:
            await close_all(*viewers, *clients, pc, ward)


async def test_the_edge_refreshes_its_token_before_the_origin_would_end_it(
        redis_prefix: tuple[Redis, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With a 3 s edge token replaced 2 s before its end, the edge is still in the
    origin's room, and its viewer still decoding, after the first token expired."""
    monkeypatch.setattr(cascade, "TOKEN_TTL", 3)
    monkeypatch.setattr(cascade, "REFRESH_BEFORE", 2.0)
    _, prefix = redis_prefix
    async with nodes(prefix, 2) as (a, b):
        ward = await joined_client(a, "ward")
        pc, stream = await publish_pattern(ward)
        clients, viewers = await join_viewers([b], stream)
        try:
            [edge] = edges_at(a)
            session = edge.member
            assert isinstance(session, SignalingSession) and session.grant is not None
            first_expiry = session.grant.expires_at
            await wait_for(lambda: session.grant is not None
                           and session.grant.expires_at > first_expiry)
            while time.time() < first_expiry + 1:
                await asyncio.sleep(0.2)
            frames = viewers[0].received.video_frames
            await wait_for(lambda: viewers[0].received.video_frames > frames + 10)
            assert [e.id for e in edges_at(a)] == [edge.id]
            print(f"the edge token was replaced: expiry {first_expiry} -> "
                  f"{session.grant.expires_at}")
        finally:
            await close_all(*viewers, *clients, pc, ward)


async def test_a_failed_hop_is_set_up_again_and_the_viewers_subscribe_again(
        redis_prefix: tuple[Redis, str]) -> None:
    """The edge's peer connection of a stream closes under it: the relayed stream ends
    there (its viewer is told), the edge subscribes to the origin again, and the stream
    comes back with its id; the viewer subscribes again and decodes."""
    _, prefix = redis_prefix
    async with nodes(prefix, 2) as (a, b):
        ward = await joined_client(a, "ward")
        pc, stream = await publish_pattern(ward)
        clients, viewers = await join_viewers([b], stream)
        client = clients[0]
        try:
            await wait_for(lambda: viewers[0].received.video_frames >= 10)
            [edge] = edges_at(a)
            [first_hop] = edge.subscriptions
            relayed = next(p for part in room_of(b).participants.values()
                           for p in part.publications.values())
            assert isinstance(relayed, Publication)
            await relayed.pc.close()  # the hop's connection ends at the edge
            ended = await client.next_event("subscription-closed")
            assert ended["stream"] == stream
            added = await client.next_event("track-added")
            assert added["stream"]["id"] == stream
            viewers.append(await watch(client, stream))
            await wait_for(lambda: viewers[-1].received.video_frames >= 10)
            numbers = viewers[-1].received.frame_numbers
            assert numbers == sorted(numbers) and viewers[-1].received.mean_difference < 12
            [second_hop] = edge.subscriptions
            assert second_hop != first_hop and edges_at(a) == [edge]
            print(f"hop {first_hop} ended; the edge set up {second_hop}, the viewer "
                  f"subscribed again and decoded {len(numbers)} frames")
        finally:
            await close_all(*viewers, *clients, pc, ward)


async def test_when_an_edge_dies_its_viewers_come_back_through_another_edge(
        redis_prefix: tuple[Redis, str]) -> None:
    """The viewer's node is an edge (b, a child process); killed outright, its viewer
    reconnects at another node (c), is served there as an edge too, and decodes again."""
    _, prefix = redis_prefix
    variables = {**cluster_variables(SHARED_REDIS, prefix),
                 "HUIZHEN_MEDIA_KEYFRAME_INTERVAL": str(KEYFRAME_INTERVAL)}
    async with nodes(prefix, 2) as (a, c), killable_node(variables) as (b_url, child):
        ward = await joined_client(a, "ward")  # the room's origin is a
        pc, stream = await publish_pattern(ward)
        viewer_client = await joined_at(b_url, a.token("observer"))
        assert viewer_client.redirects == []  # served at b, an edge
        first = await watch(viewer_client, stream)
        things: list[Subscriber | RTCPeerConnection | SignalingClient] = [first, pc, ward]
        try:
            await wait_for(lambda: first.received.video_frames >= 10)
            await wait_for(lambda: len(edges_at(a)) == 1)
            child.kill()  # no goodbye: b's sockets and peer connections just stop
            killed = time.monotonic()
            joined = await rejoin_through(viewer_client, c.ws_url, a.token("observer"))
            assert viewer_client.redirects == [] and [s["id"] for s in joined["streams"]] == [
                stream]
            again = await watch(viewer_client, stream)
            things.append(again)
            await wait_for(lambda: again.received.video_frames >= 10)
            elapsed = time.monotonic() - killed
            check_frames([again], ["c"])
            assert room_of(c).origin is not None  # c relays the room from a
            # a's room forwards to its live edge only: b's edge participant is gone.
            await wait_for(lambda: len(edges_at(a)) == 1, 10)
            print(f"edge b killed; its viewer joined again at c and decoded 10 frames "
                  f"{elapsed:.2f} s later (c relays from a; a's edges: "
                  f"{len(edges_at(a))})")
        finally:
            await close_all(*things, viewer_client)
