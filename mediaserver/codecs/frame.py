"""CodedFrame and FrameBuilder: one whole encoded picture, rebuilt from its RTP payloads.

A builder takes the payloads of one frame in sequence order and hands back what a
decoder or a muxer takes: the VP8 frame without descriptors, or the H.264 access
unit in Annex B. It knows the codec's packetisation (RFC 7741, RFC 6184), nothing
about loss or timing: the caller drops a builder whose packets were lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CodedFrame:
    data: bytes
    keyframe: bool  # decodable on its own
    size: tuple[int, int] | None = None  # width, height (keyframes)


class FrameBuilder(Protocol):
    def add(self, payload: bytes) -> None:
        """Take the next payload; ValueError when it cannot belong to this frame."""

    def finish(self) -> CodedFrame | None:
        """The whole frame, or None when it is unfinished."""
