"""Nonin ASCII parser (pure): lines, line endings, split reads, dashes and garbage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devices.serial_monitors.nonin import NONIN, NoninParser, format_line
from devices.vitals import VitalSample

NOW = datetime(2024, 5, 1, 8, 0, 0, tzinfo=UTC)


def values(samples: list[VitalSample], vital: str) -> list[float | None]:
    return [s.value for s in samples if s.vital == vital]


def test_a_line_becomes_an_spo2_and_a_pulse_rate_sample():
    parser = NoninParser("nonin-bed-3")
    spo2, pulse_rate = parser.feed(b"SPO2=097 HR=072\r\n", NOW)
    assert spo2 == VitalSample(
        device_id="nonin-bed-3", code="150456", code_system="MDC", name="MDC_PULS_OXIM_SAT_O2",
        observed_at=NOW, status="R", value=97.0, unit="%", loinc="59408-5", vital="spo2")
    assert pulse_rate == VitalSample(
        device_id="nonin-bed-3", code="149530", code_system="MDC",
        name="MDC_PULS_OXIM_PULS_RATE", observed_at=NOW, status="R", value=72.0, unit="/min",
        loinc="8889-8", vital="pr")
    assert parser.discarded_lines == 0
    assert (NONIN.baudrate, NONIN.parity, NONIN.bytesize, NONIN.stopbits) == (9600, "N", 8, 1)


def test_dashes_give_unavailable_readings_never_numbers():
    parser = NoninParser("n")
    spo2, pulse_rate = parser.feed(b"SPO2=--- HR=---\r\n", NOW)
    for sample in (spo2, pulse_rate):
        assert sample.value is None and sample.status == "X" and sample.text == "no-reading"
    assert spo2.code == "150456" and pulse_rate.code == "149530"
    spo2, pulse_rate = parser.feed(b"SPO2=--- HR=064\r\n", NOW)
    assert (spo2.value, spo2.status) == (None, "X")
    assert (pulse_rate.value, pulse_rate.status) == (64.0, "R")


@pytest.mark.parametrize("terminator", [b"\r\n", b"\n", b"\r", b"\n\r"])
def test_every_line_ending(terminator: bytes):
    parser = NoninParser("n")
    stream = terminator.join([b"SPO2=097 HR=072", b"SPO2=098 HR=071", b"SPO2=100 HR=118"])
    samples = parser.feed(stream + terminator, NOW)
    assert values(samples, "spo2") == [97.0, 98.0, 100.0]
    assert values(samples, "pr") == [72.0, 71.0, 118.0]
    assert parser.discarded_lines == 0


def test_lines_split_across_reads_anywhere():
    stream = b"SPO2=097 HR=072\r\nSPO2=--- HR=---\r\nSPO2=096 HR=088\r\n"
    parser = NoninParser("n")
    samples: list[VitalSample] = []
    for index in range(len(stream)):
        samples += parser.feed(stream[index:index + 1], NOW + timedelta(milliseconds=index))
    assert values(samples, "spo2") == [97.0, None, 96.0]
    assert values(samples, "pr") == [72.0, None, 88.0]
    # observed at the read that completed the line: its CR, byte 15, 32, 49
    assert [s.observed_at for s in samples[::2]] == [
        NOW + timedelta(milliseconds=ms) for ms in (15, 32, 49)]


@pytest.mark.parametrize("line", [
    b"\x00\xff\xfe\x80",
    b"2=097 HR=072",               # the tail of a line caught when the port opened
    b"SPO2=97 HR=072",             # a dropped digit: 97 or 09?
    b"SPO2=0\x0097 HR=072",        # noise inside a value
    b"SPO2=197 HR=072",            # impossible SpO2
    b"SPO2=097 HR=999",            # impossible pulse rate
    b"SPO2=097",                   # one field missing
    b"SPO2=097 HR=072 SPO2=098",   # a field twice
    b"SPO2=0-7 HR=072",
    b"XSPO2=097 HR=072",
])
def test_a_corrupted_line_is_discarded_never_misread(line: bytes):
    parser = NoninParser("n")
    assert parser.feed(line + b"\r\n", NOW) == []
    assert parser.discarded_lines == 1
    assert values(parser.feed(b"SPO2=098 HR=070\r\n", NOW), "spo2") == [98.0]


def test_noise_around_the_fields_is_tolerated():
    parser = NoninParser("n")
    samples = parser.feed(b"\x00\x13SPO2=095 HR=101 \x7f\r\n", NOW)
    assert values(samples, "spo2") == [95.0] and values(samples, "pr") == [101.0]


def test_an_overlong_line_is_dropped_whole_and_parsing_resumes():
    parser = NoninParser("n", max_line=64)
    assert parser.feed(b"x" * 100, NOW) == []
    assert parser.feed(b"y" * 100 + b" SPO2=097 HR=072\r\n", NOW) == []
    assert parser.discarded_lines == 1
    assert values(parser.feed(b"SPO2=098 HR=070\r\n", NOW), "spo2") == [98.0]


def test_flush_drops_a_partial_line():
    parser = NoninParser("n")
    assert parser.feed(b"SPO2=097 HR=0", NOW) == []
    assert parser.flush() == []
    assert parser.discarded_lines == 1
    assert parser.feed(b"72\r\n", NOW) == []  # not glued to the old partial line
    assert parser.discarded_lines == 2


def test_now_must_be_timezone_aware_and_becomes_utc():
    parser = NoninParser("n")
    with pytest.raises(ValueError, match="timezone-aware"):
        parser.feed(b"SPO2=097 HR=072\r\n", datetime(2024, 5, 1, 8, 0))
    beijing = datetime(2024, 5, 1, 16, 0, tzinfo=timezone(timedelta(hours=8)))
    spo2, _ = parser.feed(b"SPO2=097 HR=072\r\n", beijing)
    assert spo2.observed_at == NOW and spo2.observed_at.tzinfo is UTC


def test_format_line_writes_what_the_parser_reads():
    assert format_line(97, 72) == b"SPO2=097 HR=072\r\n"
    assert format_line(None, None) == b"SPO2=--- HR=---\r\n"
    parser = NoninParser("n")
    assert values(parser.feed(format_line(100, 5), NOW), "pr") == [5.0]
