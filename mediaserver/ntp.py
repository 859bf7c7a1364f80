"""Wall-clock time in the two NTP forms RTP uses (RFC 3550 sender reports, abs-send-time)."""

from __future__ import annotations

import time

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


def ntp_now() -> int:
    """Now as a 64-bit NTP timestamp (32.32 fixed-point seconds since 1900)."""
    now = time.time() + NTP_EPOCH_OFFSET
    return (int(now) << 32) | int((now % 1) * (1 << 32))


def abs_send_time_now() -> int:
    """The 24-bit abs-send-time value (6.18 fixed-point seconds of NTP time) for now."""
    return int((time.time() + NTP_EPOCH_OFFSET) * 262144) & 0xFFFFFF
