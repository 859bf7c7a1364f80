"""The expert page opened at a node that does not host the room: the join's `redirect`
moves the page to the room's node by itself (same page and token), where it joins and
decodes the bedside's video published on that node; an observer's page stays at the node
it opened on, which relays the room (a cascade)."""

from __future__ import annotations

import pytest
from playwright.async_api import Page
from redis.asyncio import Redis

from signaling import MEDIA_SERVER
from tests.conftest import RunningServer
from tests.redis_fixtures import SHARED_REDIS
from tests.test_browser import Chromium, chromium, frames_decoded, wait_joined
from tests.test_browser_cluster_failover import quoted
from tests.test_cluster_nodes import (
    ROOM,
    close_all,
    cluster,
    joined_client,
    local_rooms,
    node_id,
    publish_pattern,
)

pytestmark = pytest.mark.browser
__all__ = ["chromium"]  # fixtures used by name below


async def page_at(chromium: Chromium, node: RunningServer, role: str, name: str
                  ) -> tuple[Page, str]:
    """The expert page opened at ``node`` with a token of ``role``, and its address."""
    url = f"{node.base_url}/expert.html#token={node.token(role, name=name)}&lang=en"
    return await chromium.open(role, url), url


async def test_the_expert_page_follows_the_redirect_to_the_rooms_node_and_plays(
        chromium: Chromium, redis_prefix: tuple[Redis, str]) -> None:
    _, prefix = redis_prefix
    async with cluster(SHARED_REDIS, prefix, 2) as (a, b):
        ward = await joined_client(a, "ward")
        pc, _ = await publish_pattern(ward)
        try:
            page, url = await page_at(chromium, b, "expert", "Dr. Li")
            await wait_joined(page, timeout=20)
            # `hops` counted the redirect and is dropped once joined; `entry` stays (where
            # the page goes back to if a dies: tests/test_browser_cluster_failover.py).
            assert page.url == url.replace(b.base_url, a.base_url) + f"&entry={quoted(b.base_url)}"
            frames = await frames_decoded(page, 30, 30, chromium.log)
            assert local_rooms(b) == () and local_rooms(a) == (ROOM,)
            print(f"expert page opened at node b, moved to node a, decoded {frames} frames")
        finally:
            await close_all(pc, ward)


async def test_an_observer_page_opened_at_an_edge_node_stays_there_and_plays(
        chromium: Chromium, redis_prefix: tuple[Redis, str]) -> None:
    """A viewer's page at a node that does not host the room is served there (a cascaded
    room): no redirect, the node relays the bedside's video from the room's node."""
    _, prefix = redis_prefix
    async with cluster(SHARED_REDIS, prefix, 2) as (a, b):
        ward = await joined_client(a, "ward")
        pc, _ = await publish_pattern(ward)
        try:
            page, url = await page_at(chromium, b, "observer", "Trainee Wang")
            await wait_joined(page, timeout=20)
            frames = await frames_decoded(page, 30, 30, chromium.log)
            assert page.url == url  # not moved
            assert local_rooms(b) == (ROOM,) and local_rooms(a) == (ROOM,)
            relayed = b.app[MEDIA_SERVER].directory.local(ROOM)
            assert relayed is not None and relayed.origin == node_id(a)
            print(f"observer page at node b, relayed from node a: {frames} frames decoded")
        finally:
            await close_all(pc, ward)
