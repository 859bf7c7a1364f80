"""Flow control (pure, time passed in): one packet in transit, two sockets, cancel rules,
timeouts and error replies."""

from __future__ import annotations

import pytest

from devices.visca.codec import CommandSet, Direction, ErrorCode, address_set
from devices.visca.errors import CameraOffline, ViscaCommandError, ViscaError, ViscaTimeout
from devices.visca.session import (
    Acked,
    Completed,
    Failed,
    SendPacket,
    SessionEvent,
    ViscaSession,
)

cmd = CommandSet(1)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def sent(events: list[SessionEvent]) -> list[bytes]:
    return [e.packet for e in events if isinstance(e, SendPacket)]


def failure(events: list[SessionEvent], request_id: int) -> ViscaError:
    errors = [e.error for e in events if isinstance(e, Failed) and e.request_id == request_id]
    assert len(errors) == 1, events
    return errors[0]


def test_the_next_command_waits_for_the_previous_ack() -> None:
    session = ViscaSession(ack_timeout=1.0)
    first = session.submit(cmd.zoom_tele(), 0.0)
    second = session.submit(cmd.focus_stop(), 0.0)
    assert sent(session.poll(0.0)) == [cmd.zoom_tele()]
    assert session.poll(0.5) == []  # still waiting for the ACK
    assert session.next_deadline() == 1.0
    session.packet_received(h("90 41 FF"), 0.6)
    assert session.poll(0.6) == [Acked(first, 1), SendPacket(second, cmd.focus_stop())]
    session.packet_received(h("90 51 FF"), 0.61)
    session.packet_received(h("90 42 FF"), 0.62)
    session.packet_received(h("90 52 FF"), 0.63)
    assert session.poll(0.63) == [Completed(first), Acked(second, 2), Completed(second)]
    assert session.idle


def test_inquiries_wait_for_the_ack_too_and_get_their_payload() -> None:
    session = ViscaSession()
    command = session.submit(cmd.home(), 0.0)
    inquiry = session.submit(cmd.pan_tilt_position_inquiry(), 0.0)
    assert sent(session.poll(0.0)) == [cmd.home()]
    session.packet_received(h("90 41 FF"), 0.01)
    assert sent(session.poll(0.01)) == [cmd.pan_tilt_position_inquiry()]
    session.packet_received(h("90 50 00 00 00 01 00 00 00 02 FF"), 0.02)
    assert session.poll(0.02) == [Completed(inquiry, h("00 00 00 01 00 00 00 02"))]
    assert session.executing == {1: command}


def test_at_most_two_commands_execute_and_a_completion_frees_a_socket() -> None:
    session = ViscaSession()
    a = session.submit(cmd.absolute(100, 0, 1, 1), 0.0)
    b = session.submit(cmd.zoom_direct(0x2000), 0.0)
    c = session.submit(cmd.focus_direct(0x3000), 0.0)
    inquiry = session.submit(cmd.power_inquiry(), 0.0)
    assert sent(session.poll(0.0)) == [cmd.absolute(100, 0, 1, 1)]
    session.packet_received(h("90 41 FF"), 0.01)
    assert sent(session.poll(0.01)) == [cmd.zoom_direct(0x2000)]
    session.packet_received(h("90 42 FF"), 0.02)
    # Both sockets busy: the third command waits; the inquiry needs no socket and overtakes.
    assert sent(session.poll(0.02)) == [cmd.power_inquiry()]
    session.packet_received(h("90 50 02 FF"), 0.03)
    assert session.poll(0.03) == [Completed(inquiry, b"\x02")]
    assert session.poll(0.5) == [] and session.executing == {1: a, 2: b}
    session.packet_received(h("90 52 FF"), 0.6)
    assert session.poll(0.6) == [Completed(b), SendPacket(c, cmd.focus_direct(0x3000))]
    session.packet_received(h("90 42 FF"), 0.61)
    assert session.poll(0.61) == [Acked(c, 2)]


