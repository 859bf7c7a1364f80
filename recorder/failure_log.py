"""Failures of a recording's file work, logged once per kind and counted after that.

A full disk fails every frame of every track: a traceback per failure wrote megabytes of
logs in under a minute. The first failure of each kind (exception type and errno) gets
one line (a traceback only for an unexpected error, which is a bug to look at); the
rest are counted and summed up once when the recording ends.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from recorder.disk_guard import is_out_of_space


def failure_kind(exc: BaseException) -> str:
    """``OSError[ENOSPC]``, ``FFmpegError[28]``, ``ValueError``: what groups failures."""
    code = getattr(exc, "errno", None)
    name = type(exc).__name__
    return f"{name}[{code}]" if isinstance(code, int) else name


class FailureLog:
    """Used on one thread (a recording's worker)."""

    def __init__(self, logger: logging.Logger, prefix: str,
                 on_out_of_space: Callable[[], None] | None = None) -> None:
        self.counts: Counter[str] = Counter()
        self._logger = logger
        self._prefix = prefix
        self._on_out_of_space = on_out_of_space

    @property
    def total(self) -> int:
        return self.counts.total()

    def failed(self, what: str, exc: BaseException) -> None:
        """Record a failure of ``what`` (e.g. "writing a frame"); logs the first of its kind."""
        kind = failure_kind(exc)
        self.counts[kind] += 1
        out_of_space = is_out_of_space(exc)
        if out_of_space and self._on_out_of_space is not None:
            self._on_out_of_space()
        if self.counts[kind] > 1:
            return
        if out_of_space or isinstance(exc, OSError):
            self._logger.error("[%s] %s failed: %s (later failures of this kind are counted)",
                               self._prefix, what, exc.strerror if isinstance(exc, OSError)
                               and exc.strerror else kind)
        else:
            self._logger.error("[%s] %s failed (later failures of this kind are counted)",
                               self._prefix, what, exc_info=exc)

    def summary(self) -> None:
        """One line with the counts, if anything failed more than once."""
        repeated = {k: n for k, n in self.counts.items() if n > 1}
        if repeated:
            self._logger.warning("[%s] failures: %s", self._prefix,
                                 ", ".join(f"{k} x{n}" for k, n in sorted(repeated.items())))
