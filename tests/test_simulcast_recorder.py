"""Readers of a simulcast producer (the recorder) follow its highest active stream.

A simulcast publisher pauses its top stream on a thin uplink; a reader attached with
``Room.attach`` must then get the lower stream from its next keyframe on, as one
continuous stream, and the top stream again once it returns. The unit tests feed two
fake streams with unrelated sequence numbers, timestamps and picture ids; the
integration test records real VP8 from two aiortc encoders at two sizes with the real
recorder and decodes the file with PyAV.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time
from pathlib import Path

import av
import pytest
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import RtpPacket

from huizhen.testpattern import pattern_difference, pattern_frame, read_frame_number
from mediaserver import MediaConfig, Room
from mediaserver.codecs.vp8 import Vp8Descriptor
from mediaserver.consumer import FRAME_TICKS
from mediaserver.layer_follower import (
    STALE_AFTER,
    LayerFollower,
    highest_active,
    switch_advance,
)
from mediaserver.producer import Producer
from mediaserver.transport_factory import StateListener
from recorder.session_recorder import SessionRecorder
from tests.fakes import FakePublication, FakeTransports, Member, QueueReader, sdp

NTP_SECOND = 2**32
NTP0 = 3_900_000_000 * NTP_SECOND  # some wall-clock instant, as NTP
TOP, LOW = 1, 0


# --------------------------------------------------------------------------- a simulcast fake


class SimulcastSource:
    """A simulcast producer's packet source: the test feeds each stream; keyframe
    requests are kept with their layer."""

    def __init__(self) -> None:
        self.producer: Producer | None = None
        self.requests: list[int] = []
        self.wanted: set[int] = set()  # layers asked for a keyframe and not given one yet

    def bind(self, producer: Producer) -> SimulcastSource:
        self.producer = producer
        return self

    async def request_keyframe(self, layer: int) -> None:
        self.requests.append(layer)
        self.wanted.add(layer)

    def feed(self, packet: RtpPacket, layer: int) -> None:
        assert self.producer is not None
        self.producer.on_packet(packet, layer)

    def report(self, layer: int, ntp: int, rtp_timestamp: int) -> None:
        assert self.producer is not None
        self.producer.on_sender_report(0x100 + layer, ntp, rtp_timestamp, layer)


class SimulcastPublication(FakePublication):
    """A publication whose video is a two-stream simulcast producer."""

    async def negotiate(self, offer_sdp: str) -> str:
        source = SimulcastSource()
        self.producers.append(Producer(f"{self.id}-0", "video", "VP8", {},
                                       source.bind,  # type: ignore[arg-type]
                                       self._keyframe_interval, spatial_layers=2))
        self.sources.append(source)  # type: ignore[arg-type]
        await asyncio.sleep(0)
        return sdp("video", setup="active")


class SimulcastTransports(FakeTransports):
    def publication(self, transport_id: str, participant_id: str,
                    on_state: StateListener) -> SimulcastPublication:
        publication = SimulcastPublication(transport_id, participant_id, on_state,
                                           self.keyframe_interval)
        self.publications.append(publication)
        return publication


def vp8(picture_id: int, tl0: int, key: bool, size: tuple[int, int] = (640, 360)) -> bytes:
    """A VP8 payload: 15-bit picture id, TL0PICIDX, TID 0; a keyframe carries its size."""
    descriptor = bytes([0x90, 0xE0, 0x80 | picture_id >> 8, picture_id & 0xFF, tl0, 0x20])
    if key:
        width, height = size
        frame = (b"\x10\x00\x00\x9d\x01\x2a" + width.to_bytes(2, "little")
                 + height.to_bytes(2, "little") + bytes(12))
    else:
        frame = b"\x11" + bytes(20)
    return descriptor + frame


class Stream:
    """One fake simulcast stream: its own sequence numbers, timestamps and picture ids."""

    def __init__(self, layer: int, seq: int, ts: int, picture_id: int, tl0: int,
                 size: tuple[int, int]) -> None:
        self.layer, self.seq, self.ts, self.picture_id, self.tl0 = layer, seq, ts, picture_id, tl0
        self.base_ts = ts
        self.size = size

    def frame(self, index: int, key: bool) -> list[RtpPacket]:
        """Frame ``index`` (3000 ticks apart) in two packets, the second with the marker."""
        ts = (self.base_ts + 3000 * index) & 0xFFFFFFFF
        first = RtpPacket(payload_type=96, sequence_number=(self.seq + 2 * index) & 0xFFFF,
                          timestamp=ts, ssrc=0x100 + self.layer,
                          payload=vp8((self.picture_id + index) & 0x7FFF,
                                      (self.tl0 + index) & 0xFF, key, self.size))
        second = RtpPacket(payload_type=96, sequence_number=(self.seq + 2 * index + 1) & 0xFFFF,
                           timestamp=ts, ssrc=0x100 + self.layer, marker=1,
                           payload=b"\x80\x80" + bytes(
                               [0x80 | ((self.picture_id + index) & 0x7FFF) >> 8,
                                (self.picture_id + index) & 0xFF]) + bytes(20))
        return [first, second]


async def simulcast_room(keyframe_interval: float = 0.02
                         ) -> tuple[Room, SimulcastPublication, SimulcastSource]:
    room = Room("bed", MediaConfig(transports=SimulcastTransports(keyframe_interval)))
    ward = room.join("ward", "ward", Member())
    publication, _ = await room.publish(ward, sdp("video"))
    assert isinstance(publication, SimulcastPublication)
    source = publication.sources[0]
    assert isinstance(source, SimulcastSource)
    return room, publication, source


def feed(source: SimulcastSource, stream: Stream, index: int, key: bool = False) -> None:
    for packet in stream.frame(index, key):
        source.feed(packet, stream.layer)


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


# --------------------------------------------------------------------------- pure parts


def test_highest_active_is_the_highest_stream_seen_lately() -> None:
    assert highest_active([10.0, 10.0, 9.0], 10.2, 0.5) == 1  # the top went quiet
    assert highest_active([10.0, None, 10.1], 10.2, 0.5) == 2
    assert highest_active([None, None], 10.0, 0.5) is None
    assert highest_active([9.0, 9.1], 10.0, 0.5) is None


def test_switch_advance_keeps_real_time_however_long_the_wait() -> None:
    # Both streams' reports: the same instant is 1000 on f and 500_000 on q.
    f_report, q_report = (NTP0, 1000), (NTP0, 500_000)
    # The last f frame sent was at 1000 + 3000; q's keyframe is 1.5 s after f's report.
    advance = switch_advance(4000, f_report, q_report, 500_000 + 135_000, 1.47)
    assert advance == 135_000 - 3000  # 1.4667 s: not capped at one second, not one frame
    # No reports: the arrival times say how long it was.
    assert switch_advance(4000, None, q_report, 600_000, 1.5) == 135_000
    # Reports that disagree with the arrivals by more than a second are not believed.
    assert switch_advance(4000, f_report, (NTP0 - 20 * NTP_SECOND, 500_000), 500_000,
                          0.1) == 9000
    assert switch_advance(4000, None, None, 1, None) == FRAME_TICKS
    # The same capture instant: one tick on, never backwards.
    assert switch_advance(4000, f_report, q_report, 503_000, 0.0) == 1


# --------------------------------------------------------------------------- the follower


async def test_reader_follows_the_top_stream_down_at_the_low_keyframe_and_back_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mediaserver.layer_follower.STALE_AFTER", 0.05)
    room, publication, source = await simulcast_room()
    producer = publication.producers[0]
    recorder = room.join("recorder", "recorder", Member(service=True))
    readers = room.attach(recorder, publication.id,
                          lambda track: QueueReader(f"r-{track.id}", track, reads_flags=True))
    assert len(readers) == 1 and isinstance(readers[0], QueueReader)
    reader = readers[0]
    (follower,) = producer.downstreams
    assert isinstance(follower, LayerFollower) and follower.reader is reader
    await settle()
    assert source.requests == [TOP]  # the reader starts on the top stream's keyframe

    top = Stream(TOP, seq=40_000, ts=1000, picture_id=900, tl0=50, size=(640, 360))
    low = Stream(LOW, seq=7, ts=500_000, picture_id=10, tl0=200, size=(320, 180))
    # One capture clock: f's 1000 and q's 500_000 are the same instant (NTP0).
    source.report(TOP, NTP0, 1000)
    source.report(LOW, NTP0 + NTP_SECOND, 500_000 + 90_000)
    for index in range(5):  # both streams; the reader gets f's frames 0-4
        feed(source, top, index, key=index == 0)
        feed(source, low, index, key=index == 0)

    # The publisher pauses its top stream: only q arrives. After STALE_AFTER without
    # f, the next q frame makes the follower ask q for a keyframe; q's frames before
    # it are not the reader's.
    await asyncio.sleep(0.1)
    feed(source, low, 5)
    await settle()
    assert follower.target_layer == LOW and source.requests[-1] == LOW
    feed(source, low, 6)
    feed(source, low, 7, key=True)  # the publisher answers
    feed(source, low, 8)
    feed(source, low, 9)
    # The reader's own keyframe request (e.g. after a loss) goes to the stream it gets.
    reader._upstream.request_keyframe()
    await asyncio.sleep(0.05)
    assert source.requests[-1] == LOW

    # The top stream returns: back up at its first keyframe.
    feed(source, top, 10)
    await settle()
    assert follower.target_layer == TOP and source.requests[-1] == TOP
    feed(source, low, 10)
    feed(source, top, 11, key=True)
    feed(source, low, 11)
    feed(source, top, 12)
    feed(source, low, 12)

    got: list[tuple[RtpPacket, object]] = []
    while not reader.queue.empty():
        got.append(reader.queue.get_nowait())
    packets = [packet for packet, _ in got]
    frames = [p for p in packets if p.marker == 0]  # each frame's first packet
    # f 0-4, q 7-10, f 11-12, two packets each, nothing else.
    assert len(packets) == 2 * (5 + 4 + 2)
    seqs = [p.sequence_number for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs)), seqs
    assert len({p.ssrc for p in packets}) == 1
    steps = [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(frames)]
    # Real time across both switches (from the streams' sender reports): 3 frames
    # from f4 to q7, 1 frame from q10 to f11.
    assert steps == [3000] * 4 + [9000] + [3000] * 5, steps
    descriptors = [Vp8Descriptor.parse(p.payload) for p in packets]
    pictures = [d.picture_id for d in descriptors[::2]]
    assert pictures == list(range(900, 911)), pictures
    assert [d.picture_id for d in descriptors[1::2]] == pictures  # each frame's 2nd packet
    assert [d.tl0_pic_idx for d in descriptors[::2]] == list(range(50, 61))
    # The reader reads flags: one stream (layer 0), with the size change at each switch.
    sizes = [(flags.size, flags.spatial_id) for packet, flags in got  # type: ignore[attr-defined]
             if packet.marker == 0 and flags.keyframe]  # type: ignore[attr-defined]
    assert sizes == [((640, 360), 0), ((320, 180), 0), ((640, 360), 0)]
    # Sender reports, translated into the reader's one timeline: every (NTP, RTP) pair
    # the reader was given lies on the same line (the A/V sync of the recording).
    source.report(LOW, NTP0 + 2 * NTP_SECOND, 500_000 + 180_000)  # not forwarded: q is idle
    source.report(TOP, NTP0 + 3 * NTP_SECOND, 1000 + 270_000)
    first_ts = frames[0].timestamp  # f's 1000: NTP0
    for ntp, rtp_timestamp in reader.reports:
        seconds = (ntp - NTP0) / NTP_SECOND
        assert (rtp_timestamp - first_ts) & 0xFFFFFFFF == round(seconds * 90_000)
    # At the start (f), at each switch (q, then f again), and f's last one.
    assert [ntp for ntp, _ in reader.reports] == [
        NTP0, NTP0 + NTP_SECOND, NTP0, NTP0 + 3 * NTP_SECOND]
    # The stats show the reader, with its two stream switches.
    (stats,) = [d.stats() for d in producer.downstreams]
    assert stats.id == reader.id and stats.layer_switches == 2

    # The reader closes itself: the follower leaves the producer.
    reader.close()
    assert producer.downstreams == ()
    room.close()


async def test_reader_is_told_when_the_simulcast_track_ends() -> None:
    room, publication, source = await simulcast_room()
    producer = publication.producers[0]
    recorder = room.join("recorder", "recorder", Member(service=True))
    (reader,) = room.attach(recorder, publication.id, lambda t: QueueReader("r", t))
    assert isinstance(reader, QueueReader)
    top = Stream(TOP, seq=1, ts=0, picture_id=1, tl0=1, size=(640, 360))
    feed(source, top, 0, key=True)
    assert reader.queue.qsize() == 2  # no flags read: NO_FLAGS, as from a producer
    producer.close()
    assert reader.ended == 1 and reader.closed
    room.close()


async def test_a_publisher_without_its_top_stream_from_the_start_is_recorded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The top stream never arrives (paused before the recorder came): the low one is
    followed from its keyframe on."""
    monkeypatch.setattr("mediaserver.layer_follower.STALE_AFTER", 0.05)
    room, publication, source = await simulcast_room()
    recorder = room.join("recorder", "recorder", Member(service=True))
    (reader,) = room.attach(recorder, publication.id, lambda t: QueueReader("r", t))
    assert isinstance(reader, QueueReader)
    low = Stream(LOW, seq=65_530, ts=2**32 - 3000, picture_id=0x7FFE, tl0=255, size=(320, 180))
    feed(source, low, 0)
    await settle()
    assert source.requests == [TOP, LOW]
    feed(source, low, 1, key=True)
    feed(source, low, 2)
    feed(source, low, 3)
    packets = reader.packets()
    assert len(packets) == 6
    seqs = [p.sequence_number for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    room.close()


# --------------------------------------------------------------------------- the real recorder

FPS = 30
SIZES = {TOP: (640, 360), LOW: (320, 180)}
TOP_PAUSED = (45, 105)  # frame numbers: the publisher sends no top stream in [45, 105)
FRAMES = 150  # five seconds


def ntp_of(unix: float) -> int:
    return round((unix + 2208988800) * NTP_SECOND)


class Encoders:
    """Two aiortc VP8 encoders, one per stream, each with its own sequence numbers and
    timestamps; a stream asked for a keyframe (``SimulcastSource.wanted``) gets one."""

    def __init__(self, source: SimulcastSource) -> None:
        self.source = source
        self.encoders = {layer: Vp8Encoder() for layer in SIZES}
        self.seq = {TOP: 31_000, LOW: 65_000}
        self.base = {TOP: 4_000_000_000, LOW: 77}

    def send(self, index: int, layer: int, captured: float) -> None:
        width, height = SIZES[layer]
        picture = av.VideoFrame.from_ndarray(pattern_frame(index, width, height), format="bgr24")
        picture.pts = index * 3000
        picture.time_base = fractions.Fraction(1, 90000)
        key = layer in self.source.wanted
        self.source.wanted.discard(layer)
        payloads, _ = self.encoders[layer].encode(picture, force_keyframe=key)
        timestamp = (self.base[layer] + index * 3000) & 0xFFFFFFFF
        if index % 15 == 0:  # each stream's sender report, on one capture clock
            self.source.report(layer, ntp_of(captured), timestamp)
        for number, payload in enumerate(payloads):
            packet = RtpPacket(payload_type=96, marker=int(number == len(payloads) - 1),
                               sequence_number=self.seq[layer], timestamp=timestamp,
                               ssrc=0x100 + layer, payload=payload)
            self.seq[layer] = (self.seq[layer] + 1) & 0xFFFF
            self.source.feed(packet, layer)


def decode_frames(path: Path) -> tuple[tuple[int, int], list[tuple[float, int, int, int, float]]]:
    """The WebM header's picture size, and (media time, frame number, width, height,
    difference to the pattern) of every decoded picture."""
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        header = (stream.codec_context.width, stream.codec_context.height)
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            number = read_frame_number(image)
            out.append((float(frame.time), number, frame.width, frame.height,
                        pattern_difference(image, number)))
    return header, out


async def test_the_recording_has_video_while_the_top_stream_is_paused(tmp_path: Path) -> None:
    room, _, source = await simulcast_room(keyframe_interval=0.5)
    recorder = SessionRecorder(room, tmp_path)
    recorder.start()
    encoders = Encoders(source)
    started = time.time()
    for index in range(FRAMES):
        captured = started + index / FPS
        await asyncio.sleep(max(0.0, captured - time.time()))
        if not TOP_PAUSED[0] <= index < TOP_PAUSED[1]:
            encoders.send(index, TOP, captured)
        encoders.send(index, LOW, captured)
    manifest = await recorder.stop()
    room.close()
    (track,) = manifest.tracks
    header, frames = await asyncio.to_thread(decode_frames, recorder.path / track.file)

    # Every picture decoded, with the right content, in capture order.
    numbers = [number for _, number, *_ in frames]
    assert numbers == sorted(set(numbers)), numbers
    assert max(difference for *_, difference in frames) < 12
    # The size follows the streams: top, low while the top is paused, top again.
    runs = [(size, len(list(group))) for size, group in
            itertools.groupby(frames, key=lambda f: (f[2], f[3]))]
    assert [size for size, _ in runs] == [SIZES[TOP], SIZES[LOW], SIZES[TOP]], runs
    low = [number for _, number, w, h, _ in frames if (w, h) == SIZES[LOW]]
    assert TOP_PAUSED[0] < low[0] and low[-1] >= TOP_PAUSED[1] - 1
    # Media time is capture time across both switches (so audio stays in sync) ...
    first_time, first_number = frames[0][0], frames[0][1]
    for media_time, number, *_ in frames:
        assert abs(media_time - first_time - (number - first_number) / FPS) < 0.002, (
            media_time, number)
    # ... and the only gap is the wait for the low stream's keyframe.
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(frames)]
    longest = max(gaps)
    assert longest <= STALE_AFTER + 0.25, longest
    # The WebM header keeps the first keyframe's size; the keyframes carry the others.
    assert header == SIZES[TOP]
    print(f"\nframes {len(frames)}, sizes {runs}, longest gap {longest:.3f} s, "
          f"header {header}, manifest {track.width}x{track.height}")
