"""A recording's worker thread: runs queued calls in order, and an idle hook regularly.

The event loop only enqueues (``submit`` is a lock-free queue put); every file
operation of a recording happens here, in order, on one thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from recorder.failure_log import FailureLog

logger = logging.getLogger(__name__)

_STOP = object()


class RecordingWorker:
    def __init__(self, name: str, on_idle: Callable[[float], None],
                 idle_interval: float = 0.1, max_queue: int = 20000,
                 failures: FailureLog | None = None) -> None:
        self.name = name
        # A failed step is logged once per kind and counted after that (a full disk
        # fails every frame).
        self.failures = failures or FailureLog(logger, name)
        self.max_queue = max_queue
        self.overflows = 0
        self._on_idle = on_idle
        self._idle_interval = idle_interval
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"recorder-{name}", daemon=True)
        self._stopping = False
        self.done: concurrent.futures.Future[None] = concurrent.futures.Future()

    def start(self) -> None:
        self._thread.start()

    def offer(self, function: Callable[..., Any], *args: Any) -> bool:
        """Queue a call that may be dropped (a packet): False when the queue is full.

        A dropped packet is a lost packet to the track: its video waits for the
        next keyframe, so a slow disk degrades the recording instead of the memory.
        """
        if self._stopping:
            return False
        if self._queue.qsize() >= self.max_queue:
            self.overflows += 1
            return False
        self._queue.put((function, args))
        return True

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        """Queue a call that is never dropped (control steps, timeline events)."""
        if not self._stopping:
            self._queue.put((function, args))

    def submit_last(self, function: Callable[..., Any], *args: Any) -> None:
        """Queue a final call (never dropped), after which the thread ends."""
        if self._stopping:
            return
        self._stopping = True
        self._queue.put((function, args))
        self._queue.put(_STOP)

    def _run(self) -> None:
        next_idle = time.monotonic() + self._idle_interval
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self._idle_interval)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    break
                if item is not None:
                    function, args = item
                    try:
                        function(*args)
                    except Exception as exc:
                        self.failures.failed("a recording step", exc)
                now = time.monotonic()
                if now >= next_idle:
                    next_idle = now + self._idle_interval
                    try:
                        self._on_idle(time.time())
                    except Exception as exc:
                        self.failures.failed("an idle step", exc)
        finally:
            self.done.set_result(None)
