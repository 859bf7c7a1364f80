"""The shape check every datagram passes before DTLS/SRTP (pure, RFC 7983 demultiplexing)."""

from __future__ import annotations

import struct

import pytest

from mediaserver.datagrams import (
    MAX_DATAGRAM,
    PortCounters,
    is_stun,
    media_datagram_problem,
)


def record(content_type: int, body: bytes, version: int = 0xFEFD, length: int | None = None
           ) -> bytes:
    size = len(body) if length is None else length
    return struct.pack("!BHHHIH", content_type, version, 1, 0, 9, size) + body


RTP = bytes([0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7]) + b"\x00" * 100
RTCP = bytes([0x81, 201, 0, 7]) + b"\x00" * 28


@pytest.mark.parametrize("data", [
    RTP,
    RTCP,
    RTP[:12],
    record(22, b"\x01" * 90),  # a handshake record
    record(22, b"\x01" * 40) + record(20, b"\x01") + record(22, b"\x02" * 60),  # a flight
    record(23, b"\x00" * 48),  # application data (a data channel)
    record(21, b"\x01\x00"),
    bytes([0x2C, 0x12, 0x34, 0x00, 0x05]) + b"\xAA" * 5,  # DTLS 1.3 unified: seq16, length
    bytes([0x20, 0x12]) + b"\xAA" * 30,  # DTLS 1.3 unified: seq8, no length (to the end)
    RTP + b"\x00" * (MAX_DATAGRAM - len(RTP)),  # exactly at the limit
])
def test_media_shaped_datagrams_pass(data: bytes) -> None:
    assert media_datagram_problem(data) is None


@pytest.mark.parametrize(("data", "problem"), [
    (b"", "empty datagram"),
    (RTP + b"\x00" * (MAX_DATAGRAM + 1 - len(RTP)), "longer than 1500 bytes"),
    (b"\x80" * 9000, "longer than 1500 bytes"),
    (RTP[:11], "shorter than an RTP header"),
    (b"\x00\x01\x00\x00" + b"\x00" * 40, "no media protocol starts with byte 0"),
    (bytes([99]) * 30, "no media protocol starts with byte 99"),
    (bytes([200]) * 30, "no media protocol starts with byte 200"),
    (b"\x17\xfe\xfd", "truncated DTLS record header"),
    (record(23, b"\x00" * 10, length=4000), "DTLS record longer than the datagram"),
    (record(22, b"\x01" * 10) + b"\x16\xfe", "truncated DTLS record header"),
    (record(24, b"\x00" * 10), "unknown DTLS content type 24"),
    (record(22, b"\x00" * 10, version=0x0303), "unknown DTLS version 0x0303"),
    (bytes([0x3C, 0x12, 0x34, 0x00, 0x05]) + b"\xAA" * 5, "truncated DTLS 1.3 record"),  # CID
    (bytes([0x2C, 0x12, 0x34, 0x00, 0x50]) + b"\xAA" * 5, "truncated DTLS 1.3 record"),
    (bytes([0x20, 0x12]), "truncated DTLS 1.3 record"),
])
def test_malformed_datagrams_are_refused_with_a_reason(data: bytes, problem: str) -> None:
    found = media_datagram_problem(data)
    assert found is not None and problem in found


def test_application_data_is_refused_where_no_data_channel_exists() -> None:
    data = record(22, b"\x01" * 20) + record(23, b"\x00" * 48)
    assert media_datagram_problem(data, application_data=True) is None
    assert "without a data channel" in str(media_datagram_problem(data, application_data=False))
    assert media_datagram_problem(record(22, b"\x01" * 20), application_data=False) is None


def test_stun_is_recognised_by_its_first_byte() -> None:
    assert is_stun(b"\x00\x01\x00\x00") and is_stun(b"\x01\x01")
    assert not is_stun(b"") and not is_stun(RTP) and not is_stun(record(22, b"x"))


def test_counters_render_for_operators_and_add_up() -> None:
    total = PortCounters()
    total.add(PortCounters(unvalidated=2, malformed=1))
    total.add(PortCounters(malformed=3, unauthenticated=4))
    assert total.as_json() == {"datagramsDroppedUnvalidated": 2, "datagramsDroppedMalformed": 4,
                               "datagramsDroppedUnauthenticated": 4}