def test_commands_never_overtake_each_other() -> None:
    session = ViscaSession()
    session.submit(cmd.drive(Direction.UP, 1, 1), 0.0)
    session.submit(cmd.pan_tilt_stop(), 0.0)
    session.submit(cmd.zoom_stop(), 0.0)
    order = []
    for t, socket in ((0.0, 1), (0.1, 2), (0.2, 1)):
        order += sent(session.poll(t))
        session.packet_received(h(f"90 4{socket} FF"), t)
        session.packet_received(h(f"90 5{socket} FF"), t)
    assert order == [cmd.drive(Direction.UP, 1, 1), cmd.pan_tilt_stop(), cmd.zoom_stop()]


@pytest.mark.parametrize(
    ("reply", "code"),
    [("90 60 02 FF", ErrorCode.SYNTAX), ("90 60 03 FF", ErrorCode.BUFFER_FULL),
     ("90 60 01 FF", ErrorCode.MESSAGE_LENGTH), ("90 61 41 FF", ErrorCode.NOT_EXECUTABLE)],
)
def test_an_error_reply_fails_the_command_in_transit(reply: str, code: ErrorCode) -> None:
    session = ViscaSession()
    bad = session.submit(cmd.focus_far(), 0.0)
    nxt = session.submit(cmd.zoom_stop(), 0.0)
    session.poll(0.0)
    session.packet_received(h(reply), 0.01)
    events = session.poll(0.01)
    error = failure(events, bad)
    assert isinstance(error, ViscaCommandError) and error.code is code
    assert error.code_name == code.name and code.name in str(error)
    assert sent(events) == [cmd.zoom_stop()] and session.in_transit == nxt


def test_not_executable_for_a_running_command_fails_that_command() -> None:
    session = ViscaSession()
    running = session.submit(cmd.zoom_direct(0x100), 0.0)
    session.poll(0.0)
    session.packet_received(h("90 41 FF"), 0.01)
    session.poll(0.01)
    session.packet_received(h("90 61 41 FF"), 0.5)
    error = failure(session.poll(0.5), running)
    assert isinstance(error, ViscaCommandError) and error.socket == 1
    assert session.executing == {}


def test_ack_and_reply_timeouts() -> None:
    session = ViscaSession(ack_timeout=0.2)
    command = session.submit(cmd.home(), 0.0)
    inquiry = session.submit(cmd.power_inquiry(), 0.0)
    session.poll(0.0)
    assert session.poll(0.19) == []
    events = session.poll(0.2)
    error = failure(events, command)
    assert isinstance(error, ViscaTimeout) and error.waiting_for == "ack"
    assert str(error) == "no ack from the camera within 0.2 s"
    assert sent(events) == [cmd.power_inquiry()]  # the queue moves on
    error = failure(session.poll(0.45), inquiry)
    assert isinstance(error, ViscaTimeout) and error.waiting_for == "reply"


def test_completion_timeout_frees_the_socket() -> None:
    session = ViscaSession(completion_timeout=1.0)
    default = session.submit(cmd.zoom_direct(1), 0.0)
    session.poll(0.0)
    session.packet_received(h("90 41 FF"), 0.1)
    session.poll(0.1)
    longer = session.submit(cmd.home(), 0.1, completion_timeout=5.0)
    session.poll(0.1)
    session.packet_received(h("90 42 FF"), 0.2)
    session.poll(0.2)
    assert session.next_deadline() == pytest.approx(1.1)
    error = failure(session.poll(1.1), default)
    assert isinstance(error, ViscaTimeout) and error.waiting_for == "completion"
    assert session.executing == {2: longer}
    assert session.next_deadline() == pytest.approx(5.2)


