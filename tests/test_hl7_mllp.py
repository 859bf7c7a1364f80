"""The MLLP framer: frames across chunk boundaries, garbage, oversized frames, resync."""

from __future__ import annotations

import pytest

from devices.hl7.mllp import (
    BytesDiscarded,
    Frame,
    FrameTooLarge,
    MLLPFramer,
    encode_frame,
)
from tests.test_hl7_fixtures import GE_SAMPLE, frame

GE = GE_SAMPLE.encode()


def frames(events: list[object]) -> list[bytes]:
    return [e.payload for e in events if isinstance(e, Frame)]


def test_one_frame() -> None:
    assert MLLPFramer().feed(frame(GE)) == [Frame(GE)]


def test_frames_split_at_every_byte_boundary() -> None:
    stream = frame(b"MSH|one\r") + frame(GE) + frame(b"MSH|three\r")
    framer = MLLPFramer()
    events = [e for i in range(len(stream)) for e in framer.feed(stream[i:i + 1])]
    assert frames(events) == [b"MSH|one\r", GE, b"MSH|three\r"]
    assert framer.discarded_bytes == 0 and framer.buffered == 0


def test_several_frames_in_one_chunk() -> None:
    assert frames(MLLPFramer().feed(frame(b"a") + frame(b"b") + frame(b"c"))) == [b"a", b"b", b"c"]


def test_bytes_between_frames_are_discarded_and_counted() -> None:
    framer = MLLPFramer()
    events = framer.feed(b"\r\nnoise" + frame(b"a") + b"xy" + frame(b"b") + b"tail")
    assert events == [BytesDiscarded(7), Frame(b"a"), BytesDiscarded(2), Frame(b"b"),
                      BytesDiscarded(4)]
    assert framer.discarded_bytes == 13


def test_end_byte_without_carriage_return_is_content() -> None:
    assert MLLPFramer().feed(frame(b"a\x1cb")) == [Frame(b"a\x1cb")]


def test_new_start_byte_drops_an_unfinished_frame() -> None:
    framer = MLLPFramer()
    events = framer.feed(b"\x0bMSH|lost" + frame(b"MSH|kept"))
    assert events == [BytesDiscarded(8), Frame(b"MSH|kept")]


def test_oversized_frame_is_dropped_and_the_stream_resynchronises() -> None:
    framer = MLLPFramer(max_message_size=100)
    big = b"MSH|^~\\&|" + b"x" * 300
    events = []
    for i in range(0, len(frame(big)), 37):  # arrives in pieces
        events += framer.feed(frame(big)[i:i + 37])
    events += framer.feed(frame(b"MSH|next"))
    assert [type(e) for e in events] == [FrameTooLarge, Frame]
    too_large = events[0]
    assert isinstance(too_large, FrameTooLarge)
    assert too_large.size > 100 and too_large.head.startswith(b"MSH|^~\\&|")
    assert frames(events) == [b"MSH|next"]
    assert framer.oversized_frames == 1 and framer.buffered == 0


def test_oversized_frame_in_one_chunk() -> None:
    framer = MLLPFramer(max_message_size=10)
    events = framer.feed(frame(b"y" * 11) + frame(b"0123456789"))
    assert [type(e) for e in events] == [FrameTooLarge, Frame]
    assert frames(events) == [b"0123456789"]


def test_oversized_frame_whose_end_is_lost_resyncs_on_the_next_start() -> None:
    framer = MLLPFramer(max_message_size=10)
    events = framer.feed(b"\x0b" + b"z" * 50) + framer.feed(frame(b"ok"))
    assert [type(e) for e in events] == [FrameTooLarge, Frame]
    assert frames(events) == [b"ok"]


def test_memory_is_bounded_while_skipping() -> None:
    framer = MLLPFramer(max_message_size=1000)
    framer.feed(b"\x0b")
    for _ in range(100):
        framer.feed(b"x" * 999)
        assert framer.buffered <= 1000 + 999


def test_encode_frame() -> None:
    assert encode_frame(b"MSH|a\r") == b"\x0bMSH|a\r\x1c\r"
    assert MLLPFramer().feed(encode_frame(GE)) == [Frame(GE)]


@pytest.mark.parametrize("payload", [b"a\x0bb", b"a\x1cb"])
def test_encode_frame_refuses_framing_bytes(payload: bytes) -> None:
    with pytest.raises(ValueError, match="0x"):
        encode_frame(payload)


def test_max_message_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_message_size"):
        MLLPFramer(0)
