"""Header-extension blocks shared by the consumers of one producer (built once per packet).

Subscribers that negotiated the same extension IDs and mid get the same block: the
producer rebuilds each distinct block once per packet (abs-send-time changes every
packet), and every consumer of that kind only reads ``template.current``.
"""

from __future__ import annotations

from mediaserver.rtp_rewriter import ExtensionIds, build_extensions


class ExtensionTemplate:
    """Extension IDs and mid of some consumers; ``current`` is the block for this packet."""

    __slots__ = ("current", "ids", "mid")

    def __init__(self, ids: ExtensionIds, mid: str | None) -> None:
        self.ids = ids
        self.mid = mid.encode() if mid else None
        self.current = b""

    def update(self, abs_send_time: int | None, audio_level: tuple[bool, int] | None) -> None:
        self.current = build_extensions(self.ids, self.mid, abs_send_time, audio_level)


class ExtensionTemplates:
    """The distinct templates of one producer's consumers."""

    __slots__ = ("_by_key", "_list")

    def __init__(self) -> None:
        self._by_key: dict[tuple[ExtensionIds, str | None], ExtensionTemplate] = {}
        self._list: tuple[ExtensionTemplate, ...] = ()

    def template_for(self, ids: ExtensionIds, mid: str | None) -> ExtensionTemplate:
        key = (ids, mid)
        template = self._by_key.get(key)
        if template is None:
            template = self._by_key[key] = ExtensionTemplate(ids, mid)
            self._list = (*self._list, template)
        return template

    def update(self, abs_send_time: int | None, audio_level: tuple[bool, int] | None) -> None:
        """Rebuild every template's block for the packet being forwarded now."""
        for template in self._list:
            template.update(abs_send_time, audio_level)
