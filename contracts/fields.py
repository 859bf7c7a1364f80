"""Readers of one JSON field each, for the payloads' ``parse`` (pure, stdlib only).

Every reader takes the decoded JSON object and a key, and either returns the value
with its Python type or raises ``ValueError`` naming the field (prefixed by ``where``,
e.g. ``samples[2].``). Messages never quote the value received: it may be anything.

"Required" means the producer always writes the key (possibly as ``null`` when
``nullable``); an optional key may be absent, and is then ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, TypeGuard

MAX_TEXT = 1024
"""Default longest string (ids, codes, names, roles)."""
MAX_LONG_TEXT = 65536
"""Longest free text (a monitor's alarm text, a textual result)."""
MAX_MAGNITUDE = 2.0**53
"""Largest magnitude of a number: beyond it JSON readers (JavaScript) lose precision."""
MAX_ITEMS = 64
"""Default longest list of strings (e.g. flags)."""
_MISSING = object()


def json_object(data: object, where: str = "") -> Mapping[str, Any]:
    """``data`` as a JSON object (a mapping with string keys)."""
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise ValueError(f"'{where.rstrip('.') or 'payload'}' must be a JSON object")
    return data


def _get(data: Mapping[str, Any], key: str, where: str, required: bool) -> object:
    value = data.get(key, _MISSING)
    if value is _MISSING:
        if required:
            raise ValueError(f"'{where}{key}' is missing")
        return None
    return value


def text(data: Mapping[str, Any], key: str, where: str = "", *,
         max_length: int = MAX_TEXT) -> str:
    """A required non-empty string."""
    value = _get(data, key, where, True)
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{where}{key}' must be a non-empty string")
    if len(value) > max_length:
        raise ValueError(f"'{where}{key}' is longer than {max_length} characters")
    return value


def optional_text(data: Mapping[str, Any], key: str, where: str = "", *,
                  required: bool = True, max_length: int = MAX_TEXT) -> str | None:
    """A string or null (the key itself must be there when ``required``)."""
    value = _get(data, key, where, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"'{where}{key}' must be a string or null")
    if len(value) > max_length:
        raise ValueError(f"'{where}{key}' is longer than {max_length} characters")
    return value


def choice(data: Mapping[str, Any], key: str, choices: Collection[str],
           where: str = "") -> str:
    """One of ``choices``."""
    value = _get(data, key, where, True)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"'{where}{key}' must be one of {', '.join(choices)}")
    return value


def optional_choice(data: Mapping[str, Any], key: str, choices: Collection[str],
                    where: str = "") -> str | None:
    """One of ``choices``, or null."""
    value = _get(data, key, where, True)
    if value is None:
        return None
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"'{where}{key}' must be one of {', '.join(choices)} or null")
    return value


def boolean(data: Mapping[str, Any], key: str, where: str = "") -> bool:
    value = _get(data, key, where, True)
    if not isinstance(value, bool):
        raise ValueError(f"'{where}{key}' must be true or false")
    return value


def is_number(value: object) -> TypeGuard[float]:
    """A JSON number that is finite and within ``MAX_MAGNITUDE`` (booleans are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        return abs(value) <= MAX_MAGNITUDE
    return math.isfinite(value) and abs(value) <= MAX_MAGNITUDE


def number(data: Mapping[str, Any], key: str, where: str = "", *,
           nullable: bool = False) -> float | None:
    """A finite number (an int stays an int, so that it serialises as it came)."""
    value = _get(data, key, where, True)
    if value is None and nullable:
        return None
    if not is_number(value):
        kind = "a finite number" + (" or null" if nullable else "")
        raise ValueError(f"'{where}{key}' must be {kind} of magnitude at most 2^53")
    return value


def numbers(data: Mapping[str, Any], key: str, where: str = "") -> tuple[float, ...]:
    """A required list of finite numbers."""
    value = _get(data, key, where, True)
    if not isinstance(value, list) or not all(map(is_number, value)):
        raise ValueError(f"'{where}{key}' must be a list of finite numbers")
    return tuple(value)


def texts(data: Mapping[str, Any], key: str, where: str = "", *, required: bool = True,
          max_items: int = MAX_ITEMS, max_length: int = MAX_TEXT) -> tuple[str, ...]:
    """A list of strings (an absent optional key is the empty tuple)."""
    value = _get(data, key, where, required)
    if value is None and not required:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"'{where}{key}' must be a list of strings")
    if len(value) > max_items or any(len(v) > max_length for v in value):
        raise ValueError(f"'{where}{key}' must hold at most {max_items} strings of at most "
                         f"{max_length} characters")
    return tuple(value)


def timestamp(data: Mapping[str, Any], key: str, where: str = "") -> datetime:
    """An ISO 8601 date and time with a UTC offset."""
    value = _get(data, key, where, True)
    message = f"'{where}{key}' must be an ISO 8601 time with a UTC offset"
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError(message)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(message) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(message)
    return moment


def iso_time(moment: datetime) -> str:
    """ISO 8601 with milliseconds and the offset the time carries (the wire's format)."""
    return moment.isoformat(timespec="milliseconds")
