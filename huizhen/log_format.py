"""Log lines as text or as JSON (``[logging] format``), with the standard library only.

JSON: one object per line with ``time`` (UTC, ISO 8601, milliseconds), ``level``,
``logger``, ``message``, ``exception`` when there is one, and every extra field the
caller passed (``logger.info("...", extra={"room": room})``). Non-ASCII text stays as
it is (Chinese messages are readable in the collector); values JSON cannot hold are
written with ``str``. What goes into a log line is the caller's choice: ids, never
patient data (README, production notes).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``[logging] format``: "json" or "text"."""
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def use_log_format(log_format: str, logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (the root logger) the chosen formatter."""
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        handler.setFormatter(formatter(log_format))
