"""Run the app on a TCP site until SIGINT/SIGTERM (or a set duration)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from config.listen_check import address


class StartupError(Exception):
    """A service cannot start; the message is one line for people (no traceback)."""


class ListenError(StartupError):
    """The service cannot listen where it was told to; the message is one line for people,
    e.g. ``cannot listen on 127.0.0.1:8080: address already in use``."""


class PathOnlyAccessLogger(AbstractAccessLogger):
    """One access-log line per request: method, path, status, size, duration. Never the
    query string: search filters such as a patient's name travel there (audit search), and
    logs at INFO must not carry patient data."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %s %d %.1fms", request.remote, request.method, request.path,
                         response.status, response.body_length, time * 1000)


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def bind(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) sockets for host:port, one per address the host resolves to,
    as ``loop.create_server`` would make them. Done before anything else starts, so that a
    port in use is reported at once, in one line, and nothing has to be undone."""
    where = address(host, port)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ListenError(f"cannot listen on {where}: {_reason(exc)}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # a family this host does not support (e.g. no IPv6)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(f"cannot listen on {where}: {_reason(exc)}") from None
    if not sockets:
        raise ListenError(f"cannot listen on {where}: no usable address")
    return sockets


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[web.AppRunner]:
    """Serve ``app`` on host:port for the duration of the block, then shut it down.
    Raises ``ListenError`` before the app starts up if host:port cannot be bound."""
    async with serving_on(app, bind(host, port)) as runner:
        yield runner


@contextlib.asynccontextmanager
async def serving_on(app: web.Application,
                     sockets: list[socket.socket]) -> AsyncIterator[web.AppRunner]:
    """Serve ``app`` on sockets from ``bind`` (which it then owns and closes)."""
    runner = web.AppRunner(app, access_log_class=PathOnlyAccessLogger)
    try:
        await runner.setup()
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    try:
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        yield runner
    finally:
        await runner.cleanup()
        for sock in sockets:
            sock.close()


async def wait_for_stop(duration: float = 0.0) -> None:
    """Return on SIGINT or SIGTERM, or after ``duration`` seconds when it is positive."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if duration > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
        else:
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
