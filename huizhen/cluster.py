"""Several nodes on Redis: the shared room directory, its lifecycle and the drain route.

Wired by the app factory only when ``[cluster] redis_url`` is set; without it the media
server keeps its ``LocalRoomDirectory`` and nothing here runs (the demo needs no Redis).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from config import Settings
from mediaserver.directory import default_node_id
from mediaserver.node_registry import ClusterKeys, NodeRegistry
from mediaserver.redis_directory import RedisRoomDirectory
from signaling.app_keys import HEALTH_CHECKS
from signaling.routes import require_operator

CLUSTER = web.AppKey("cluster_directory", RedisRoomDirectory)
# A Redis call that gets no answer within this many seconds fails (the heartbeat then
# retries; a join is told to try again): a stopped Redis never stalls a node for long.
REDIS_TIMEOUT = 1.0


def redis_client(url: str) -> Redis:
    """A client that fails fast and never retries by itself (the callers decide)."""
    return Redis.from_url(url, socket_timeout=REDIS_TIMEOUT,
                          socket_connect_timeout=REDIS_TIMEOUT, retry=Retry(NoBackoff(), 0))


def cluster_directory(settings: Settings) -> RedisRoomDirectory | None:
    """The shared directory of this node, or None when no Redis is configured."""
    cluster = settings.cluster
    if not cluster.enabled:
        return None
    redis = redis_client(cluster.redis_url)
    registry = NodeRegistry(redis, ClusterKeys(cluster.key_prefix), default_node_id(),
                            settings.node_url, heartbeat=cluster.heartbeat,
                            ttl=cluster.node_ttl)
    return RedisRoomDirectory(redis, registry, busy_cpu=cluster.busy_cpu)


def setup_cluster(app: web.Application, directory: RedisRoomDirectory) -> None:
    """Register the node while the app runs (call before the media server's lifecycle is
    added, so that its rooms have released their placements when the node leaves), the
    health check, and ``POST /api/v1/drain`` (operators: no new rooms on this node)."""
    app[CLUSTER] = directory

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await directory.start()
        yield
        await directory.close()
        await directory.redis.aclose()

    app.cleanup_ctx.append(lifecycle)
    app.setdefault(HEALTH_CHECKS, []).append(lambda: cluster_health(directory))
    app.router.add_post("/api/v1/drain", drain)


def cluster_health(directory: RedisRoomDirectory) -> dict[str, object] | None:
    """A warning in /api/v1/health while the node is not registered, or draining."""
    registry = directory.registry
    if not registry.registered:
        return {"component": "cluster", "status": "warning", "reason": "registry-unreachable",
                "node": registry.node_id}
    if registry.draining:
        return {"component": "cluster", "status": "warning", "reason": "draining",
                "node": registry.node_id}
    return None


async def drain(request: web.Request) -> web.Response:
    """Stop taking new rooms (``{"draining": false}`` in the body takes them again)."""
    require_operator(request)
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be JSON") from None
    draining = body.get("draining", True) if isinstance(body, dict) else True
    if not isinstance(draining, bool):
        raise web.HTTPBadRequest(text="'draining' must be true or false")
    directory = request.app[CLUSTER]
    directory.registry.set_draining(draining)
    return web.json_response({"node": directory.node_id, "draining": draining})
