"""Remux one track's encoded frames into a WebM/Matroska file with PyAV; nothing is decoded.

Streams are created from codec parameters only (``add_mux_stream``; for Opus a
stream whose parameters carry the OpusHead), so no encoder or decoder is ever
opened: packets go from RTP to the file byte for byte.

Crash safety: Matroska clusters are closed at least every ``cluster_ms`` (and at
video keyframes), every cluster is handed to the OS as soon as it closes
(``flush_packets``), and ``sync()`` fsyncs the file. A ``kill -9`` loses only the
open cluster; what is on disk is a valid Matroska prefix that decoders read, and
``recorder.recovery`` remuxes it into a finished file.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from recorder.errors import UnsupportedCodecError
from recorder.opus import CHANNELS, opus_head

logger = logging.getLogger(__name__)

CLUSTER_MS = 1000


@dataclass(frozen=True)
class ContainerSpec:
    format: str  # FFmpeg muxer name
    extension: str
    mime_type: str
    codec: str  # FFmpeg codec name
    clock_rate: int


CONTAINERS = {
    "VP8": ContainerSpec("webm", ".webm", "video/webm", "vp8", 90000),
    "OPUS": ContainerSpec("webm", ".webm", "audio/webm", "opus", 48000),
    "H264": ContainerSpec("matroska", ".mkv", "video/x-matroska", "h264", 90000),
}


def container_for(codec_name: str) -> ContainerSpec:
    """Where a codec is remuxed to: VP8 and Opus to WebM, H.264 to Matroska."""
    spec = CONTAINERS.get(codec_name.upper())
    if spec is None:
        raise UnsupportedCodecError(f"no remuxing support for {codec_name!r}")
    return spec


def _opus_stream(output: Any, channels: int) -> Any:
    """An Opus stream whose parameters carry an OpusHead; its codec context is never opened.

    ``add_mux_stream`` cannot set extradata, so the stream is copied from a parameter
    template (``add_stream_from_template`` marks its context as initialised, and
    ``start_encoding`` then never opens it). The template lives in a throwaway,
    never-written container.
    """
    scratch = av.open(io.BytesIO(), "w", format="webm")
    try:
        template = scratch.add_stream("libopus", 48000)
        stream = output.add_stream_from_template(template, opaque=True)
    finally:
        scratch.close()
    context = stream.codec_context
    context.extradata = opus_head(channels)
    context.sample_rate = 48000
    context.layout = "stereo" if channels == 2 else "mono"
    return stream


class TrackWriter:
    def __init__(self, path: Path, codec_name: str, *, width: int = 0, height: int = 0,
                 channels: int = CHANNELS, cluster_ms: int = CLUSTER_MS) -> None:
        self.path = path
        self.spec = container_for(codec_name)
        self.time_base = Fraction(1, self.spec.clock_rate)
        self.frames = 0
        self.last_pts: int | None = None
        self.end_pts = 0  # pts + duration of the last frame written
        self.closed = False
        options = {"cluster_time_limit": str(cluster_ms), "flush_packets": "1"}
        self._output: Any = av.open(str(path), "w", format=self.spec.format,
                                    container_options=options)
        try:
            if self.spec.codec == "opus":
                self._stream = _opus_stream(self._output, channels)
            else:
                self._stream = self._output.add_mux_stream(
                    self.spec.codec, width=width, height=height)
            self._stream.time_base = self.time_base
        except BaseException:
            self._output.close()
            raise
        self._sync_fd: int | None = None

    def write(self, data: bytes, pts: int, keyframe: bool, duration: int = 0) -> None:
        """Mux one frame; ``pts`` in clock units from the file's start, never decreasing."""
        if self.closed:
            raise ValueError(f"{self.path.name} is closed")
        if self.last_pts is not None and pts < self.last_pts:
            pts = self.last_pts  # Matroska allows equal, never decreasing timestamps
        packet = av.Packet(data)
        packet.stream = self._stream
        packet.time_base = self.time_base
        packet.pts = packet.dts = pts
        packet.is_keyframe = keyframe
        if duration:
            packet.duration = duration
        self._output.mux(packet)
        self.frames += 1
        self.last_pts = pts
        self.end_pts = max(self.end_pts, pts + duration)

    def sync(self) -> None:
        """Make what the muxer has written durable (fsync through a second descriptor)."""
        if self.closed or not self.frames:
            return
        if self._sync_fd is None:
            self._sync_fd = os.open(self.path, os.O_RDONLY)
        os.fsync(self._sync_fd)

    def codec_opened(self) -> bool:
        """True if a codec was opened for this file's stream (never, by design)."""
        context = self._stream.codec_context
        return context is not None and bool(context.is_open)

    def close(self) -> None:
        """Write the trailer (duration, cues), fsync, and close. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self._output.close()
        finally:
            if self._sync_fd is None and self.path.exists():
                self._sync_fd = os.open(self.path, os.O_RDONLY)
            if self._sync_fd is not None:
                os.fsync(self._sync_fd)
                os.close(self._sync_fd)
                self._sync_fd = None