def test_cancel_waits_200ms_after_the_ack_and_the_next_drive_200ms_after_cancelled() -> None:
    session = ViscaSession()
    move = session.submit(cmd.absolute(2000, 0, 1, 1), 10.0)
    session.poll(10.0)
    session.packet_received(h("90 41 FF"), 10.02)
    session.poll(10.02)
    session.cancel(move, 10.05)
    assert session.poll(10.05) == []
    assert session.next_deadline() == pytest.approx(10.22)  # 200 ms after the ACK
    assert session.poll(10.21) == []
    events = session.poll(10.22)
    assert sent(events) == [h("81 21 FF")]
    session.packet_received(h("90 61 04 FF"), 10.25)
    events = session.poll(10.25)
    error = failure(events, move)
    assert isinstance(error, ViscaCommandError) and error.code is ErrorCode.CANCELLED
    assert any(isinstance(e, Completed) for e in events)  # the cancel itself
    drive = session.submit(cmd.drive(Direction.LEFT, 1, 1), 10.26)
    zoom = session.submit(cmd.zoom_tele(), 10.26)
    assert session.poll(10.26) == []  # commands keep their order behind the held drive
    assert session.next_deadline() == pytest.approx(10.45)
    assert session.poll(10.45) == [SendPacket(drive, cmd.drive(Direction.LEFT, 1, 1))]
    assert session.queued == 1 and zoom


def test_cancelling_a_zoom_is_not_held_and_no_socket_is_reported() -> None:
    session = ViscaSession()
    zoom = session.submit(cmd.zoom_direct(0x3000), 0.0)
    session.poll(0.0)
    session.packet_received(h("90 42 FF"), 0.01)
    session.poll(0.01)
    session.cancel(zoom, 0.02)
    assert sent(session.poll(0.02)) == [h("81 22 FF")]
    session.packet_received(h("90 62 04 FF"), 0.03)
    assert isinstance(failure(session.poll(0.03), zoom), ViscaCommandError)
    raw_cancel = session.submit(cmd.cancel(1), 0.04)
    session.poll(0.04)
    session.packet_received(h("90 61 05 FF"), 0.05)
    error = failure(session.poll(0.05), raw_cancel)
    assert isinstance(error, ViscaCommandError) and error.code is ErrorCode.NO_SOCKET


def test_cancel_before_sending_and_while_in_transit() -> None:
    session = ViscaSession()
    first = session.submit(cmd.home(), 0.0)
    second = session.submit(cmd.zoom_tele(), 0.0)
    session.poll(0.0)
    session.cancel(second, 0.01)  # never sent: withdrawn
    error = failure(session.poll(0.01), second)
    assert isinstance(error, ViscaCommandError) and error.code is ErrorCode.CANCELLED
    session.cancel(first, 0.02)  # in transit: cancelled once it has a socket
    session.packet_received(h("90 41 FF"), 0.05)
    assert session.poll(0.05) == [Acked(first, 1)]
    assert session.next_deadline() == pytest.approx(0.25)
    assert sent(session.poll(0.25)) == [h("81 21 FF")]
    # The command finishing first makes a queued cancel moot: it is dropped, not sent.
    other = ViscaSession()
    moving = other.submit(cmd.home(), 0.0)
    other.poll(0.0)
    other.packet_received(h("90 41 FF"), 0.01)
    other.poll(0.01)
    other.cancel(moving, 0.05)
    other.packet_received(h("90 51 FF"), 0.1)
    assert sent(other.poll(0.3)) == [] and other.idle


def test_completion_without_ack_and_late_or_stray_replies() -> None:
    session = ViscaSession()
    command = session.submit(cmd.power_on(), 0.0)
    session.poll(0.0)
    session.packet_received(h("90 52 FF"), 0.01)  # the ACK got lost on the line
    assert session.poll(0.01) == [Acked(command, 2), Completed(command)]
    for stray in ("90 41 FF", "90 51 FF", "90 50 02 FF", "88 30 02 FF"):
        session.packet_received(h(stray), 0.02)
    assert session.poll(0.02) == [] and session.idle


def test_malformed_reply_raises_and_changes_nothing() -> None:
    session = ViscaSession()
    session.submit(cmd.home(), 0.0)
    session.poll(0.0)
    for bad in ("A0 41 FF", "90 41 00 FF", "90 43 FF"):
        with pytest.raises(ValueError):
            session.packet_received(h(bad), 0.01)
    assert session.in_transit is not None


