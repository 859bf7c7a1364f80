"""Trickle ICE SDP fragments (``application/trickle-ice-sdpfrag``, RFC 8840), parsed purely.

A WHIP/WHEP client PATCHes one to its session: new candidates (trickle ICE), or a
new ``ice-ufrag``/``ice-pwd`` pair (an ICE restart).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINES = 256
MAX_LINE_LENGTH = 2048


@dataclass(frozen=True)
class TrickledCandidate:
    mid: str | None
    value: str  # what follows ``a=candidate:``, with the ``candidate:`` prefix dropped


@dataclass(frozen=True)
class SdpFragment:
    ufrag: str | None
    pwd: str | None
    candidates: tuple[TrickledCandidate, ...]
    end_of_candidates: bool

    @classmethod
    def parse(cls, text: str) -> SdpFragment:
        """ValueError, with the line number, on anything that is not an SDP fragment."""
        lines = text.replace("\r\n", "\n").split("\n")
        while lines and not lines[-1]:
            lines.pop()
        if len(lines) > MAX_LINES:
            raise ValueError(f"the fragment has more than {MAX_LINES} lines")
        ufrag = pwd = mid = None
        candidates: list[TrickledCandidate] = []
        end = False
        for number, line in enumerate(lines, 1):
            if len(line) > MAX_LINE_LENGTH or len(line) < 2 or line[1] != "=":
                raise ValueError(f"line {number} is not an SDP line")
            if not line.isprintable():
                raise ValueError(f"line {number} holds control characters")
            key, _, value = line[2:].partition(":")
            if line.startswith("m="):
                mid = None
            elif key == "mid" and line.startswith("a="):
                mid = value
            elif key == "ice-ufrag":
                ufrag = value
            elif key == "ice-pwd":
                pwd = value
            elif key == "candidate" and line.startswith("a="):
                candidates.append(TrickledCandidate(mid, value))
            elif key == "end-of-candidates":
                end = True
            # other lines (a=group, a=ice-options, ...) say nothing we act on
        if (ufrag is None) != (pwd is None):
            raise ValueError("an ICE restart needs both a=ice-ufrag and a=ice-pwd")
        return cls(ufrag, pwd, tuple(candidates), end)


def offer_ufrag(sdp: str) -> str | None:
    """The first ``a=ice-ufrag`` of a description (the bundle's, in practice)."""
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line[len("a=ice-ufrag:"):].strip()
    return None
