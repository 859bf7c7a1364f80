"""The message catalogue shared by the pages and the server (web_client/i18n/*.json).

One catalogue for both: pages load it in the browser (web_client/i18n.js) and the server
reads the same files for what it draws or sends itself (teaching-video labels,
notifications), so a string is translated once and checked once (tests/test_catalogue.py).
Each entry holds both languages side by side: ``{"key": {"zh-CN": "...", "en": "..."}}``.

It lives in ``contracts`` (not in the composition root) because the records service reads it
too, for the audit export's column names, and nothing may import ``huizhen``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
CATALOGUE_DIR = Path(__file__).resolve().parent.parent / "web_client" / "i18n"


class Catalogue:
    """Every entry of every area, looked up by key and language."""

    def __init__(self, entries: Mapping[str, Mapping[str, str]]) -> None:
        self._entries = dict(entries)

    @classmethod
    def load(cls, directory: Path = CATALOGUE_DIR) -> Catalogue:
        index = json.loads((directory / "index.json").read_text(encoding="utf-8"))
        entries: dict[str, Mapping[str, str]] = {}
        for area in index["areas"]:
            entries.update(json.loads((directory / f"{area}.json").read_text(encoding="utf-8")))
        return cls(entries)

    def keys(self) -> Iterable[str]:
        return self._entries.keys()

    def entry(self, key: str) -> Mapping[str, str]:
        return self._entries[key]

    def text(self, key: str, language: str = DEFAULT_LANGUAGE, **params: object) -> str:
        """The text for ``key`` (KeyError if the catalogue lacks it), ``{name}`` filled in."""
        entry = self._entries[key]
        text = entry.get(language) or entry[DEFAULT_LANGUAGE]
        for name, value in params.items():
            text = text.replace("{" + name + "}", str(value))
        return text

    def labels(self, prefix: str, language: str = DEFAULT_LANGUAGE) -> dict[str, str]:
        """Every entry under ``prefix.`` in one language, keyed by the rest of the key."""
        return {key[len(prefix) + 1:]: self.text(key, language)
                for key in self._entries if key.startswith(prefix + ".")}


def negotiate(accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """The best of LANGUAGES for an Accept-Language header (q-values honoured)."""
    choices: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        lower = tag.strip().lower()
        language = "zh-CN" if lower.startswith("zh") else "en" if lower.startswith("en") else None
        if language is not None and quality > 0:
            choices.append((-quality, position, language))
    return min(choices)[2] if choices else default