def test_reply_lost_completes_a_command_and_asks_an_inquiry_again() -> None:
    session = ViscaSession()
    command = session.submit(cmd.preset_set(1), 0.0)
    session.poll(0.0)
    session.reply_lost(0.1)
    inquiry = session.submit(cmd.power_inquiry(), 0.1)
    events = session.poll(0.1)
    assert events[0] == Completed(command) and sent(events) == [cmd.power_inquiry()]
    session.reply_lost(0.2)
    assert sent(session.poll(0.2)) == [cmd.power_inquiry()]
    session.fail_in_transit(ViscaError("rejected"), 0.3)
    assert str(failure(session.poll(0.3), inquiry)) == "rejected"


def test_broadcasts_complete_with_the_reply() -> None:
    session = ViscaSession()
    request = session.submit(address_set(), 0.0)
    assert sent(session.poll(0.0)) == [address_set()]
    session.packet_received(h("88 30 02 FF"), 0.01)
    assert session.poll(0.01) == [Completed(request, h("88 30 02 FF"))]


def test_abort_fails_everything() -> None:
    session = ViscaSession()
    ids = [session.submit(cmd.home(), 0.0), session.submit(cmd.zoom_tele(), 0.0)]
    session.poll(0.0)
    session.packet_received(h("90 41 FF"), 0.0)
    ids.append(session.submit(cmd.power_inquiry(), 0.0))
    session.poll(0.0)
    session.abort(CameraOffline("gone"))
    events = session.poll(0.1)
    assert {e.request_id for e in events if isinstance(e, Failed)} == set(ids)
    assert all(isinstance(e.error, CameraOffline) for e in events if isinstance(e, Failed))
    assert session.idle and session.next_deadline() is None


def test_submit_validates() -> None:
    session = ViscaSession(address=2)
    with pytest.raises(ValueError, match="packet for camera 1, session is for 2"):
        session.submit(cmd.home(), 0.0)
    with pytest.raises(ValueError):
        session.submit(h("90 41 FF"), 0.0)
    with pytest.raises(ValueError, match="timeouts must be positive"):
        ViscaSession(ack_timeout=0)


def test_a_stop_follows_the_cancel_of_a_home_at_once_a_new_drive_waits() -> None:
    """Stopping a running home: Command Cancel on its socket, then the stop goes right
    after the "cancelled" reply; the next motion keeps the 200 ms rule."""
    session = ViscaSession()
    home = session.submit(cmd.home(), 0.0)
    assert sent(session.poll(0.0)) == [cmd.home()]
    session.packet_received(h("90 41 FF"), 0.01)
    assert session.poll(0.01) == [Acked(home, 1)]
    session.cancel(home, 0.5)
    stop = session.submit(cmd.pan_tilt_stop(), 0.5)
    drive = session.submit(cmd.drive(Direction.LEFT, 1, 1), 0.5)
    assert sent(session.poll(0.5)) == [h("81 21 FF")]
    session.packet_received(h("90 61 04 FF"), 0.51)
    events = session.poll(0.51)
    assert isinstance(failure(events, home), ViscaCommandError)
    assert failure(events, home).code == ErrorCode.CANCELLED  # type: ignore[attr-defined]
    assert sent(events) == [cmd.pan_tilt_stop()]  # not held by the 200 ms rule
    session.packet_received(h("90 41 FF"), 0.52)
    session.packet_received(h("90 51 FF"), 0.52)
    assert session.poll(0.52) == [Acked(stop, 1), Completed(stop)]
    assert session.next_deadline() == pytest.approx(0.71)  # the drive waits 200 ms
    assert sent(session.poll(0.70)) == []
    assert sent(session.poll(0.71)) == [cmd.drive(Direction.LEFT, 1, 1)]
    assert drive == stop + 1


def test_a_cancel_of_a_home_that_just_started_waits_200_ms_and_the_stop_after_it() -> None:
    session = ViscaSession()
    home = session.submit(cmd.home(), 0.0)
    session.poll(0.0)
    session.packet_received(h("90 42 FF"), 0.05)
    session.poll(0.05)
    session.cancel(home, 0.1)
    session.submit(cmd.pan_tilt_stop(), 0.1)
    assert sent(session.poll(0.1)) == []  # commands never overtake the cancel
    assert session.next_deadline() == pytest.approx(0.25)
    assert sent(session.poll(0.25)) == [h("81 22 FF")]
