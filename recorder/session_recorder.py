"""SessionRecorder: the recorder participant of one room.

It joins the room as a service participant ("recorder"), reads every producer of
every stream through ``Room.attach`` like any other downstream (streams present at
the start and those added later), and writes one file per track plus the session
timeline. The event loop only enqueues; all file work happens on the recording's
worker thread. When the room closes (or ``stop()``), the files are finished and
``manifest.json`` written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from contracts.alarms import AlarmEvent
from contracts.patient_change import PatientChanged
from contracts.payload import Payload
from contracts.ptz import PtzCommandRecord, PtzState
from contracts.roles import RECORDER_ROLE
from contracts.vitals import VitalsEvent
from mediaserver.downstream import DownstreamStats
from mediaserver.errors import ClosedError, NotFoundError
from mediaserver.events import (
    AppEvent,
    ParticipantJoined,
    ParticipantLeft,
    RoomClosed,
    RoomEvent,
    StreamAdded,
    StreamInfo,
)
from recorder.errors import RecorderError, UnsupportedCodecError
from recorder.failure_log import FailureLog
from recorder.manifest import (
    STATE_FILE,
    TRACKS_DIR,
    FileEntry,
    Manifest,
    TrackEntry,
    file_digest,
    iso_utc,
    write_json_atomic,
)
from recorder.opus import CHANNELS
from recorder.timeline import TIMELINE_FILE, TimelineWriter, wall_ms
from recorder.track_recorder import (
    BATCH_PACKETS,
    BATCH_SECONDS,
    MAX_QUEUED_BATCHES,
    TrackRecorder,
    TrackSpec,
    TrackSummary,
    WriteCounters,
)
from recorder.track_recorder import Packet as RecordedPacket
from recorder.track_writer import container_for
from recorder.worker import RecordingWorker

if TYPE_CHECKING:
    from aiortc.rtp import RtpPacket

    from mediaserver.codecs import PacketFlags
    from mediaserver.downstream import Upstream
    from mediaserver.participant import Participant
    from mediaserver.room import AttachedTrack, Room

logger = logging.getLogger(__name__)

RECORDER_NAME = "recorder"
RECORDED_APP_EVENTS: Mapping[str, type[Payload]] = MappingProxyType({
    payload.KIND: payload
    for payload in (VitalsEvent, PtzState, PtzCommandRecord, AlarmEvent, PatientChanged)})
"""Application events kept in the timeline, each read with its contract: the record
holds the contract's ``timeline_view()``, so a field the contract does not know (a
staff name added to a body one day) never reaches a recording."""


def new_recording_id(room_name: str, now: float) -> str:
    """``20250102T030405Z-<room slug>-<random>``: sortable, unique, one safe path component."""
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in room_name)[:40].strip("-")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{stamp}-{slug or 'room'}-{secrets.token_hex(3)}"


class _ProducerSink:
    """The ``Downstream`` reading one producer: copies what the recording needs and
    hands it to the worker in batches. The track ends once, when the producer closes
    (or the session ends first).

    Packets are batched because a queue put per packet wakes the worker thread per
    packet: that hand-off (about 70 µs of a core with the GIL passed back and forth)
    cost several times the recording work itself. A batch goes when it spans
    ``BATCH_SECONDS`` of arrivals or holds ``BATCH_PACKETS``, before a sender report
    (order is kept), and when the track ends. A batch the worker cannot take is
    dropped whole: lost packets, so the video waits for the next keyframe."""

    __slots__ = ("_batch", "_batch_start", "_recorder", "_upstream", "_worker", "closed",
                 "packets", "session")

    def __init__(self, session: SessionRecorder, upstream: Upstream,
                 recorder: TrackRecorder, worker: RecordingWorker) -> None:
        self.session = session
        self._upstream = upstream
        self._recorder = recorder
        self._worker = worker
        self._batch: list[RecordedPacket] = []
        self._batch_start = 0.0
        self.closed = False
        self.packets = 0

    @property
    def id(self) -> str:
        return f"{self.session.id}/{self._recorder.spec.id}"

    @property
    def track_id(self) -> str:
        return self._recorder.spec.id

    def write(self, packet: RtpPacket, flags: PacketFlags) -> bool:
        if self.closed:
            return False
        arrival = time.time()
        batch = self._batch
        if not batch:
            self._batch_start = arrival
        batch.append((packet.sequence_number, packet.timestamp, bool(packet.marker),
                      packet.payload, arrival))
        if len(batch) >= BATCH_PACKETS or arrival - self._batch_start >= BATCH_SECONDS:
            self.flush()
        return True

    def flush(self) -> None:
        """Queue the packets gathered so far on the worker."""
        batch = self._batch
        if batch:
            self._batch = []
            if self._worker.offer(self._recorder.packets, batch):
                self.packets += len(batch)

    def sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        if not self.closed:
            self.flush()
            self._worker.submit(self._recorder.sender_report, ntp_timestamp, rtp_timestamp)

    def producer_closed(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True
            self.session._track_ended(self.track_id)

    def close(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True
            self._upstream.remove_downstream(self)

    reads_flags = False  # the depacketizer finds keyframes itself

    def stats(self) -> DownstreamStats:
        return DownstreamStats(self.id, "recorder", packets_sent=self.packets, started=True)


class SessionRecorder:
    """Records one room into ``<recordings_dir>/<recording id>/``.

    A ``RoomMember`` of its room, as a service: it does not keep the room open.
    """

    service = True

    def __init__(self, room: Room, recordings_dir: Path | str, *,
                 recording_id: str | None = None, sync_interval: float = 1.0,
                 clock: Callable[[], float] = time.time,
                 on_finished: Callable[[SessionRecorder], None] | None = None,
                 counters: WriteCounters | None = None,
                 on_out_of_space: Callable[[], None] | None = None) -> None:
        self.room = room
        self._clock = clock
        self.id = recording_id or new_recording_id(room.name, clock())
        self.path = Path(recordings_dir) / self.id
        self.participant: Participant | None = None
        self.manifest: Manifest | None = None
        self.start_ms = 0
        self._sync_interval = sync_interval
        self._on_finished = on_finished
        self._loop: asyncio.AbstractEventLoop | None = None
        self._roles: dict[str, str] = {}
        self._sinks: dict[str, _ProducerSink] = {}
        self._counters = counters  # frames/bytes muxed, shared by the node's recordings
        self._finishing = False
        # Application events left out of the timeline because their body did not parse.
        self.skipped_events = 0
        self._on_out_of_space = on_out_of_space  # called on the loop, after ENOSPC/EDQUOT
        self.failures = FailureLog(logger, self.id, self._out_of_space_on_worker)
        self._worker = RecordingWorker(self.id, self._idle, failures=self.failures,
                                       max_queue=MAX_QUEUED_BATCHES)
        self._result: concurrent.futures.Future[Manifest] = concurrent.futures.Future()
        # Worker-thread state.
        self._timeline: TimelineWriter | None = None
        self._tracks: dict[str, TrackRecorder] = {}
        self._summaries: list[TrackSummary] = []
        self._next_sync = 0.0

    @property
    def finishing(self) -> bool:
        return self._finishing

    @property
    def finished(self) -> bool:
        return self._result.done()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Join the room and start recording everything in it. Raises ClosedError if the
        room is closed."""
        if self.participant is not None or self._finishing:
            raise RecorderError("this session recorder was already started")
        self._loop = asyncio.get_running_loop()
        self.start_ms = wall_ms(self._clock())
        self.participant = self.room.join(RECORDER_NAME, RECORDER_ROLE, self)
        self._worker.start()
        self._worker.submit(self._open)
        for participant in list(self.room.participants.values()):
            if participant is not self.participant:
                self._roles[participant.id] = participant.role
                self._timeline_event({"kind": "join", "t": self.start_ms,
                                      "participant": participant.id,
                                      "role": participant.role, "present": True})
        for stream in self.room.streams():
            self._attach(stream)
        logger.info("[%s] recording room to %s", self.id, self.path)

    async def stop(self, reason: str = "stopped", status: str = "complete") -> Manifest:
        """Leave the room, finish every file and write the manifest (idempotent).

        ``status`` "stopped" (with a ``reason`` such as "disk-full") says the recording
        ended before its room did."""
        if self.participant is None:
            raise RecorderError("this session recorder was never started")
        if not self._finishing:
            participant = self.participant
            self._finish(reason, status)
            if not self.room.closed:
                self.room.leave(participant)
        return await self.wait_finished()

    async def wait_finished(self) -> Manifest:
        """The manifest, once the session has ended (room closed or ``stop()``)."""
        return await asyncio.wrap_future(self._result)

    # ----------------------------------------------------------------- room events (loop)

    def _now_ms(self) -> int:
        return wall_ms(self._clock())

    def on_room_event(self, event: RoomEvent) -> None:
        """What the room tells its members (``RoomMember``)."""
        self._on_event(event)

    def _on_event(self, event: RoomEvent) -> None:
        if self._finishing:
            return
        if isinstance(event, AppEvent):
            self._app_event(event)
        elif isinstance(event, ParticipantJoined):
            info = event.participant
            self._roles[info.id] = info.role
            self._timeline_event({"kind": "join", "t": self._now_ms(), "participant": info.id,
                                  "role": info.role})
        elif isinstance(event, ParticipantLeft):
            self._timeline_event({"kind": "leave", "t": self._now_ms(),
                                  "participant": event.participant_id,
                                  "role": self._roles.get(event.participant_id, "")})
        elif isinstance(event, StreamAdded):
            self._attach(event.stream)
        elif isinstance(event, RoomClosed):
            self._finish("room-closed")

    def _app_event(self, event: AppEvent) -> None:
        contract = RECORDED_APP_EVENTS.get(event.kind)
        if contract is None:
            return
        try:
            payload = contract.parse(event.body)
        except ValueError as exc:  # the message names the field, never a value
            self.skipped_events += 1
            logger.warning("[%s] %s event not recorded: %s", self.id, event.kind, exc)
            return
        self._timeline_event({"kind": event.kind, "t": self._now_ms(),
                              **payload.timeline_view()})

    def _attach(self, stream: StreamInfo) -> None:
        """Read each track of ``stream`` (its end arrives as ``producer_closed``)."""
        assert self.participant is not None
        try:
            self.room.attach(self.participant, stream.id,
                             lambda producer: self._reader(stream, producer))
        except (NotFoundError, ClosedError):
            return

    def _reader(self, stream: StreamInfo, producer: AttachedTrack) -> _ProducerSink | None:
        if producer.id in self._sinks:
            return None
        try:
            container_for(producer.codec_name)
        except UnsupportedCodecError:
            logger.warning("[%s] track %s: %s is not recorded (no remux support)",
                           self.id, producer.id, producer.codec_name)
            return None
        spec = TrackSpec(producer.id, stream.id, stream.participant_id,
                         self._roles.get(stream.participant_id, ""), producer.kind,
                         producer.codec_name)
        recorder = TrackRecorder(spec, self.path, self._timeline_event_on_worker,
                                 self._keyframe_requester(producer), self._counters,
                                 self.failures)
        sink = _ProducerSink(self, producer, recorder, self._worker)
        self._sinks[producer.id] = sink
        self._worker.submit(self._add_track, recorder)
        return sink

    def _keyframe_requester(self, producer: Upstream) -> Callable[[], None]:
        loop = self._loop
        assert loop is not None

        def request() -> None:  # called on the worker thread
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(producer.request_keyframe)

        return request

    def _track_ended(self, track_id: str) -> None:
        sink = self._sinks.pop(track_id, None)
        if sink is not None:
            sink.close()  # detaches from its producer, unless the producer closed it
            self._worker.submit(self._close_track, track_id)

    def _timeline_event(self, event: dict[str, Any]) -> None:
        self._worker.submit(self._timeline_event_on_worker, event)

    def _finish(self, reason: str, status: str = "complete") -> None:
        if self._finishing:
            return
        self._finishing = True
        for track_id in list(self._sinks):
            self._track_ended(track_id)
        self._worker.submit_last(self._write_manifest, reason, self._now_ms(), status)
        loop = self._loop
        if self._on_finished is not None and loop is not None:

            def finished(_: object) -> None:  # called on the worker thread
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._notify_finished)

            self._result.add_done_callback(finished)

    def _notify_finished(self) -> None:
        if self._on_finished is not None:
            try:
                self._on_finished(self)
            except Exception:
                logger.exception("[%s] on_finished callback failed", self.id)

    # ----------------------------------------------------------------- worker thread

    def _state(self, status: str) -> dict[str, Any]:
        return {"version": 1, "id": self.id, "room": self.room.name, "status": status,
                "started_at": iso_utc(self.start_ms), "start_ms": self.start_ms,
                "pid": os.getpid(), "host": socket.gethostname()}

    def _out_of_space_on_worker(self) -> None:
        loop = self._loop
        if self._on_out_of_space is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(self._on_out_of_space)

    def _open(self) -> None:
        (self.path / TRACKS_DIR).mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path / STATE_FILE, self._state("recording"))
        self._timeline = TimelineWriter(self.path / TIMELINE_FILE)
        self._timeline.append({"kind": "recording-start", "t": self.start_ms,
                               "recording": self.id, "room": self.room.name})

    def _timeline_event_on_worker(self, event: dict[str, Any]) -> None:
        if self._timeline is not None:
            self._timeline.append(event)

    def _add_track(self, recorder: TrackRecorder) -> None:
        self._tracks[recorder.spec.id] = recorder

    def _close_track(self, track_id: str) -> None:
        recorder = self._tracks.pop(track_id, None)
        if recorder is not None:
            summary = recorder.close()
            if summary is not None:
                self._summaries.append(summary)

    def _idle(self, now: float) -> None:
        for recorder in self._tracks.values():
            recorder.tick(now)
        if now >= self._next_sync:
            self._next_sync = now + self._sync_interval
            for recorder in self._tracks.values():
                recorder.sync()
            if self._timeline is not None:
                self._timeline.sync()

    def _write_manifest(self, reason: str, end_ms: int, status: str = "complete") -> None:
        try:
            for track_id in list(self._tracks):
                try:
                    self._close_track(track_id)
                except Exception as exc:  # the other tracks and the manifest still matter
                    self.failures.failed(f"closing track {track_id}", exc)
            if self._timeline is None:
                raise RecorderError("the recording directory was never opened")
            try:
                self._timeline.append({"kind": "recording-end", "t": end_ms, "reason": reason})
            except OSError as exc:  # a full disk: the events written so far are kept
                self.failures.failed("ending the timeline", exc)
            try:
                self._timeline.close()
            except OSError as exc:
                self.failures.failed("closing the timeline", exc)
            events = self._timeline.events
            self.failures.summary()
            manifest = build_manifest(self.path, self.id, self.room.name, status, reason,
                                      self.start_ms, end_ms, self._summaries, events)
            manifest.write(self.path)
            write_json_atomic(self.path / STATE_FILE, self._state(status))
        except BaseException as exc:
            logger.error("[%s] could not finish the recording: %s", self.id,
                         exc.strerror if isinstance(exc, OSError) and exc.strerror
                         else type(exc).__name__)
            self._result.set_exception(exc)
            return
        self.manifest = manifest
        logger.info("[%s] recording %s (%s): %d tracks", self.id, status, reason,
                    len(manifest.tracks))
        self._result.set_result(manifest)


