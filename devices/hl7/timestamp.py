"""HL7 v2 date/time (DTM, and the first component of TS): ``YYYYMMDD[HH[MM[SS[.S+]]]][+/-ZZZZ]``.

A value without a zone is in the sender's local time: the caller passes the zone
configured for that device. Errors say what is wrong, never the value.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo

_DTM = re.compile(
    r"(\d{4})(\d{2})(\d{2})"
    r"(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,9}))?)?)?)?"
    r"(?:([+-])(\d{2})(\d{2}))?"
)


def parse_timestamp(text: str, default_zone: tzinfo = UTC) -> datetime:
    """A timezone-aware datetime; ``default_zone`` when the value has no offset."""
    match = _DTM.fullmatch(text.strip())
    if match is None:
        raise ValueError("not a date/time of the form YYYYMMDD[HHMM[SS[.S]]][+/-ZZZZ]")
    year, month, day, hour, minute, second, fraction, sign, zh, zm = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    zone = default_zone
    if sign is not None:
        if int(zh) > 23 or int(zm) > 59:
            raise ValueError("time zone offset out of range")
        offset = timedelta(hours=int(zh), minutes=int(zm))
        zone = timezone(-offset if sign == "-" else offset)
    try:
        return datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                        int(second or 0), micro, tzinfo=zone)
    except ValueError:
        raise ValueError("date/time out of range (month, day, hour, minute or second)") from None


def format_timestamp(moment: datetime, *, milliseconds: bool = False) -> str:
    """``YYYYMMDDHHMMSS[.SSS]+ZZZZ`` of an aware datetime (naive datetimes are refused)."""
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("format_timestamp needs a timezone-aware datetime")
    text = moment.strftime("%Y%m%d%H%M%S")
    if milliseconds:
        text += f".{moment.microsecond // 1000:03d}"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{text}{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
