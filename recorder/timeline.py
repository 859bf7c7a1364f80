"""The session timeline: one msgpack map per event, appended and flushed as it happens.

Every event has ``kind`` and ``t`` (wall-clock Unix time in integer milliseconds,
on the server's clock: the same clock as the manifest's ``start_ms``). A crash
can cut the last event short; ``read_timeline`` stops at the last complete one.

Kinds and their fields (beside ``kind`` and ``t``):

- ``recording-start``: ``recording``, ``room``
- ``join`` / ``leave``: ``participant`` (id), ``role``; ``present: true`` on the joins
  written at start for participants already in the room. Never names.
- ``track-start``: ``track``, ``stream``, ``participant``, ``media`` ("video" |
  "audio"), ``codec``, ``file``, ``clock``; ``t`` is the wall ms of media time 0 of
  the file.
- ``track-sync``: ``track``, ``media_time`` (s), ``clock`` ("sender-report"): the
  publisher's sender report puts media time ``media_time`` of the file at ``t``. The
  first one (``media_time`` 0) replaces the track-start estimate; later ones (every
  ~10 s) record clock drift.
- ``track-end``: ``track``, ``duration`` (s), ``frames``; ``t`` is the wall ms of the
  end of the file's media.
- The room's application events, each the ``timeline_view()`` of its contract in
  ``contracts/`` (which fields a record keeps is decided there: never staff names,
  never the patient's identity; a body that does not parse is not recorded):

  - ``vitals``: ``device``, ``samples`` (as the room received them;
    ``contracts.vitals.VitalsEvent``).
  - ``ptz-state``: ``state``: the room's ptz-state body without ``holderName``
    (``contracts.ptz.PtzState``).
  - ``ptz-command``: ``participant``, ``role``, ``action``, ``command``
    (``contracts.ptz.PtzCommandRecord``).
  - ``alarm``: the room's ``alarm`` event (``id``, ``device``, ``source``, ``code``,
    ``name``: the event's code text, ``vital``, ``priority``, ``state``, ``text``,
    ``flags``, ``observedAt``; ``contracts.alarms.AlarmEvent``).
  - ``patient-changed``: ``device``, ``changedAt`` (``contracts.patient_change``).
- ``recording-end``: ``reason``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

logger = logging.getLogger(__name__)

TIMELINE_FILE = "timeline.msgpack"


def wall_ms(seconds: float) -> int:
    return round(seconds * 1000)


class TimelineWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.events = 0
        self._file: BinaryIO | None = open(path, "ab")  # noqa: SIM115 (closed by close())

    def append(self, event: Mapping[str, Any]) -> None:
        """Write one event and hand it to the OS at once (``sync()`` makes it durable)."""
        if self._file is None:
            raise ValueError("the timeline is closed")
        self._file.write(msgpack.packb(dict(event), default=str, use_bin_type=True))
        self._file.flush()
        self.events += 1

    def sync(self) -> None:
        if self._file is not None:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        file.flush()
        os.fsync(file.fileno())
        file.close()


def read_timeline(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The complete events of a timeline file and the byte length they occupy."""
    data = path.read_bytes() if path.exists() else b""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    events: list[dict[str, Any]] = []
    good = 0
    try:
        for event in unpacker:
            if not isinstance(event, dict):
                logger.warning("%s: a non-map entry at byte %d; stopping there", path.name, good)
                break
            events.append(event)
            good = unpacker.tell()
    except (ValueError, msgpack.UnpackException) as exc:
        logger.warning("%s: unreadable after byte %d (%s)", path.name, good, type(exc).__name__)
    return events, good