def track_entry(directory: Path, summary: TrackSummary) -> TrackEntry:
    size, digest = file_digest(directory / summary.file)
    spec = summary.spec
    audio = spec.kind == "audio"
    return TrackEntry(
        id=spec.id, stream=spec.stream, participant=spec.participant, role=spec.role,
        kind=spec.kind, codec=spec.codec, container=summary.container.format,
        mime_type=summary.container.mime_type, file=summary.file,
        duration=round(summary.duration, 4), bytes=size, sha256=digest,
        start_ms=summary.start_ms, end_ms=summary.end_ms, clock=summary.clock,
        frames=summary.frames, width=summary.width, height=summary.height,
        sample_rate=summary.container.clock_rate if audio else None,
        channels=CHANNELS if audio else None, dropped_frames=summary.dropped_frames,
        lost_packets=summary.lost_packets,
        resolutions=[{"atMs": r.at_ms, "width": r.width, "height": r.height}
                     for r in summary.resolutions] if not audio else None)


def build_manifest(directory: Path, recording_id: str, room: str, status: str, reason: str,
                   start_ms: int, end_ms: int, summaries: list[TrackSummary],
                   events: int) -> Manifest:
    tracks = sorted((track_entry(directory, s) for s in summaries),
                    key=lambda t: (t.start_ms, t.id))
    size, digest = file_digest(directory / TIMELINE_FILE)
    end_ms = max([end_ms, *(t.end_ms for t in tracks)])
    return Manifest(id=recording_id, room=room, status=status, reason=reason,
                    started_at=iso_utc(start_ms), ended_at=iso_utc(end_ms),
                    start_ms=start_ms, end_ms=end_ms, tracks=tracks,
                    timeline=FileEntry(TIMELINE_FILE, size, digest, events))
