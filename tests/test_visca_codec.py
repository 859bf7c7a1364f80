"""VISCA packets byte for byte against the table in visca.md; nibbles; replies; framing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devices.visca.codec import (
    BRC_H700,
    Ack,
    AddressSetReply,
    CameraProfile,
    CommandSet,
    Completion,
    Direction,
    ErrorCode,
    ErrorReply,
    IfClearReply,
    PacketKind,
    PanTilt,
    Version,
    ViscaFramer,
    address_set,
    classify,
    decode_nibbles,
    decode_pan_tilt,
    decode_power,
    decode_version,
    decode_zoom_position,
    encode_nibbles,
    encode_pan_tilt,
    if_clear,
    is_pan_tilt_motion,
    parse_broadcast_reply,
    parse_reply,
)
from devices.visca.sony_ip import PayloadType, SonyIpMessage, reset_message

cam1 = CommandSet(1)
cam3 = CommandSet(3)
cam7 = CommandSet(7)
brc = CommandSet(1, BRC_H700)

# (operation, builder, expected bytes as written in visca.md with x = camera address)
TABLE: list[tuple[str, Callable[[], bytes], str]] = [
    ("drive up", lambda: cam1.drive(Direction.UP, 0x05, 0x06), "81 01 06 01 05 06 03 01 FF"),
    ("drive down", lambda: cam1.drive(Direction.DOWN, 0x05, 0x06), "81 01 06 01 05 06 03 02 FF"),
    ("drive left", lambda: cam1.drive(Direction.LEFT, 0x18, 0x17), "81 01 06 01 18 17 01 03 FF"),
    ("drive right", lambda: cam1.drive(Direction.RIGHT, 0x01, 0x01), "81 01 06 01 01 01 02 03 FF"),
    ("drive up-left", lambda: cam1.drive(Direction.UP_LEFT, 2, 3), "81 01 06 01 02 03 01 01 FF"),
    ("drive up-right", lambda: cam1.drive(Direction.UP_RIGHT, 2, 3), "81 01 06 01 02 03 02 01 FF"),
    ("drive down-left", lambda: cam1.drive(Direction.DOWN_LEFT, 2, 3),
     "81 01 06 01 02 03 01 02 FF"),
    ("drive down-right", lambda: cam1.drive(Direction.DOWN_RIGHT, 2, 3),
     "81 01 06 01 02 03 02 02 FF"),
    ("drive on camera 3", lambda: cam3.drive(Direction.UP, 1, 1), "83 01 06 01 01 01 03 01 FF"),
    ("pan-tilt stop", lambda: cam1.pan_tilt_stop(0x05, 0x06), "81 01 06 01 05 06 03 03 FF"),
    ("pan-tilt stop default speeds", cam1.pan_tilt_stop, "81 01 06 01 01 01 03 03 FF"),
    ("absolute, EVI-D70 limits", lambda: cam1.absolute(-0x08DB, 0x04B0, 0x18, 0x17),
     "81 01 06 02 18 17 0F 07 02 05 00 04 0B 00 FF"),
    ("absolute, tilt down limit", lambda: cam1.absolute(0x08DB, -0x0190, 0x01, 0x01),
     "81 01 06 02 01 01 00 08 0D 0B 0F 0E 07 00 FF"),
    ("relative", lambda: cam1.relative(-1, 1, 0x0C, 0x0A),
     "81 01 06 03 0C 0A 0F 0F 0F 0F 00 00 00 01 FF"),
    ("absolute, 5-nibble pan", lambda: brc.absolute(-0x08DB, 0x04B0, 0x10, 0x10),
     "81 01 06 02 10 00 0F 0F 07 02 05 00 04 0B 00 FF"),
    ("relative, 5-nibble pan", lambda: brc.relative(0x12345, -2, 0x18, 0x18),
     "81 01 06 03 18 00 01 02 03 04 05 0F 0F 0F 0E FF"),
    ("home", cam1.home, "81 01 06 04 FF"),
    ("reset", cam1.pan_tilt_reset, "81 01 06 05 FF"),
    ("home on camera 7", cam7.home, "87 01 06 04 FF"),
    ("zoom stop", cam1.zoom_stop, "81 01 04 07 00 FF"),
    ("zoom tele", cam1.zoom_tele, "81 01 04 07 02 FF"),
    ("zoom wide", cam1.zoom_wide, "81 01 04 07 03 FF"),
    ("zoom tele variable p=0", lambda: cam1.zoom_tele(0), "81 01 04 07 20 FF"),
    ("zoom tele variable p=7", lambda: cam1.zoom_tele(7), "81 01 04 07 27 FF"),
    ("zoom wide variable p=0", lambda: cam1.zoom_wide(0), "81 01 04 07 30 FF"),
    ("zoom wide variable p=5", lambda: cam1.zoom_wide(5), "81 01 04 07 35 FF"),
    ("zoom direct", lambda: cam1.zoom_direct(0x4000), "81 01 04 47 04 00 00 00 FF"),
    ("zoom direct 0x1A2B", lambda: cam1.zoom_direct(0x1A2B), "81 01 04 47 01 0A 02 0B FF"),
    ("focus stop", cam1.focus_stop, "81 01 04 08 00 FF"),
    ("focus far", cam1.focus_far, "81 01 04 08 02 FF"),
    ("focus near", cam1.focus_near, "81 01 04 08 03 FF"),
    ("focus direct", lambda: cam1.focus_direct(0xC000), "81 01 04 48 0C 00 00 00 FF"),
    ("auto focus on", cam1.auto_focus, "81 01 04 38 02 FF"),
    ("manual focus", cam1.manual_focus, "81 01 04 38 03 FF"),
    ("one-push AF", cam1.one_push_af, "81 01 04 18 01 FF"),
    ("preset reset 0", lambda: cam1.preset_reset(0), "81 01 04 3F 00 00 FF"),
    ("preset set 5", lambda: cam1.preset_set(5), "81 01 04 3F 01 05 FF"),
    ("preset recall 15", lambda: cam1.preset_recall(15), "81 01 04 3F 02 0F FF"),
    ("power on", cam1.power_on, "81 01 04 00 02 FF"),
    ("power standby", cam1.power_standby, "81 01 04 00 03 FF"),
    ("power inquiry", cam1.power_inquiry, "81 09 04 00 FF"),
    ("power inquiry on camera 3", cam3.power_inquiry, "83 09 04 00 FF"),
    ("zoom position inquiry", cam1.zoom_position_inquiry, "81 09 04 47 FF"),
    ("pan-tilt position inquiry", cam1.pan_tilt_position_inquiry, "81 09 06 12 FF"),
    ("version inquiry", cam1.version_inquiry, "81 09 00 02 FF"),
    ("address set", address_set, "88 30 01 FF"),
    ("IF_Clear", if_clear, "88 01 00 01 FF"),
    ("cancel socket 1", lambda: cam1.cancel(1), "81 21 FF"),
    ("cancel socket 2", lambda: cam1.cancel(2), "81 22 FF"),
    ("cancel on camera 3", lambda: cam3.cancel(2), "83 22 FF"),
    ("Sony IP reset", lambda: reset_message(1).serialize(), "02 00 00 01 00 00 00 01 01"),
    ("Sony IP home",
     lambda: SonyIpMessage(PayloadType.COMMAND, 0x12345678, cam1.home()).serialize(),
     "01 00 00 05 12 34 56 78 81 01 06 04 FF"),
]


@pytest.mark.parametrize(("operation", "build", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_every_operation_byte_for_byte(
    operation: str, build: Callable[[], bytes], expected: str
) -> None:
    assert build().hex(" ").upper() == expected


def test_packet_kinds_and_pan_tilt_motion() -> None:
    assert classify(cam1.home()) is PacketKind.COMMAND
    assert classify(cam1.power_inquiry()) is PacketKind.INQUIRY
    assert classify(cam1.cancel(2)) is PacketKind.CANCEL
    assert classify(address_set()) is PacketKind.BROADCAST
    assert is_pan_tilt_motion(cam1.drive(Direction.UP, 1, 1))
    assert is_pan_tilt_motion(cam1.absolute(0, 0, 1, 1)) and is_pan_tilt_motion(cam1.home())
    assert not is_pan_tilt_motion(cam1.zoom_tele())
    assert not is_pan_tilt_motion(cam1.pan_tilt_position_inquiry())
    with pytest.raises(ValueError, match="neither command"):
        classify(bytes.fromhex("81 05 FF"))
    with pytest.raises(ValueError, match="not a controller header"):
        classify(bytes.fromhex("90 41 FF"))


def test_direction_from_signs() -> None:
    assert Direction.from_signs(1, 0) is Direction.RIGHT
    assert Direction.from_signs(-3, 2) is Direction.UP_LEFT
    assert Direction.from_signs(0, -1) is Direction.DOWN
    assert Direction.from_signs(5, -5) is Direction.DOWN_RIGHT
    assert Direction.from_signs(0, 0) is Direction.STOP


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: cam1.drive(Direction.UP, 0, 1), "pan speed must be 0x01..0x18, got 0"),
        (lambda: cam1.drive(Direction.UP, 0x19, 1), "pan speed must be 0x01..0x18, got 25"),
        (lambda: cam1.drive(Direction.UP, 1, 0x18), "tilt speed must be 0x01..0x17, got 24"),
        (lambda: cam1.absolute(0x8000, 0, 1, 1), "32768 does not fit in 4 signed nibbles"),
        (lambda: cam1.relative(0, -0x8001, 1, 1), "-32769 does not fit in 4 signed nibbles"),
        (lambda: brc.absolute(0x80000, 0, 1, 1), "does not fit in 5 signed nibbles"),
        (lambda: cam1.zoom_tele(8), "zoom speed must be 0x00..0x07, got 8"),
        (lambda: cam1.zoom_wide(-1), "zoom speed must be 0x00..0x07, got -1"),
        (lambda: cam1.zoom_direct(-1), "-1 does not fit in 4 unsigned nibbles"),
        (lambda: cam1.focus_direct(0x10000), "does not fit in 4 unsigned nibbles"),
        (lambda: cam1.preset_set(16), "preset number must be 0x00..0x0F, got 16"),
        (lambda: cam1.preset_recall(-1), "preset number must be"),
        (lambda: cam1.cancel(3), "socket must be 0x01..0x02, got 3"),
        (lambda: CommandSet(0), "camera address must be 1..7, got 0"),
        (lambda: CommandSet(8), "camera address must be 1..7, got 8"),
        (lambda: CameraProfile(pan_nibbles=6), "pan_nibbles must be 4 or 5"),
        (lambda: CameraProfile(preset_count=256), "preset_count must be 1..255"),
        (lambda: CameraProfile(tilt_speed_max=0), "tilt_speed_max must be 0x01..0x7F"),
    ],
)
def test_out_of_range_arguments_raise_before_anything_is_built(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_configurable_speed_ceilings_and_presets() -> None:
    assert brc.drive(Direction.UP, 0x18, 0x18).hex() == "81010601181803" "01ff"
    wide = CommandSet(2, CameraProfile(pan_speed_max=0x20, preset_count=255))
    assert wide.drive(Direction.LEFT, 0x20, 1)[4] == 0x20
    assert wide.preset_recall(254).hex() == "8201043f02feff"


# -- nibbles -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "count", "encoded"),
    [
        (0, 4, "00 00 00 00"),
        (1, 4, "00 00 00 01"),
        (-1, 4, "0F 0F 0F 0F"),
        (0x08DB, 4, "00 08 0D 0B"),
        (-0x08DB, 4, "0F 07 02 05"),  # F725, the EVI-D70's left limit
        (-0x0190, 4, "0F 0E 07 00"),  # FE70, its tilt down limit
        (0x7FFF, 4, "07 0F 0F 0F"),
        (-0x8000, 4, "08 00 00 00"),
        (-0x08DB, 5, "0F 0F 07 02 05"),
        (0x7FFFF, 5, "07 0F 0F 0F 0F"),
        (-0x80000, 5, "08 00 00 00 00"),
    ],
)
def test_signed_nibbles(value: int, count: int, encoded: str) -> None:
    assert encode_nibbles(value, count).hex(" ").upper() == encoded
    assert decode_nibbles(bytes.fromhex(encoded)) == value


@pytest.mark.parametrize("count", [1, 2, 4, 5])
def test_nibble_round_trips_over_the_whole_range(count: int) -> None:
    low, high = -(1 << (4 * count - 1)), (1 << (4 * count - 1)) - 1
    step = max(1, (high - low) // 997)
    for value in [*range(low, high + 1, step), low, high, -1, 0, 1]:
        data = encode_nibbles(value, count)
        assert len(data) == count and all(b <= 0x0F for b in data)
        assert decode_nibbles(data) == value
        unsigned = value - low
        raw = encode_nibbles(unsigned, count, signed=False)
        assert decode_nibbles(raw, signed=False) == unsigned


def test_nibble_errors() -> None:
    with pytest.raises(ValueError, match="byte 2 of a position is 0x10"):
        decode_nibbles(bytes.fromhex("00 00 10 00"))
    with pytest.raises(ValueError, match="no nibbles"):
        decode_nibbles(b"")
    with pytest.raises(ValueError, match="at least 1"):
        encode_nibbles(0, 0)
    assert decode_nibbles(bytes.fromhex("0F 0F 0F 0F"), signed=False) == 0xFFFF


# -- replies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "address", "reply"),
    [
        ("90 41 FF", 1, Ack(1)),
        ("90 42 FF", 1, Ack(2)),
        ("B0 41 FF", 3, Ack(1)),
        ("F0 42 FF", 7, Ack(2)),
        ("90 51 FF", 1, Completion(1)),
        ("90 52 FF", 1, Completion(2)),
        ("90 50 02 FF", 1, Completion(0, b"\x02")),
        ("90 50 00 01 02 03 FF", 1, Completion(0, b"\x00\x01\x02\x03")),
        ("90 60 01 FF", 1, ErrorReply(0, ErrorCode.MESSAGE_LENGTH)),
        ("90 60 02 FF", 1, ErrorReply(0, ErrorCode.SYNTAX)),
        ("90 60 03 FF", 1, ErrorReply(0, ErrorCode.BUFFER_FULL)),
        ("90 61 04 FF", 1, ErrorReply(1, ErrorCode.CANCELLED)),
        ("90 62 05 FF", 1, ErrorReply(2, ErrorCode.NO_SOCKET)),
        ("90 61 41 FF", 1, ErrorReply(1, ErrorCode.NOT_EXECUTABLE)),
        ("90 60 41 FF", 1, ErrorReply(0, ErrorCode.NOT_EXECUTABLE)),
        ("90 60 7E FF", 1, ErrorReply(0, 0x7E)),
    ],
)
def test_reply_parsing(data: str, address: int, reply: object) -> None:
    raw = bytes.fromhex(data)
    parsed = parse_reply(raw, address)
    assert parsed == reply
    assert parsed.serialize(address) == raw


def test_error_codes_are_named() -> None:
    reply = parse_reply(bytes.fromhex("90 61 41 FF"), 1)
    assert isinstance(reply, ErrorReply)
    assert reply.code is ErrorCode.NOT_EXECUTABLE and reply.text == "command not executable"
    assert ErrorReply(0, 0x7E).text == "unknown error 0x7E"
    assert [code.name for code in ErrorCode] == [
        "MESSAGE_LENGTH", "SYNTAX", "BUFFER_FULL", "CANCELLED", "NO_SOCKET", "NOT_EXECUTABLE",
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("A0 41 FF", "reply header 0xA0 is not from camera 1 \\(expected 0x90\\)"),
        ("90 41", "shorter than 3"),
        ("90 41 00", "ends with 0x00, not the FF terminator"),
        ("90 50" + " 00" * 14 + " FF", "17 bytes is longer than 16"),
        ("90 FF 41 FF", "FF at byte 1 before its end"),
        ("10 41 FF", "lacks the high bit"),
        ("90 43 FF", "socket 3"),
        ("90 40 FF", "ACK must be"),
        ("90 41 00 FF", "ACK must be"),
        ("90 51 00 FF", "completion for socket 1 carries 1 bytes"),
        ("90 60 FF", "error reply must be 4 bytes"),
        ("90 61 04 00 FF", "error reply must be 4 bytes"),
        ("90 70 FF", "none of ACK 4z, completion 5z, error 6z"),
    ],
)
def test_malformed_replies_raise_value_error(data: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_reply(bytes.fromhex(data), 1)


def test_broadcast_replies() -> None:
    assert parse_broadcast_reply(bytes.fromhex("88 30 02 FF")) == AddressSetReply(2)
    assert parse_broadcast_reply(bytes.fromhex("88 30 08 FF")).serialize().hex() == "883008ff"
    assert AddressSetReply(4).cameras == 3
    assert parse_broadcast_reply(bytes.fromhex("88 01 00 01 FF")) == IfClearReply()
    for bad, message in [("88 30 09 FF", "next address 9"), ("90 41 FF", "must start with 88"),
                         ("88 02 FF", "unknown broadcast reply")]:
        with pytest.raises(ValueError, match=message):
            parse_broadcast_reply(bytes.fromhex(bad))


def test_inquiry_payloads() -> None:
    assert decode_power(b"\x02") is True and decode_power(b"\x03") is False
    with pytest.raises(ValueError, match="neither on"):
        decode_power(b"\x04")
    with pytest.raises(ValueError, match="carries 2 bytes, expected 1"):
        decode_power(b"\x02\x02")
    assert decode_zoom_position(bytes.fromhex("04 00 00 00")) == 0x4000
    with pytest.raises(ValueError, match="zoom position reply carries 3 bytes"):
        decode_zoom_position(bytes.fromhex("04 00 00"))
    four = bytes.fromhex("0F 07 02 05 00 04 0B 00")
    assert decode_pan_tilt(four) == PanTilt(-0x08DB, 0x04B0)
    assert encode_pan_tilt(PanTilt(-0x08DB, 0x04B0)) == four
    five = bytes.fromhex("00 01 02 03 04 0F 0F 0F 0F")
    assert decode_pan_tilt(five, 5) == PanTilt(0x1234, -1)
    with pytest.raises(ValueError, match="pan-tilt position reply carries 9 bytes, expected 8"):
        decode_pan_tilt(five)
    version = decode_version(bytes.fromhex("00 20 04 02 01 00 02"))
    assert version == Version(vendor=0x0020, model=0x0402, rom=0x0100, sockets=2)
    assert version.serialize().hex() == "00200402010002"


# -- framing -----------------------------------------------------------------------------


def test_framer_reassembles_split_and_joined_packets() -> None:
    framer = ViscaFramer()
    assert framer.feed(bytes.fromhex("90")) == []
    assert framer.feed(bytes.fromhex("41")) == []
    assert framer.feed(bytes.fromhex("FF 90 51 FF 90 50 02")) == [
        bytes.fromhex("90 41 FF"), bytes.fromhex("90 51 FF"),
    ]
    assert framer.feed(bytes.fromhex("FF")) == [bytes.fromhex("90 50 02 FF")]
    assert framer.discarded == 0


def test_framer_skips_garbage_and_resyncs_after_an_overlong_packet() -> None:
    framer = ViscaFramer()
    assert framer.feed(bytes.fromhex("00 12 FF 7F 90 41 FF")) == [bytes.fromhex("90 41 FF")]
    assert framer.discarded == 4
    # 17 bytes without a terminator: dropped up to the next FF, then framing resumes.
    junk = bytes.fromhex("90 50") + bytes(15) + bytes.fromhex("01 02 FF")
    assert framer.feed(junk + bytes.fromhex("90 52 FF")) == [bytes.fromhex("90 52 FF")]
    assert framer.overflows == 1
    longest = bytes.fromhex("81 01 06 02 10 00 0F 0F 07 02 05 00 04 0B 00 FF")
    assert framer.feed(longest) == [longest]  # exactly 16 bytes is fine
