"""Sony VISCA over IP (pure): the header, RESET, sequence numbers and resends."""

from __future__ import annotations

import pytest

from devices.visca.codec import CommandSet
from devices.visca.sony_ip import (
    LinkEvent,
    MessageRejected,
    PayloadType,
    ReplyLost,
    ReplyReceived,
    ResetDone,
    ResetFailed,
    SendDatagram,
    SonyIpLink,
    SonyIpMessage,
    payload_type_for,
)

cmd = CommandSet(1)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def datagrams(events: list[LinkEvent]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, SendDatagram)]


def reply(sequence: int, payload: str, kind: PayloadType = PayloadType.REPLY) -> bytes:
    return SonyIpMessage(kind, sequence, h(payload)).serialize()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("02 00 00 01 00 00 00 01 01", SonyIpMessage(PayloadType.CONTROL, 1, b"\x01")),
        ("01 00 00 05 00 00 00 2A 81 01 06 04 FF",
         SonyIpMessage(PayloadType.COMMAND, 42, h("81 01 06 04 FF"))),
        ("01 10 00 05 FF FF FF FF 81 09 04 00 FF",
         SonyIpMessage(PayloadType.INQUIRY, 0xFFFFFFFF, h("81 09 04 00 FF"))),
        ("01 11 00 03 00 00 00 07 90 41 FF", SonyIpMessage(PayloadType.REPLY, 7, h("90 41 FF"))),
        ("01 20 00 01 00 00 00 00 01", SonyIpMessage(PayloadType.DEVICE_SETTING, 0, b"\x01")),
        ("02 01 00 02 00 00 00 09 0F 01",
         SonyIpMessage(PayloadType.CONTROL_REPLY, 9, h("0F 01"))),
        ("02 01 00 02 00 00 00 09 0F 02",
         SonyIpMessage(PayloadType.CONTROL_REPLY, 9, h("0F 02"))),
    ],
)
def test_header_parse_and_serialise(data: str, message: SonyIpMessage) -> None:
    assert SonyIpMessage.parse(h(data)) == message
    assert message.serialize() == h(data)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ("01 00 00 05 00 00 00", "7 bytes is shorter than the 8-byte header plus a payload"),
        ("03 00 00 01 00 00 00 01 01", "unknown VISCA-over-IP payload type 0x0300"),
        ("01 00 00 06 00 00 00 01 81 01 06 04 FF", "says 6 bytes but 5 follow"),
        ("01 00 00 11 00 00 00 01" + " 00" * 17, "length field 17 is outside 1..16"),
        ("01 00 00 00 00 00 00 01 00", "length field 0 is outside 1..16"),
    ],
)
def test_malformed_datagrams(data: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        SonyIpMessage.parse(h(data))


def test_serialise_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="does not fit in 32 bits"):
        SonyIpMessage(PayloadType.COMMAND, 1 << 32, b"\x01").serialize()
    with pytest.raises(ValueError, match="payload of 0 bytes"):
        SonyIpMessage(PayloadType.COMMAND, 1, b"").serialize()
    assert payload_type_for(cmd.power_inquiry()) is PayloadType.INQUIRY
    assert payload_type_for(cmd.home()) is PayloadType.COMMAND
    assert payload_type_for(cmd.cancel(1)) is PayloadType.COMMAND


def test_reset_first_then_numbered_messages() -> None:
    link = SonyIpLink(retransmit_interval=0.1)
    link.reset(0.0)
    assert link.send(cmd.home(), 0.0) is None  # held until the camera acknowledges RESET
    assert datagrams(link.poll(0.0)) == [h("02 00 00 01 00 00 00 01 01")]
    link.datagram_received(reply(1, "01", PayloadType.CONTROL_REPLY), 0.01)
    events = link.poll(0.01)
    assert events == [ResetDone(), SendDatagram(h("01 00 00 05 00 00 00 01 81 01 06 04 FF"))]
    assert link.send(cmd.power_inquiry(), 0.02) == 2
    assert datagrams(link.poll(0.02)) == [h("01 10 00 05 00 00 00 02 81 09 04 00 FF")]
    link.datagram_received(reply(1, "90 41 FF"), 0.03)
    link.datagram_received(reply(2, "90 50 02 FF"), 0.03)
    link.datagram_received(reply(1, "90 51 FF"), 0.04)
    assert link.poll(0.04) == [
        ReplyReceived(h("90 41 FF"), 1), ReplyReceived(h("90 50 02 FF"), 2),
        ReplyReceived(h("90 51 FF"), 1),
    ]
    assert link.next_deadline() is None


def test_resend_with_the_same_sequence_number_then_give_up() -> None:
    link = SonyIpLink(retransmit_interval=0.25, max_retransmits=2)
    link.send(cmd.home(), 0.0)
    first = datagrams(link.poll(0.0))
    assert link.next_deadline() == 0.25
    assert link.poll(0.2) == []
    assert datagrams(link.poll(0.25)) == first
    assert datagrams(link.poll(0.5)) == first
    assert link.poll(0.75) == [] and link.next_deadline() is None  # given up
    assert link.resends == 2


def test_sequence_error_after_a_resend_means_it_already_ran() -> None:
    link = SonyIpLink(retransmit_interval=0.1)
    seq = link.send(cmd.preset_set(3), 0.0)
    assert seq is not None
    link.poll(0.0)
    link.poll(0.1)  # resent
    link.datagram_received(reply(seq, "0F 01", PayloadType.CONTROL_REPLY), 0.12)
    assert link.poll(0.12) == [ReplyLost(seq)]
    assert link.next_deadline() is None


def test_sequence_error_on_a_first_send_resets_and_sends_again() -> None:
    link = SonyIpLink(retransmit_interval=0.1)
    link.send(cmd.home(), 0.0)
    link.send(cmd.zoom_tele(), 0.0)
    link.poll(0.0)
    link.datagram_received(reply(1, "0F 01", PayloadType.CONTROL_REPLY), 0.01)
    assert datagrams(link.poll(0.01)) == [h("02 00 00 01 00 00 00 03 01")]
    assert link.resetting
    link.datagram_received(reply(3, "01", PayloadType.CONTROL_REPLY), 0.02)
    assert datagrams(link.poll(0.02)) == [
        SonyIpMessage(PayloadType.COMMAND, 1, cmd.home()).serialize()
    ]


def test_message_type_error_and_reset_failure() -> None:
    link = SonyIpLink(retransmit_interval=0.25, max_retransmits=1)
    link.send(cmd.home(), 0.0)
    link.poll(0.0)
    link.datagram_received(reply(1, "0F 02", PayloadType.CONTROL_REPLY), 0.01)
    assert link.poll(0.01) == [MessageRejected(1)]
    with pytest.raises(ValueError, match="unknown control reply 0f 03"):
        link.datagram_received(reply(1, "0F 03", PayloadType.CONTROL_REPLY), 0.01)
    with pytest.raises(ValueError, match="payload type COMMAND, not a reply"):
        link.datagram_received(SonyIpMessage(PayloadType.COMMAND, 1, cmd.home()).serialize(), 0)
    link.reset(1.0)
    link.send(cmd.home(), 1.0)
    assert len(datagrams(link.poll(1.0))) == 1
    assert len(datagrams(link.poll(1.25))) == 1
    assert link.poll(1.5) == [ResetFailed()]
    assert not link.resetting and link.next_deadline() is None
