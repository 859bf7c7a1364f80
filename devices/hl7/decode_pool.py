"""Decoding large messages away from the event loop: in worker processes (or threads).

A 1 MB waveform message takes python-hl7 about a second to decode. In a thread it
still holds the GIL most of that time, so the event loop (the numeric vitals of every
other bed) waits behind it; a process pool does not share the GIL. ``DecodePool``
runs ``decode_oru`` in ``workers`` processes (spawned: no fork of a threaded
server), or in threads when ``workers`` is 0.

The worker also writes each waveform's values as the JSON text the store keeps
(``Decoded.values_json``): serialising 250,000 samples takes ~40 ms holding the GIL,
which in the server process would stall the event loop and the store's writer.

A worker ends by itself when the server process is gone (even after ``kill -9``):
otherwise it would wait forever on its task queue, which the other workers keep open.

A ``MessageError`` does not survive pickling with its location and code, so a worker
returns it as a ``_Failure`` and the pool raises it again in the caller.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

from .errors import ErrorCode, Location, MessageError, MessageRejected
from .oru import MessageHeader, OruConfig, OruMessage, decode_oru

PARENT_CHECK_INTERVAL = 0.5


@dataclass(frozen=True)
class Decoded:
    message: OruMessage
    values_json: tuple[str | None, ...]
    """Per sample of ``message``: its waveform values as JSON text, or None."""


@dataclass(frozen=True)
class _Failure:
    rejected: bool
    reason: str
    location: Location | None
    code: ErrorCode


def values_json(message: OruMessage) -> tuple[str | None, ...]:
    return tuple(json.dumps(list(s.values)) if s.values is not None else None
                 for s in message.samples)


def _decode(payload: bytes, config: OruConfig, header: MessageHeader) -> Decoded | _Failure:
    try:
        message = decode_oru(payload, config, header)
        return Decoded(message, values_json(message))
    except MessageError as error:
        return _Failure(isinstance(error, MessageRejected), error.reason, error.location,
                        error.code)


class DecodePool:
    """``await pool.decode(payload, config, header)``: ``decode_oru`` in a worker."""

    def __init__(self, workers: int = 2) -> None:
        if workers < 0:
            raise ValueError(f"decode workers must be 0 (threads) or more, got {workers}")
        self.workers = workers
        self._executor: Executor | None = None

    def _pool(self) -> Executor:
        if self._executor is None:
            if self.workers == 0:
                self._executor = ThreadPoolExecutor(2, thread_name_prefix="hl7-decode")
            else:
                self._executor = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_exit_with_parent, initargs=(os.getpid(),))
        return self._executor

    async def start(self) -> None:
        """Start the workers now (a spawned process needs ~0.3 s to be ready)."""
        if self.workers:
            await asyncio.get_running_loop().run_in_executor(self._pool(), _warm_up)

    async def decode(self, payload: bytes, config: OruConfig,
                     header: MessageHeader) -> Decoded:
        result = await asyncio.get_running_loop().run_in_executor(
            self._pool(), _decode, payload, config, header)
        if isinstance(result, _Failure):
            kind = MessageRejected if result.rejected else MessageError
            raise kind(result.reason, location=result.location, code=result.code)
        return result

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def _exit_with_parent(parent: int) -> None:
    """In a worker: a thread that ends the process once ``parent`` is no longer its parent."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_INTERVAL)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _warm_up() -> None:
    """Run in a worker: imports are done once ``start`` returns."""
