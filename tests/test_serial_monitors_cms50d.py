"""CMS50D+ packets and parser (pure): sync, validation, cadence, pleth batches, finger out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devices.serial_monitors.cms50d import CMS50D, CMS50DPacket, CMS50DParser
from devices.vitals import VitalSample

NOW = datetime(2024, 5, 1, 8, 0, 0, tzinfo=UTC)
PERIOD = timedelta(seconds=1 / 60)


def stream(packets: list[CMS50DPacket]) -> bytes:
    return b"".join(packet.to_bytes() for packet in packets)


def ok(pleth: int = 50, pulse_rate: int = 72, spo2: int = 97) -> CMS50DPacket:
    return CMS50DPacket(pleth=pleth, pulse_rate=pulse_rate, spo2=spo2, signal_strength=8)


FINGER_OUT = CMS50DPacket(pleth=0, pulse_rate=255, spo2=127, finger_out=True)


def of(samples: list[VitalSample], vital: str) -> list[VitalSample]:
    return [s for s in samples if s.vital == vital]


def test_a_packet_decodes_every_field_and_encodes_back():
    raw = bytes([0x80 | 0x40 | 0x20 | 0x05, 0x3C, 0x40 | 0x07, 0x02, 0x61])
    packet = CMS50DPacket.parse(raw)
    assert packet == CMS50DPacket(pleth=60, pulse_rate=130, spo2=97, signal_strength=5,
                                  bargraph=7, beep=True, spo2_dropping=True)
    assert packet.to_bytes() == raw
    assert (packet.spo2_reading, packet.pulse_rate_reading) == (97, 130)
    flags = CMS50DPacket.parse(bytes([0x90, 0x00, 0x30, 0x7F, 0x7F]))
    assert flags.finger_out and flags.probe_error and flags.searching
    assert flags.pulse_rate == 127 and flags.spo2 == 127
    assert (flags.spo2_reading, flags.pulse_rate_reading, flags.reason) == (None, None,
                                                                             "finger-out")
    assert (CMS50D.baudrate, CMS50D.parity, CMS50D.bytesize, CMS50D.stopbits) == (19200, "O", 8, 1)


@pytest.mark.parametrize(("raw", "message"), [
    (b"\x80\x01\x02\x03", "must be 5 bytes, got 4"),
    (b"\x00\x01\x02\x03\x04", "byte 0 lacks the sync bit"),
    (b"\x80\x01\x02\x83\x04", "byte 3 has bit 7 set"),
])
def test_a_malformed_packet_is_refused_precisely(raw: bytes, message: str):
    with pytest.raises(ValueError, match=message):
        CMS50DPacket.parse(raw)


def test_out_of_range_fields_are_refused():
    with pytest.raises(ValueError, match=r"pleth must be in 0\.\.127"):
        CMS50DPacket(pleth=128, pulse_rate=72, spo2=97)
    with pytest.raises(ValueError, match=r"pulse rate must be in 0\.\.255"):
        CMS50DPacket(pleth=1, pulse_rate=256, spo2=97)


def test_numerics_once_a_second_and_pleth_in_batches_of_60():
    parser = CMS50DParser("cms-bed-5")
    packets = [ok(pleth=index % 128, pulse_rate=70 + index // 60) for index in range(150)]
    samples = parser.feed(stream(packets), NOW)
    spo2, pulse_rate, pleth = of(samples, "spo2"), of(samples, "pr"), of(samples, "pleth")
    assert [s.value for s in spo2] == [97.0, 97.0, 97.0]
    assert [s.value for s in pulse_rate] == [70.0, 71.0, 72.0]  # packets 0, 60, 120
    assert spo2[0].code == "150456" and spo2[0].unit == "%" and spo2[0].code_system == "MDC"
    assert pulse_rate[0].code == "149530" and pulse_rate[0].unit == "/min"
    assert [s.values for s in pleth] == [tuple(float(i) for i in range(60)),
                                         tuple(float(i % 128) for i in range(60, 120))]
    first = pleth[0]
    assert (first.code, first.name, first.sample_rate, first.value, first.status) == (
        "150452", "MDC_PULS_OXIM_PLETH", 60.0, None, "R")
    # the last packet read is at NOW; earlier ones 1/60 s apart before it
    assert first.observed_at == NOW - 149 * PERIOD
    assert pleth[1].observed_at == NOW - 89 * PERIOD
    assert spo2[2].observed_at == NOW - 29 * PERIOD
    (tail,) = parser.flush()
    assert tail.values == tuple(float(i % 128) for i in range(120, 150))
    assert parser.flush() == []
    assert parser.discarded_bytes == 0


def test_bytes_split_anywhere_give_the_same_samples():
    packets = [ok(pleth=index % 100, spo2=95 + index // 40) for index in range(130)]
    whole = CMS50DParser("c").feed(stream(packets), NOW + 130 * PERIOD)
    parser = CMS50DParser("c")
    pieces: list[VitalSample] = []
    data = stream(packets)
    for index in range(len(data)):  # in real time: 5 bytes per 1/60 s
        pieces += parser.feed(data[index:index + 1], NOW + (index + 1) * PERIOD / 5)
    assert [(s.vital, s.value, s.values, s.observed_at) for s in pieces] == [
        (s.vital, s.value, s.values, s.observed_at) for s in whole]


def test_resync_after_garbage_and_broken_packets():
    a, b, c = ok(pleth=11), ok(pleth=22), ok(pleth=33)
    data = (b"\x00\x01" + b"\xff\x12"      # noise, and a sync byte that starts no real packet
            + a.to_bytes()
            + b"\x85\x01"                  # a packet cut short
            + b.to_bytes()
            + b"\x7f"                      # a stray byte between packets
            + c.to_bytes())
    parser = CMS50DParser("c")
    samples = parser.feed(data, NOW)
    assert [s.value for s in of(samples, "spo2")] == [97.0]
    assert parser.flush()[0].values == (11.0, 22.0, 33.0)
    assert parser.discarded_bytes == 7


def test_a_packet_with_an_impossible_spo2_is_dropped():
    parser = CMS50DParser("c")
    corrupt = bytes([0x88, 0x10, 0x05, 0x48, 110])
    parser.feed(corrupt + ok(pleth=7).to_bytes(), NOW)
    assert parser.discarded_packets == 1
    assert parser.flush()[0].values == (7.0,)


def test_finger_out_gives_no_numbers_and_no_waveform():
    parser = CMS50DParser("c")
    samples = parser.feed(stream([FINGER_OUT] * 120), NOW)
    assert of(samples, "pleth") == []
    assert len(samples) == 4  # packets 0 and 60: SpO2 and PR each
    for sample in samples:
        assert (sample.value, sample.status, sample.text) == (None, "X", "finger-out")
    assert parser.flush() == []


def test_a_change_of_state_is_reported_at_once():
    parser = CMS50DParser("c")
    packets = [ok(pleth=i) for i in range(10)] + [FINGER_OUT] * 5 + [ok(pleth=90)] * 3
    samples = parser.feed(stream(packets), NOW)
    assert [(s.vital, s.value, s.text) for s in samples] == [
        ("spo2", 97.0, None), ("pr", 72.0, None),                 # packet 0
        ("spo2", None, "finger-out"), ("pr", None, "finger-out"),  # packet 10
        ("pleth", None, None),                                     # the batch cut short
        ("spo2", 97.0, None), ("pr", 72.0, None),                 # packet 15
    ]
    assert samples[4].values == tuple(float(i) for i in range(10))
    assert samples[2].observed_at == NOW - 7 * PERIOD


def test_searching_and_sentinel_values_are_unavailable_readings():
    parser = CMS50DParser("c")
    searching = CMS50DPacket(pleth=40, pulse_rate=72, spo2=97, searching=True)
    spo2, pulse_rate = parser.feed(searching.to_bytes(), NOW)
    assert (spo2.value, spo2.text, pulse_rate.value, pulse_rate.text) == (
        None, "searching", None, "searching")
    spo2, pulse_rate = parser.feed(ok(pulse_rate=255).to_bytes(), NOW + PERIOD)
    assert (spo2.value, spo2.status) == (97.0, "R")
    assert (pulse_rate.value, pulse_rate.status, pulse_rate.text) == (None, "X", "no-reading")
    spo2, _ = parser.feed(ok(spo2=127, pulse_rate=80).to_bytes(), NOW + 2 * PERIOD)
    assert (spo2.value, spo2.text) == (None, "no-reading")


def test_device_clock_smooths_read_jitter_and_reanchors_after_a_gap():
    parser = CMS50DParser("c", pleth_batch=5)
    assert of(parser.feed(stream([ok(pleth=1)] * 3), NOW), "pleth") == []
    # two more, read 40 ms late: still 1/60 s apart on the device's clock
    samples = parser.feed(stream([ok(pleth=2)] * 2), NOW + timedelta(milliseconds=40))
    assert samples == of(samples, "pleth")
    assert samples[0].values == (1.0, 1.0, 1.0, 2.0, 2.0)
    assert samples[0].observed_at == NOW - 2 * PERIOD
    assert parser.feed(stream([ok(pleth=3)] * 2), NOW + 4 * PERIOD) == []
    # five seconds of silence: the partial batch ends, the clock starts over, numerics are due
    later = NOW + timedelta(seconds=5)
    samples = parser.feed(ok(pleth=4).to_bytes(), later)
    assert [(s.vital, s.observed_at) for s in samples] == [
        ("pleth", NOW + 3 * PERIOD), ("spo2", later), ("pr", later)]
    assert samples[0].values == (3.0, 3.0)
    assert parser.flush()[0].observed_at == later


def test_bytes_faster_than_real_time_cut_no_batch():
    parser = CMS50DParser("c")
    samples: list[VitalSample] = []
    for index in range(180):  # three seconds of packets, all read at once
        samples += parser.feed(ok(pleth=index % 100).to_bytes(), NOW)
    assert [len(s.values or ()) for s in of(samples, "pleth")] == [60, 60, 60]
    assert len(of(samples, "spo2")) == 3


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        CMS50DParser("c", pleth_batch=0)
    with pytest.raises(ValueError):
        CMS50DParser("c", sample_rate=0)
