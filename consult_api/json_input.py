"""Decode a request body as JSON, refusing what no client of this API sends but what breaks
things further in (pure, no I/O):

- NUL characters and lone surrogates, in strings or keys (PostgreSQL refuses both in text
  and JSON columns; lone surrogates cannot even be encoded as UTF-8);
- nesting deeper than ``MAX_DEPTH`` (recursion in every walker after this one);
- integers beyond ±2^53 (what JavaScript clients represent exactly; also far beyond any
  integer column) and integer literals longer than ``MAX_INT_DIGITS`` digits (converting
  thousands of digits costs time and then raises a bare ValueError);
- NaN, Infinity and floats that overflow to infinity (``1e999``): not JSON, and not storable.

Each refusal is an ``InvalidRequest`` (400, ``invalid-request``) whose message names the rule,
never the value.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from consult_api.errors import InvalidRequest

MAX_DEPTH = 32
MAX_SAFE_INTEGER = 2**53
MAX_INT_DIGITS = 20
_BAD_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


class _Refused(Exception):
    """Raised from the decoder's hooks; turned into InvalidRequest outside the decoder."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused()
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:
        raise _Refused()
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused()
    return value


def _parse_constant(text: str) -> Any:
    raise _Refused()


NUMBERS = (f"numbers must be finite, and integers within ±2^53 (at most {MAX_INT_DIGITS} "
           f"digits)")


def _out_of_range(item: Any) -> bool:
    if isinstance(item, float):
        return not math.isfinite(item)
    return isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_SAFE_INTEGER


def check_value(value: Any, where: str = "the request body") -> None:
    """Refuse NUL characters, lone surrogates and nesting deeper than ``MAX_DEPTH`` anywhere
    in a decoded JSON value (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _BAD_CHARACTERS.search(item):
                raise InvalidRequest(f"{where} must not contain NUL characters or unpaired "
                                     f"UTF-16 surrogates")
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidRequest(f"{where} is nested too deeply (at most {MAX_DEPTH} "
                                     f"levels)")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif _out_of_range(item):
            raise InvalidRequest(f"{where}: {NUMBERS}")


def parse_json(raw: bytes, where: str = "the request body") -> Any:
    """The JSON value of ``raw`` (UTF-8), checked as described above."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest(f"{where} must be JSON in UTF-8") from None
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                           parse_constant=_parse_constant)
    except _Refused:
        raise InvalidRequest(f"{where}: {NUMBERS}") from None
    except RecursionError:
        raise InvalidRequest(f"{where} is nested too deeply (at most {MAX_DEPTH} "
                             f"levels)") from None
    except ValueError:
        raise InvalidRequest(f"{where} must be valid JSON") from None
    check_value(value, where)
    return value


def parse_json_object(raw: bytes, where: str = "the request body") -> dict[str, Any]:
    """Like ``parse_json``, for endpoints that take a JSON object."""
    value = parse_json(raw, where)
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be a JSON object")
    return value
