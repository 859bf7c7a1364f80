"""Opus in a WebM file: the stream layout and the OpusHead header (RFC 7845)."""

from __future__ import annotations

import struct

CLOCK_RATE = 48000
CHANNELS = 2  # WebRTC always signals opus/48000/2; mono packets decode in a stereo stream


def opus_head(channels: int = CHANNELS, pre_skip: int = 0, input_rate: int = CLOCK_RATE) -> bytes:
    """The 19-byte OpusHead identification header (RFC 7845 section 5.1), mapping family 0.

    WebM stores it as the track's CodecPrivate. Pre-skip is 0: RTP packets carry no
    encoder delay information, and 0 keeps audio aligned with its RTP timestamps.
    """
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_rate, 0, 0)
